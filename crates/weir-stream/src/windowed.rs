//! Windowed aggregation per key: tumbling, sliding and session windows in event time.
//! A window's final result is emitted when the watermark passes its end plus the allowed
//! lateness; events arriving after that go to the dead-letter output.

use crate::aggregate::{Accumulator, Aggregate, UserAggregate};
use crate::event::{DeadLetter, DeadLetterReason, Event, ResultKind, WindowResult};
use crate::window::Window;
use crate::StreamError;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct WindowSpec {
    pub window: Window,
    pub aggregate: Aggregate,
    /// JSON field (top level) the aggregate reads; unused for count.
    pub field: Option<String>,
    pub allowed_lateness_ms: i64,
    /// Emit a non-final result when the watermark first passes a window's end.
    pub early_updates: bool,
    /// Open windows (all keys) at most; exceeding it is an error, not an OOM.
    pub max_open_windows: usize,
    /// The primary aggregate's output name (a field of the result event, a sink column).
    pub name: String,
    /// More aggregates computed over the same windows, output after the primary one.
    pub extra: Vec<NamedAggregate>,
    /// `Window::Until`: the field (top level, an integer time in ms) that says until when the
    /// key's window is open, inclusive.
    pub end_field: Option<String>,
}

/// One more aggregate of a window: `name` is its output field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedAggregate {
    pub name: String,
    pub aggregate: Aggregate,
    pub field: Option<String>,
}

impl WindowSpec {
    /// Output names: the primary aggregate's, then the extra ones'.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.extra.iter().map(|e| e.name.as_str()))
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Open {
    end_ms: i64,
    acc: Accumulator,
    /// One per extra aggregate, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extra: Vec<Accumulator>,
    early_sent: bool,
    /// Where the window sits in `deadlines` and `early`. A session that grows keeps its place
    /// until the watermark reaches it, then moves to its real end (see `on_watermark`), so
    /// growing costs no index update. Not checkpointed: rebuilt on import.
    #[serde(skip)]
    deadline_at: i64,
    #[serde(skip)]
    early_at: i64,
}

impl Open {
    fn new(end_ms: i64, acc: Accumulator, extra: Vec<Accumulator>) -> Self {
        Self { end_ms, acc, extra, early_sent: false, deadline_at: 0, early_at: 0 }
    }
}

impl PartialEq for Open {
    fn eq(&self, other: &Self) -> bool {
        (self.end_ms, &self.acc, &self.extra, self.early_sent)
            == (other.end_ms, &other.acc, &other.extra, other.early_sent)
    }
}

/// One key's open windows by start, in start order: a sorted Vec, not a B-tree, because a key
/// has one window (tumbling, session, until) or a few (sliding: size / slide), and a B-tree
/// allocates a node of 11 entries even for one (2.4 KB per open window measured, against
/// about 0.4 KB now).
#[derive(Debug, Default)]
struct Starts(Vec<(i64, Open)>);

impl Starts {
    fn one(start: i64, open: Open) -> Self {
        Self(vec![(start, open)])
    }

    fn find(&self, start: i64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&start, |(s, _)| *s)
    }

    fn get_mut(&mut self, start: &i64) -> Option<&mut Open> {
        let i = self.find(*start).ok()?;
        Some(&mut self.0[i].1)
    }

    fn remove(&mut self, start: &i64) -> Option<Open> {
        let i = self.find(*start).ok()?;
        Some(self.0.remove(i).1)
    }

    fn insert(&mut self, start: i64, open: Open) {
        match self.find(start) {
            Ok(i) => self.0[i].1 = open,
            Err(i) => self.0.insert(i, (start, open)),
        }
    }

    fn first_mut(&mut self) -> Option<&mut Open> {
        self.0.first_mut().map(|(_, o)| o)
    }

    /// Windows starting at or before `end`, in start order.
    fn upto(&self, end: i64) -> impl Iterator<Item = (&i64, &Open)> {
        self.0.iter().take_while(move |(s, _)| *s <= end).map(|(s, o)| (s, o))
    }

    fn iter(&self) -> impl Iterator<Item = (&i64, &Open)> {
        self.0.iter().map(|(s, o)| (s, o))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(crate) struct WindowOperator {
    spec: WindowSpec,
    custom: Option<std::sync::Arc<dyn UserAggregate>>,
    /// key -> window start -> state. Looked up by `&str`, so an event for an existing key and
    /// window allocates nothing.
    open: BTreeMap<String, Starts>,
    open_count: usize,
    /// (end + allowed lateness, key, start): the order windows close in. Firing pops from the
    /// front instead of scanning every open window.
    deadlines: BTreeSet<(i64, String, i64)>,
    /// (end, key, start) of windows still owed an early update.
    early: BTreeSet<(i64, String, i64)>,
    /// Key strings taken out of the indexes, reused for lookups and new entries, so moving a
    /// window in the indexes (a session that grows) allocates nothing.
    spare_keys: Vec<String>,
    /// Starts of the sessions an event touches (reused).
    touching: Vec<i64>,
}

/// Spare key strings kept at most.
const SPARE_KEYS: usize = 64;

impl WindowOperator {
    pub fn new(spec: WindowSpec, custom: Option<std::sync::Arc<dyn UserAggregate>>) -> Result<Self, StreamError> {
        spec.window.validate().map_err(StreamError::InvalidSpec)?;
        if matches!(spec.window, Window::Until) != spec.end_field.is_some() {
            return Err(StreamError::InvalidSpec("an until window needs its end field (and only it has one)"));
        }
        if spec.aggregate.needs_field() && spec.field.is_none() {
            return Err(StreamError::InvalidSpec("this aggregate needs a field"));
        }
        if spec.extra.iter().any(|e| e.aggregate.needs_field() && e.field.is_none()) {
            return Err(StreamError::InvalidSpec("this aggregate needs a field"));
        }
        if spec.extra.iter().any(|e| e.aggregate == Aggregate::Custom) {
            return Err(StreamError::InvalidSpec("a custom aggregate can only be the primary one"));
        }
        if (spec.aggregate == Aggregate::Custom) != custom.is_some() {
            return Err(StreamError::InvalidSpec("a custom aggregate needs its implementation (window_with)"));
        }
        Ok(Self {
            spec,
            custom,
            open: BTreeMap::new(),
            open_count: 0,
            deadlines: BTreeSet::new(),
            early: BTreeSet::new(),
            spare_keys: Vec::new(),
            touching: Vec::new(),
        })
    }

    pub fn open_windows(&self) -> usize {
        self.open_count
    }

    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    pub fn allowed_lateness_ms(&self) -> i64 {
        self.spec.allowed_lateness_ms
    }

    /// Open windows as (key, start, state), for checkpoints.
    pub fn export(&self) -> Vec<(String, i64, Open)> {
        self.open.iter().flat_map(|(k, w)| w.iter().map(move |(s, o)| (k.clone(), *s, o.clone()))).collect()
    }

    pub fn import(&mut self, windows: Vec<(String, i64, Open)>) {
        self.open.clear();
        self.open_count = 0;
        self.deadlines.clear();
        self.early.clear();
        for (k, s, mut o) in windows {
            self.track(&k, s, &mut o);
            self.open.entry(k).or_default().insert(s, o);
            self.open_count += 1;
        }
    }

    /// `key` as an owned string, reusing a spare one.
    fn owned_key(&mut self, key: &str) -> String {
        let mut k = self.spare_keys.pop().unwrap_or_default();
        k.clear();
        k.push_str(key);
        k
    }

    fn spare(&mut self, k: String) {
        if self.spare_keys.len() < SPARE_KEYS {
            self.spare_keys.push(k);
        }
    }

    fn track(&mut self, key: &str, start: i64, o: &mut Open) {
        let k = self.owned_key(key);
        o.deadline_at = o.end_ms.saturating_add(self.spec.allowed_lateness_ms);
        self.deadlines.insert((o.deadline_at, k, start));
        if self.spec.early_updates && !o.early_sent {
            let k = self.owned_key(key);
            o.early_at = o.end_ms;
            self.early.insert((o.early_at, k, start));
        }
    }

    fn untrack(&mut self, key: &str, start: i64, o: &Open) {
        let probe = (o.deadline_at, self.owned_key(key), start);
        let removed = self.deadlines.take(&probe);
        let probe = (o.early_at, probe.1, start);
        let removed_early = self.early.take(&probe);
        self.spare(probe.1);
        for (_, k, _) in removed.into_iter().chain(removed_early) {
            self.spare(k);
        }
    }

    /// Adds one event to an accumulator (the built-in aggregates, or the user's).
    fn accumulate(
        custom: &Option<std::sync::Arc<dyn UserAggregate>>,
        acc: &mut Accumulator,
        x: f64,
        raw: &str,
        kind: Aggregate,
        ev: &Event,
    ) {
        match custom {
            Some(u) => {
                acc.count += 1;
                let state = acc.custom.get_or_insert_with(|| u.init());
                u.add(state, ev);
            }
            None => acc.add(x, raw, kind),
        }
    }

    /// Adds the event to every extra aggregate (their fields were checked by `process`).
    fn accumulate_extra(extras: &[NamedAggregate], accs: &mut [Accumulator], ev: &Event) {
        for (e, acc) in extras.iter().zip(accs) {
            if let Ok((x, raw)) = Self::value_in(ev, e.field.as_ref(), e.aggregate) {
                acc.add(x, raw.as_deref().unwrap_or_default(), e.aggregate);
            }
        }
    }

    /// A window's early (`is_final` false) or final result.
    fn result(
        custom: &Option<std::sync::Arc<dyn UserAggregate>>,
        extras: &[NamedAggregate],
        kind: Aggregate,
        key: String,
        start: i64,
        o: &Open,
        is_final: bool,
    ) -> WindowResult {
        WindowResult {
            key,
            window_start_ms: start,
            window_end_ms: o.end_ms,
            value: Self::result_of(custom, &o.acc, kind),
            extra: o.extra.iter().zip(extras).map(|(a, e)| a.result(e.aggregate)).collect(),
            count: o.acc.count,
            kind: if is_final { ResultKind::Final } else { ResultKind::Early },
        }
    }

    fn result_of(custom: &Option<std::sync::Arc<dyn UserAggregate>>, acc: &Accumulator, kind: Aggregate) -> f64 {
        match custom {
            Some(u) => acc.custom.as_ref().map_or_else(|| u.result(&u.init()), |s| u.result(s)),
            None => acc.result(kind),
        }
    }

    /// The number the aggregate reads, and (for count-distinct only) the value's JSON text.
    fn value_of(&self, ev: &Event) -> Result<(f64, Option<String>), DeadLetterReason> {
        Self::value_in(ev, self.spec.field.as_ref(), self.spec.aggregate)
    }

    fn value_in(
        ev: &Event,
        field: Option<&String>,
        kind: Aggregate,
    ) -> Result<(f64, Option<String>), DeadLetterReason> {
        let Some(field) = field else { return Ok((1.0, None)) };
        let v = ev
            .value
            .get(field)
            .ok_or_else(|| DeadLetterReason::BadField { field: field.clone(), detail: "missing".into() })?;
        if kind == Aggregate::CountDistinct {
            return Ok((0.0, Some(v.to_string())));
        }
        let x = v.as_f64().ok_or_else(|| DeadLetterReason::BadField {
            field: field.clone(),
            detail: format!("{v} is not a number"),
        })?;
        Ok((x, None))
    }

    /// Adds an event, or dead-letters it when it is late or lacks its field.
    /// Retractions of early updates (sessions that merged) go to `results`.
    pub fn process(
        &mut self,
        ev: Event,
        watermark_ms: i64,
        results: &mut Vec<WindowResult>,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), StreamError> {
        let (x, raw) = match self.value_of(&ev) {
            Ok(v) => v,
            Err(reason) => {
                dead.push(DeadLetter { event: ev, reason });
                return Ok(());
            }
        };
        // Every extra aggregate's field must be there too: all or nothing per event.
        for e in &self.spec.extra {
            if let Err(reason) = Self::value_in(&ev, e.field.as_ref(), e.aggregate) {
                dead.push(DeadLetter { event: ev, reason });
                return Ok(());
            }
        }
        let raw = raw.as_deref().unwrap_or_default();
        let kind = self.spec.aggregate;
        let lateness = self.spec.allowed_lateness_ms;
        let closed = |end: i64| end.saturating_add(lateness) <= watermark_ms;
        let t = ev.timestamp_ms;
        let custom = self.custom.clone();
        let key = ev.key.as_deref().unwrap_or_default();
        let late = || DeadLetterReason::Late { watermark_ms, allowed_lateness_ms: lateness };
        match self.spec.window {
            Window::Session { gap_ms } => {
                if closed(t + gap_ms) {
                    let reason = late();
                    dead.push(DeadLetter { event: ev, reason });
                    return Ok(());
                }
                let mut end = t + gap_ms;
                let mut touching = std::mem::take(&mut self.touching);
                touching.clear();
                if let Some(sessions) = self.open.get_mut(key) {
                    touching.extend(sessions.upto(end).filter(|(_, o)| t <= o.end_ms).map(|(&s, _)| s));
                    // The common case: the event falls in or extends one session without moving
                    // its start. Update it in place; its index entries catch up lazily.
                    if let [s] = touching[..] {
                        if let Some(o) =
                            sessions.get_mut(&s).filter(|o| s <= t && !(self.spec.early_updates && o.early_sent))
                        {
                            o.end_ms = o.end_ms.max(end);
                            Self::accumulate(&custom, &mut o.acc, x, raw, kind, &ev);
                            Self::accumulate_extra(&self.spec.extra, &mut o.extra, &ev);
                            self.touching = touching;
                            return Ok(());
                        }
                    }
                }
                // Otherwise merge every session of this key that the new one touches (`touching`
                // is in start order).
                let start = touching.first().map_or(t, |&s| s.min(t));
                let mut acc = Accumulator::default();
                let mut extra = vec![Accumulator::default(); self.spec.extra.len()];
                for &s in &touching {
                    let Some(o) = self.open.get_mut(key).and_then(|m| m.remove(&s)) else { continue };
                    self.untrack(key, s, &o);
                    self.open_count -= 1;
                    if o.early_sent && s != start {
                        // Its early update was sent under a start that no longer exists.
                        results.push(WindowResult::retraction(key, s, o.end_ms));
                    }
                    end = end.max(o.end_ms);
                    for (mine, theirs) in extra.iter_mut().zip(o.extra) {
                        mine.merge(theirs);
                    }
                    let mut other = o.acc;
                    if let (Some(u), Some(theirs)) = (&custom, other.custom.take()) {
                        match &mut acc.custom {
                            Some(mine) => u.merge(mine, theirs),
                            None => acc.custom = Some(theirs),
                        }
                    }
                    acc.merge(other);
                }
                self.touching = touching;
                // After the merge, so the event goes into the existing state instead of the
                // existing state being copied into a new one.
                Self::accumulate(&custom, &mut acc, x, raw, kind, &ev);
                Self::accumulate_extra(&self.spec.extra, &mut extra, &ev);
                self.insert(key, start, Open::new(end, acc, extra))?;
            }
            Window::Until | Window::Global => {
                let end = match (self.spec.window, &self.spec.end_field) {
                    (Window::Until, Some(field)) => {
                        let end = ev.value.get(field).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
                        match end {
                            Some(e) => e.saturating_add(1),
                            None => {
                                let reason = DeadLetterReason::BadField {
                                    field: field.clone(),
                                    detail: "missing or not an integer time".into(),
                                };
                                dead.push(DeadLetter { event: ev, reason });
                                return Ok(());
                            }
                        }
                    }
                    _ => crate::window::GLOBAL_WINDOW.1,
                };
                if closed(end) {
                    let reason = late();
                    dead.push(DeadLetter { event: ev, reason });
                    return Ok(());
                }
                // One window per key: the open one grows (its index entries catch up lazily,
                // as a session's do), or the event opens it.
                if let Some(o) = self.open.get_mut(key).and_then(Starts::first_mut) {
                    o.end_ms = o.end_ms.max(end);
                    Self::accumulate(&custom, &mut o.acc, x, raw, kind, &ev);
                    Self::accumulate_extra(&self.spec.extra, &mut o.extra, &ev);
                } else {
                    let start = if self.spec.window == Window::Global { crate::window::GLOBAL_WINDOW.0 } else { t };
                    let mut acc = Accumulator::default();
                    Self::accumulate(&custom, &mut acc, x, raw, kind, &ev);
                    let mut extra = vec![Accumulator::default(); self.spec.extra.len()];
                    Self::accumulate_extra(&self.spec.extra, &mut extra, &ev);
                    self.insert(key, start, Open::new(end, acc, extra))?;
                }
            }
            w => {
                let mut any = false;
                for (start, end) in w.assign(t) {
                    if closed(end) {
                        continue;
                    }
                    any = true;
                    match self.open.get_mut(key).and_then(|m| m.get_mut(&start)) {
                        Some(o) => {
                            Self::accumulate(&custom, &mut o.acc, x, raw, kind, &ev);
                            Self::accumulate_extra(&self.spec.extra, &mut o.extra, &ev);
                        }
                        None => {
                            let mut acc = Accumulator::default();
                            Self::accumulate(&custom, &mut acc, x, raw, kind, &ev);
                            let mut extra = vec![Accumulator::default(); self.spec.extra.len()];
                            Self::accumulate_extra(&self.spec.extra, &mut extra, &ev);
                            self.insert(key, start, Open::new(end, acc, extra))?;
                        }
                    }
                }
                if !any {
                    let reason = late();
                    dead.push(DeadLetter { event: ev, reason });
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, key: &str, start: i64, mut open: Open) -> Result<(), StreamError> {
        if self.open_count >= self.spec.max_open_windows {
            return Err(StreamError::StateTooLarge { open_windows: self.open_count, max: self.spec.max_open_windows });
        }
        self.track(key, start, &mut open);
        match self.open.get_mut(key) {
            Some(m) => {
                m.insert(start, open);
            }
            None => {
                self.open.insert(key.to_owned(), Starts::one(start, open));
            }
        }
        self.open_count += 1;
        Ok(())
    }

    /// Emits early updates for windows whose end the watermark passed, and final results
    /// (removing the state) for windows closed by the allowed lateness. Costs O(windows that
    /// fire), not O(open windows).
    pub fn on_watermark(&mut self, watermark_ms: i64, out: &mut Vec<WindowResult>) {
        let kind = self.spec.aggregate;
        let custom = self.custom.clone();
        let lateness = self.spec.allowed_lateness_ms;
        while self.early.first().is_some_and(|(end, _, _)| *end <= watermark_ms) {
            let Some((_, key, start)) = self.early.pop_first() else { break };
            if let Some(o) = self.open.get_mut(&key).and_then(|m| m.get_mut(&start)) {
                if o.end_ms > o.early_at {
                    // A session that grew since it was indexed: move it to its real end.
                    o.early_at = o.end_ms;
                    self.early.insert((o.early_at, key, start));
                    continue;
                }
                o.early_sent = true;
                if o.end_ms.saturating_add(lateness) <= watermark_ms {
                    continue; // the final result goes out now anyway
                }
                out.push(Self::result(&custom, &self.spec.extra, kind, key, start, o, false));
            }
        }
        while self.deadlines.first().is_some_and(|(deadline, _, _)| *deadline <= watermark_ms) {
            let Some((_, key, start)) = self.deadlines.pop_first() else { break };
            let Some(windows) = self.open.get_mut(&key) else { continue };
            if let Some(o) = windows.get_mut(&start) {
                let deadline = o.end_ms.saturating_add(lateness);
                if deadline > o.deadline_at {
                    // A session that grew since it was indexed: move it to its real deadline.
                    o.deadline_at = deadline;
                    self.deadlines.insert((deadline, key, start));
                    continue;
                }
            }
            let Some(o) = windows.remove(&start) else { continue };
            if windows.is_empty() {
                self.open.remove(&key);
            }
            self.open_count -= 1;
            out.push(Self::result(&custom, &self.spec.extra, kind, key, start, &o, true));
        }
    }
}
