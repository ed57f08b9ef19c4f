//! Top-N per key and window: the events with the N highest (or lowest) values of a field in
//! each tumbling or sliding window, ties kept (SQL's `RANK() <= N`). Nexmark q5 ("the
//! auctions with the most bids per window") and q7 ("the bids with the highest price per
//! window") are this operator with N = 1. The rows are emitted, with `window_start`,
//! `window_end` and `rank` added, when the watermark passes the window's end plus the allowed
//! lateness; later events go to the dead-letter output.

use crate::event::{DeadLetter, DeadLetterReason, Event};
use crate::window::Window;
use crate::StreamError;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a top-N window keeps.
#[derive(Debug, Clone)]
pub struct TopNSpec {
    /// Tumbling or sliding (sessions have no fixed windows to rank within).
    pub window: Window,
    /// Top-level numeric field of the event to rank by.
    pub by: String,
    /// Rows with rank ≤ n are kept (ties share a rank).
    pub n: usize,
    /// Highest first (default); false ranks the lowest first.
    pub descending: bool,
    pub allowed_lateness_ms: i64,
    /// Rows kept at most (all keys and windows); exceeding it is an error, not an OOM.
    pub max_rows: usize,
}

/// One window's candidates, best first.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ranked {
    end_ms: i64,
    rows: Vec<(f64, Event)>,
}

pub(crate) struct TopN {
    spec: TopNSpec,
    /// key -> window start -> candidates; looked up by `&str`.
    open: HashMap<String, BTreeMap<i64, Ranked>>,
    /// (end + allowed lateness, key, start): the order windows close in.
    deadlines: BTreeSet<(i64, String, i64)>,
    rows: usize,
}

impl TopN {
    pub fn new(spec: TopNSpec) -> Result<Self, StreamError> {
        spec.window.validate().map_err(StreamError::InvalidSpec)?;
        if matches!(spec.window, Window::Session { .. } | Window::Until | Window::Global) {
            return Err(StreamError::InvalidSpec("top_n needs a tumbling or sliding window"));
        }
        if spec.n == 0 {
            return Err(StreamError::InvalidSpec("top_n needs n >= 1"));
        }
        Ok(Self { spec, open: HashMap::new(), deadlines: BTreeSet::new(), rows: 0 })
    }

    pub fn allowed_lateness_ms(&self) -> i64 {
        self.spec.allowed_lateness_ms
    }

    pub fn open_windows(&self) -> usize {
        self.deadlines.len()
    }

    /// Adds an event to each window it falls in, or dead-letters it.
    pub fn process(&mut self, ev: Event, watermark_ms: i64, dead: &mut Vec<DeadLetter>) -> Result<(), StreamError> {
        let Some(x) = ev.value.get(&self.spec.by).and_then(Value::as_f64) else {
            let detail = if ev.value.get(&self.spec.by).is_some() { "not a number" } else { "missing" };
            let reason = DeadLetterReason::BadField { field: self.spec.by.clone(), detail: detail.into() };
            dead.push(DeadLetter { event: ev, reason });
            return Ok(());
        };
        let lateness = self.spec.allowed_lateness_ms;
        let mut any = false;
        let key = ev.key.as_deref().unwrap_or_default();
        for (start, end) in self.spec.window.assign(ev.timestamp_ms) {
            if end.saturating_add(lateness) <= watermark_ms {
                continue;
            }
            any = true;
            if self.rows >= self.spec.max_rows {
                return Err(StreamError::StateTooLarge { open_windows: self.rows, max: self.spec.max_rows });
            }
            let windows = match self.open.get_mut(key) {
                Some(w) => w,
                None => self.open.entry(key.to_owned()).or_default(),
            };
            let ranked = windows.entry(start).or_insert_with(|| {
                self.deadlines.insert((end.saturating_add(lateness), key.to_owned(), start));
                Ranked { end_ms: end, rows: Vec::new() }
            });
            let before = ranked.rows.len();
            insert(ranked, x, &ev, self.spec.n, self.spec.descending);
            self.rows = (self.rows + ranked.rows.len()).saturating_sub(before);
        }
        if !any {
            let reason = DeadLetterReason::Late { watermark_ms, allowed_lateness_ms: lateness };
            dead.push(DeadLetter { event: ev, reason });
        }
        Ok(())
    }

    /// Emits the ranked rows of every window the watermark closed.
    pub fn on_watermark(&mut self, watermark_ms: i64, out: &mut Vec<Event>) {
        while self.deadlines.first().is_some_and(|(deadline, _, _)| *deadline <= watermark_ms) {
            let Some((_, key, start)) = self.deadlines.pop_first() else { break };
            let Some(windows) = self.open.get_mut(&key) else { continue };
            let Some(ranked) = windows.remove(&start) else { continue };
            if windows.is_empty() {
                self.open.remove(&key);
            }
            self.rows -= ranked.rows.len();
            let mut rank = 0;
            let mut previous = None;
            for (i, (x, mut ev)) in ranked.rows.into_iter().enumerate() {
                if previous != Some(x) {
                    rank = i + 1;
                    previous = Some(x);
                }
                if let Value::Object(m) = &mut ev.value {
                    m.insert("window_start".into(), start.into());
                    m.insert("window_end".into(), ranked.end_ms.into());
                    m.insert("rank".into(), rank.into());
                }
                ev.timestamp_ms = ranked.end_ms - 1;
                out.push(ev);
            }
        }
    }

    /// Open windows as (key, start, candidates), for checkpoints.
    pub fn export(&self) -> Vec<(String, i64, Ranked)> {
        let mut v: Vec<_> =
            self.open.iter().flat_map(|(k, w)| w.iter().map(move |(s, r)| (k.clone(), *s, r.clone()))).collect();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    }

    pub fn import(&mut self, windows: Vec<(String, i64, Ranked)>) {
        self.open.clear();
        self.deadlines.clear();
        self.rows = 0;
        for (k, s, r) in windows {
            self.deadlines.insert((r.end_ms.saturating_add(self.spec.allowed_lateness_ms), k.clone(), s));
            self.rows += r.rows.len();
            self.open.entry(k).or_default().insert(s, r);
        }
    }
}

/// Inserts a candidate if it ranks within n; drops rows that fell out.
fn insert(ranked: &mut Ranked, x: f64, ev: &Event, n: usize, descending: bool) {
    let better = |a: f64, b: f64| if descending { a > b } else { a < b };
    let rows = &mut ranked.rows;
    // Not in the top n: n rows strictly better already.
    if rows.len() >= n && better(rows[n - 1].0, x) {
        return;
    }
    let at = rows.partition_point(|(y, _)| !better(x, *y));
    rows.insert(at, (x, ev.clone()));
    // Keep every row tied with the n-th; drop those strictly worse than it.
    if rows.len() > n {
        let threshold = rows[n - 1].0;
        let keep = rows.partition_point(|(y, _)| !better(threshold, *y));
        rows.truncate(keep);
    }
}
