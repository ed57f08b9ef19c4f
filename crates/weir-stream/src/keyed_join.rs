//! Inner joins of two sides of a keyed stream, as one operator of a pipeline. The events'
//! key is the join key (the front end sets it per side, then shuffles); a classifier says
//! which side an event is on. Joined events are `{"left", "right", …}` with the join key:
//! - window: both in the same tumbling window; emitted when the window closes, with
//!   `window_start`/`window_end`, at `window_end - 1` (Nexmark q8);
//! - interval: `left.time` within `[right.time + lower, right.time + upper]`; emitted as soon
//!   as both are there, at the later of the two times; state expires with the watermark. With
//!   `until`, the upper bound is a time each right event gives (`[right.time + lower,
//!   until(right)]`, e.g. a bid between its auction's start and its `expires`, Nexmark q4), and
//!   a right event is kept until the watermark passes it;
//! - table: the right side is a table (per key, rows over event time; a null value deletes
//!   the key). A left event at time t joins the key's row as of t (an event-time temporal
//!   join, Flink's `FOR SYSTEM_TIME AS OF`): it waits until the watermark reaches t, so every
//!   row up to t is known whatever order the sides arrived in, and is then emitted at t (or
//!   dropped when the key had no row at t). Rows older than the newest one before the
//!   watermark (minus the allowed lateness) are forgotten (Nexmark q3).
//!
//! Events later than the window end (or interval) plus the allowed lateness are dead letters.

use crate::event::{DeadLetter, DeadLetterReason, Event};
use crate::join::Side;
use crate::StreamError;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// What pairs a left and a right event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Window { size_ms: i64 },
    Interval { lower_ms: i64, upper_ms: i64 },
    Table,
}

/// Which side an event is on (None: neither; it is dropped, like a filter).
pub type Classify = Box<dyn Fn(&Event) -> Result<Option<Side>, String> + Send>;

/// An interval join's upper bound per right event: the latest left time it pairs with.
pub type Until = Box<dyn Fn(&Event) -> Result<i64, String> + Send>;

pub struct JoinSpec {
    pub kind: JoinKind,
    pub classify: Classify,
    pub allowed_lateness_ms: i64,
    /// Events kept at most (both sides); exceeding it is an error, not an OOM.
    pub max_state: usize,
    /// Interval joins: the upper bound each right event gives (instead of `upper_ms`).
    pub until: Option<Until>,
}

#[derive(Default, Clone, PartialEq)]
struct Sides {
    left: Vec<(i64, Value)>,
    right: Vec<(i64, Value)>,
    /// Interval joins: the latest left time each right event pairs with (parallel to `right`).
    right_upper: Vec<i64>,
}

pub(crate) struct KeyedJoin {
    spec: JoinSpec,
    /// Window: (start, key) -> sides. Interval and table: ("", key) -> sides (start 0).
    windows: BTreeMap<(i64, String), Sides>,
    /// Interval: (expiry, key) of kept events, in expiry order.
    expiry: BTreeMap<(i64, String), usize>,
    /// Table: key -> rows by event time (null: deleted).
    table: HashMap<String, BTreeMap<i64, Value>>,
    /// Table: left events waiting for the watermark, by (time, key).
    waiting: BTreeMap<(i64, String), Vec<Value>>,
    kept: usize,
}

impl KeyedJoin {
    pub fn new(spec: JoinSpec) -> Result<Self, StreamError> {
        match spec.kind {
            JoinKind::Window { size_ms } if size_ms <= 0 => {
                return Err(StreamError::InvalidSpec("join window size must be positive"))
            }
            JoinKind::Interval { lower_ms, upper_ms } if lower_ms > upper_ms && spec.until.is_none() => {
                return Err(StreamError::InvalidSpec("join interval: lower must not exceed upper"))
            }
            JoinKind::Window { .. } | JoinKind::Table if spec.until.is_some() => {
                return Err(StreamError::InvalidSpec("only an interval join takes an until bound"))
            }
            _ => {}
        }
        Ok(Self {
            spec,
            windows: BTreeMap::new(),
            expiry: BTreeMap::new(),
            table: HashMap::new(),
            waiting: BTreeMap::new(),
            kept: 0,
        })
    }

    pub fn allowed_lateness_ms(&self) -> i64 {
        self.spec.allowed_lateness_ms
    }

    pub fn open_windows(&self) -> usize {
        self.windows.len() + self.waiting.len()
    }

    /// The joined event; the sides are taken by value, so a side the join no longer keeps is
    /// moved in rather than copied.
    fn pair(key: &str, left: Value, right: Value, t: i64, window: Option<(i64, i64)>, partition: i32) -> Event {
        let mut m = serde_json::Map::new();
        m.insert("key".into(), Value::String(key.to_owned()));
        m.insert("left".into(), left);
        m.insert("right".into(), right);
        if let Some((start, end)) = window {
            m.insert("window_start".into(), start.into());
            m.insert("window_end".into(), end.into());
        }
        Event {
            key: Some(key.to_owned()),
            value: Value::Object(m),
            timestamp_ms: t,
            partition,
            offset: -1,
            source: 0,
            raw: None,
        }
    }

    fn keep(&mut self) -> Result<(), StreamError> {
        if self.kept >= self.spec.max_state {
            return Err(StreamError::StateTooLarge { open_windows: self.kept, max: self.spec.max_state });
        }
        self.kept += 1;
        Ok(())
    }

    /// Adds an event; pairs it makes at once go to `out`.
    pub fn process(
        &mut self,
        ev: Event,
        watermark_ms: i64,
        out: &mut Vec<Event>,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), StreamError> {
        let side = match (self.spec.classify)(&ev) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(detail) => {
                dead.push(DeadLetter { event: ev, reason: DeadLetterReason::Expression { detail } });
                return Ok(());
            }
        };
        let lateness = self.spec.allowed_lateness_ms;
        let late = |ev: Event, dead: &mut Vec<DeadLetter>| {
            let reason = DeadLetterReason::Late { watermark_ms, allowed_lateness_ms: lateness };
            dead.push(DeadLetter { event: ev, reason });
        };
        let key = ev.key.clone().unwrap_or_default();
        let t = ev.timestamp_ms;
        match self.spec.kind {
            JoinKind::Window { size_ms } => {
                let start = t.div_euclid(size_ms) * size_ms;
                if (start + size_ms).saturating_add(lateness) <= watermark_ms {
                    late(ev, dead);
                    return Ok(());
                }
                self.keep()?;
                let s = self.windows.entry((start, key)).or_default();
                match side {
                    Side::Left => s.left.push((t, ev.value)),
                    Side::Right => s.right.push((t, ev.value)),
                }
            }
            JoinKind::Interval { lower_ms, upper_ms } => {
                // The latest left time a right event pairs with.
                let upper = match (side, &self.spec.until) {
                    (Side::Right, Some(until)) => match until(&ev) {
                        Ok(u) => u,
                        Err(detail) => {
                            dead.push(DeadLetter { event: ev, reason: DeadLetterReason::Expression { detail } });
                            return Ok(());
                        }
                    },
                    _ => t.saturating_add(upper_ms),
                };
                // The latest time a partner of this event can have, and so when it expires.
                let expires = match side {
                    Side::Left => t.saturating_sub(lower_ms),
                    Side::Right => upper,
                };
                if expires.saturating_add(lateness) < watermark_ms {
                    late(ev, dead);
                    return Ok(());
                }
                let s = self.windows.entry((0, key.clone())).or_default();
                match side {
                    Side::Left => {
                        for ((rt, r), ru) in s.right.iter().zip(&s.right_upper) {
                            if rt.saturating_add(lower_ms) <= t && t <= *ru {
                                out.push(Self::pair(&key, ev.value.clone(), r.clone(), t.max(*rt), None, ev.partition));
                            }
                        }
                        s.left.push((t, ev.value));
                    }
                    Side::Right => {
                        for (lt, l) in &s.left {
                            if t.saturating_add(lower_ms) <= *lt && *lt <= upper {
                                out.push(Self::pair(&key, l.clone(), ev.value.clone(), t.max(*lt), None, ev.partition));
                            }
                        }
                        s.right.push((t, ev.value));
                        s.right_upper.push(upper);
                    }
                }
                *self.expiry.entry((expires.saturating_add(lateness), key)).or_default() += 1;
                self.keep()?;
            }
            JoinKind::Table => match side {
                Side::Left => {
                    if t.saturating_add(lateness) < watermark_ms {
                        late(ev, dead);
                        return Ok(());
                    }
                    if t <= watermark_ms {
                        // Within the allowed lateness: the rows up to t are known already.
                        if let Some(row) = self.row_at(&key, t) {
                            out.push(Self::pair(&key, ev.value, row.clone(), t, None, ev.partition));
                        }
                        return Ok(());
                    }
                    self.keep()?;
                    self.waiting.entry((t, key)).or_default().push(ev.value);
                }
                Side::Right => {
                    let rows = self.table.entry(key).or_default();
                    if rows.insert(t, ev.value).is_none() {
                        self.kept += 1;
                    }
                    // Forget rows no left event can still join: those older than the newest
                    // row at or before the watermark minus the lateness.
                    let horizon = watermark_ms.saturating_sub(lateness);
                    let oldest = rows.first_key_value().map(|(t, _)| *t);
                    if let Some((&keep_from, _)) = rows.range(..=horizon).next_back() {
                        // Only when something is older: split_off moves the rows it keeps.
                        if oldest.is_some_and(|t| t < keep_from) {
                            let before = rows.len();
                            *rows = rows.split_off(&keep_from);
                            self.kept -= before - rows.len();
                        }
                    }
                    if self.kept > self.spec.max_state {
                        return Err(StreamError::StateTooLarge { open_windows: self.kept, max: self.spec.max_state });
                    }
                }
            },
        }
        Ok(())
    }

    /// Emits the pairs of closed windows (window joins) and drops expired state (interval).
    pub fn on_watermark(&mut self, watermark_ms: i64, out: &mut Vec<Event>) {
        match self.spec.kind {
            JoinKind::Window { size_ms } => {
                let lateness = self.spec.allowed_lateness_ms;
                while let Some(entry) = self.windows.first_entry() {
                    if (entry.key().0 + size_ms).saturating_add(lateness) > watermark_ms {
                        break;
                    }
                    let Some(((start, key), s)) = self.windows.pop_first() else { break };
                    self.kept -= s.left.len() + s.right.len();
                    let window = Some((start, start + size_ms));
                    for (_, l) in &s.left {
                        for (_, r) in &s.right {
                            out.push(Self::pair(&key, l.clone(), r.clone(), start + size_ms - 1, window, 0));
                        }
                    }
                }
            }
            JoinKind::Interval { lower_ms, .. } => {
                while let Some(entry) = self.expiry.first_entry() {
                    if entry.key().0 >= watermark_ms {
                        break;
                    }
                    let ((_, key), _) = entry.remove_entry();
                    let lateness = self.spec.allowed_lateness_ms;
                    if let Some(s) = self.windows.get_mut(&(0, key.clone())) {
                        let before = s.left.len() + s.right.len();
                        let alive = |e: i64| e.saturating_add(lateness) >= watermark_ms;
                        s.left.retain(|(t, _)| alive(t.saturating_sub(lower_ms)));
                        let mut kept = s.right_upper.iter().map(|u| alive(*u));
                        s.right.retain(|_| kept.next().unwrap_or(false));
                        s.right_upper.retain(|u| alive(*u));
                        self.kept -= before - (s.left.len() + s.right.len());
                        if s.left.is_empty() && s.right.is_empty() {
                            self.windows.remove(&(0, key));
                        }
                    }
                }
            }
            JoinKind::Table => {
                while let Some(entry) = self.waiting.first_entry() {
                    if entry.key().0 > watermark_ms {
                        break;
                    }
                    let ((t, key), lefts) = entry.remove_entry();
                    self.kept -= lefts.len();
                    if let Some(row) = self.row_at(&key, t) {
                        for l in lefts {
                            out.push(Self::pair(&key, l, row.clone(), t, None, 0));
                        }
                    }
                }
            }
        }
    }

    /// A kept right event's upper bound, computed again from its value (checkpoint import).
    fn upper_of(&self, t: i64, value: &Value, upper_ms: i64) -> i64 {
        match &self.spec.until {
            Some(until) => {
                let ev = Event::new(None, value.clone(), t);
                // It was computed when the event came in; should it fail now, the event
                // expires at the next watermark.
                until(&ev).unwrap_or(i64::MIN / 4)
            }
            None => t.saturating_add(upper_ms),
        }
    }

    /// A table's row for `key` as of time `t` (None: no row, or deleted).
    fn row_at(&self, key: &str, t: i64) -> Option<&Value> {
        let (_, row) = self.table.get(key)?.range(..=t).next_back()?;
        (!row.is_null()).then_some(row)
    }
}

/// A join's state in a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct JoinState {
    windows: Vec<(i64, String, Vec<(i64, Value)>, Vec<(i64, Value)>)>,
    /// Table joins: (key, rows by time), null rows deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rows: Vec<(String, Vec<(i64, Value)>)>,
    /// Table joins: left events waiting for the watermark.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    waiting: Vec<(i64, String, Vec<Value>)>,
}

impl std::fmt::Debug for Sides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} left, {} right", self.left.len(), self.right.len())
    }
}

impl KeyedJoin {
    pub fn export(&self) -> JoinState {
        let mut rows: Vec<(String, Vec<(i64, Value)>)> =
            self.table.iter().map(|(k, v)| (k.clone(), v.iter().map(|(t, r)| (*t, r.clone())).collect())).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        JoinState {
            windows: self.windows.iter().map(|((s, k), v)| (*s, k.clone(), v.left.clone(), v.right.clone())).collect(),
            rows,
            waiting: self.waiting.iter().map(|((t, k), v)| (*t, k.clone(), v.clone())).collect(),
        }
    }

    pub fn import(&mut self, state: JoinState) {
        self.windows.clear();
        self.expiry.clear();
        self.kept = 0;
        let lateness = self.spec.allowed_lateness_ms;
        for (start, key, left, right) in state.windows {
            let mut right_upper = Vec::with_capacity(right.len());
            if let JoinKind::Interval { lower_ms, upper_ms } = self.spec.kind {
                for (t, _) in &left {
                    *self
                        .expiry
                        .entry((t.saturating_sub(lower_ms).saturating_add(lateness), key.clone()))
                        .or_default() += 1;
                }
                for (t, v) in &right {
                    let upper = self.upper_of(*t, v, upper_ms);
                    right_upper.push(upper);
                    *self.expiry.entry((upper.saturating_add(lateness), key.clone())).or_default() += 1;
                }
            }
            self.kept += left.len() + right.len();
            self.windows.insert((start, key), Sides { left, right, right_upper });
        }
        self.table.clear();
        for (key, rows) in state.rows {
            self.kept += rows.len();
            self.table.insert(key, rows.into_iter().collect());
        }
        self.waiting.clear();
        for (t, key, lefts) in state.waiting {
            self.kept += lefts.len();
            self.waiting.insert((t, key), lefts);
        }
    }
}
