//! Keyed window join of two streams: events of the left and right stream with the same key
//! in the same tumbling window are paired when the window closes (inner join). Events later
//! than the window's end plus the allowed lateness go to the dead-letter output.

use crate::event::{DeadLetter, DeadLetterReason, Event};
use crate::watermark::Watermarks;
use crate::StreamError;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Which input an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// A joined pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub key: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub left: Value,
    pub right: Value,
}

impl Joined {
    /// `{"key", "window_start", "left", "right"}` for sinks.
    pub fn to_json(&self) -> Value {
        json!({"key": self.key, "window_start": self.window_start_ms, "window_end": self.window_end_ms, "left": self.left, "right": self.right})
    }
}

#[derive(Debug, Default)]
struct Buffers {
    left: Vec<Value>,
    right: Vec<Value>,
}

/// Inner join of two keyed streams over tumbling windows of `size_ms`.
pub struct WindowJoin {
    size_ms: i64,
    allowed_lateness_ms: i64,
    /// Buffered events at most (both sides, all windows); exceeding it is an error.
    max_buffered: usize,
    buffered: usize,
    windows: BTreeMap<(i64, String), Buffers>,
    watermarks: Watermarks,
}

impl WindowJoin {
    pub fn new(
        size_ms: i64,
        allowed_lateness_ms: i64,
        out_of_orderness_ms: i64,
        max_buffered: usize,
    ) -> Result<Self, StreamError> {
        if size_ms <= 0 {
            return Err(StreamError::InvalidSpec("join window size must be positive"));
        }
        Ok(Self {
            size_ms,
            allowed_lateness_ms,
            max_buffered,
            buffered: 0,
            windows: BTreeMap::new(),
            watermarks: Watermarks::new(out_of_orderness_ms, i64::MAX),
        })
    }

    /// Adds an event of one side; returns pairs of windows this closed, and dead letters.
    pub fn push(&mut self, side: Side, ev: Event, now_ms: i64) -> Result<(Vec<Joined>, Vec<DeadLetter>), StreamError> {
        let watermark = self.watermarks.current();
        let start = ev.timestamp_ms.div_euclid(self.size_ms) * self.size_ms;
        let mut dead = Vec::new();
        if (start + self.size_ms).saturating_add(self.allowed_lateness_ms) <= watermark {
            dead.push(DeadLetter {
                event: ev,
                reason: DeadLetterReason::Late {
                    watermark_ms: watermark,
                    allowed_lateness_ms: self.allowed_lateness_ms,
                },
            });
            return Ok((Vec::new(), dead));
        }
        if self.buffered >= self.max_buffered {
            return Err(StreamError::StateTooLarge { open_windows: self.buffered, max: self.max_buffered });
        }
        // Each side has its own partitions: keep their watermarks apart.
        let partition = ev.partition * 2 + i32::from(side == Side::Right);
        let new_watermark = self.watermarks.observe(partition, ev.timestamp_ms, now_ms);
        let b = self.windows.entry((start, ev.key.clone().unwrap_or_default())).or_default();
        match side {
            Side::Left => b.left.push(ev.value),
            Side::Right => b.right.push(ev.value),
        }
        self.buffered += 1;
        Ok((self.fire(new_watermark), dead))
    }

    /// Moves the watermark by hand (end of input) and returns the pairs it releases.
    pub fn advance_watermark(&mut self, watermark_ms: i64) -> Vec<Joined> {
        let wm = self.watermarks.advance_to(watermark_ms);
        self.fire(wm)
    }

    fn fire(&mut self, watermark: i64) -> Vec<Joined> {
        let mut out = Vec::new();
        // Windows are ordered by start: closed ones are at the front.
        while let Some(entry) = self.windows.first_entry() {
            if (entry.key().0 + self.size_ms).saturating_add(self.allowed_lateness_ms) > watermark {
                break;
            }
            let Some((k, b)) = self.windows.pop_first() else { break };
            self.buffered -= b.left.len() + b.right.len();
            emit(&mut out, &k, self.size_ms, &b);
        }
        out
    }
}

fn emit(out: &mut Vec<Joined>, k: &(i64, String), size_ms: i64, b: &Buffers) {
    for l in &b.left {
        for r in &b.right {
            out.push(Joined {
                key: k.1.clone(),
                window_start_ms: k.0,
                window_end_ms: k.0 + size_ms,
                left: l.clone(),
                right: r.clone(),
            });
        }
    }
}

/// Unwindowed inner join (a "regular join"): every left event pairs with every right event of
/// the same key, whichever arrives first. Both sides are kept, up to `max_entries` events in
/// all; exceeding that is an error, not an OOM.
pub struct TableJoin {
    sides: std::collections::HashMap<String, Buffers>,
    entries: usize,
    max_entries: usize,
}

impl TableJoin {
    pub fn new(max_entries: usize) -> Self {
        Self { sides: std::collections::HashMap::new(), entries: 0, max_entries }
    }

    /// Stores the value and calls `on_pair(left, right)` for each match it makes.
    pub fn push(
        &mut self,
        side: Side,
        key: &str,
        value: Value,
        mut on_pair: impl FnMut(&Value, &Value),
    ) -> Result<(), StreamError> {
        if self.entries >= self.max_entries {
            return Err(StreamError::StateTooLarge { open_windows: self.entries, max: self.max_entries });
        }
        let b = match self.sides.get_mut(key) {
            Some(b) => b,
            None => self.sides.entry(key.to_owned()).or_default(),
        };
        match side {
            Side::Left => {
                b.right.iter().for_each(|r| on_pair(&value, r));
                b.left.push(value);
            }
            Side::Right => {
                b.left.iter().for_each(|l| on_pair(l, &value));
                b.right.push(value);
            }
        }
        self.entries += 1;
        Ok(())
    }
}
