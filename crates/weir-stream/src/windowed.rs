//! Windowed aggregation per key: tumbling, sliding and session windows in event time.
//! A window's final result is emitted when the watermark passes its end plus the allowed
//! lateness; events arriving after that go to the dead-letter output.

use crate::aggregate::{Accumulator, Aggregate};
use crate::event::{DeadLetter, DeadLetterReason, Event, WindowResult};
use crate::window::Window;
use crate::StreamError;
use std::collections::BTreeMap;

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
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Open {
    end_ms: i64,
    acc: Accumulator,
    early_sent: bool,
}

#[derive(Debug)]
pub(crate) struct WindowOperator {
    spec: WindowSpec,
    /// (key, window start) -> state. Sessions use the same map, merged on insert.
    open: BTreeMap<(String, i64), Open>,
}

impl WindowOperator {
    pub fn new(spec: WindowSpec) -> Result<Self, StreamError> {
        spec.window.validate().map_err(StreamError::InvalidSpec)?;
        if spec.aggregate.needs_field() && spec.field.is_none() {
            return Err(StreamError::InvalidSpec("this aggregate needs a field"));
        }
        Ok(Self { spec, open: BTreeMap::new() })
    }

    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Open windows as (key, start, state), for checkpoints.
    pub fn export(&self) -> Vec<(String, i64, Open)> {
        self.open.iter().map(|((k, s), o)| (k.clone(), *s, o.clone())).collect()
    }

    pub fn import(&mut self, windows: Vec<(String, i64, Open)>) {
        self.open = windows.into_iter().map(|(k, s, o)| ((k, s), o)).collect();
    }

    fn value_of(&self, ev: &Event) -> Result<(f64, String), DeadLetterReason> {
        let Some(field) = &self.spec.field else { return Ok((1.0, String::new())) };
        let v = ev
            .value
            .get(field)
            .ok_or_else(|| DeadLetterReason::BadField { field: field.clone(), detail: "missing".into() })?;
        let raw = v.to_string();
        if self.spec.aggregate == Aggregate::CountDistinct {
            return Ok((0.0, raw));
        }
        let x = v.as_f64().ok_or_else(|| DeadLetterReason::BadField {
            field: field.clone(),
            detail: format!("{raw} is not a number"),
        })?;
        Ok((x, raw))
    }

    /// Adds an event, or dead-letters it when it is late or lacks its field.
    pub fn process(&mut self, ev: Event, watermark_ms: i64, dead: &mut Vec<DeadLetter>) -> Result<(), StreamError> {
        let (x, raw) = match self.value_of(&ev) {
            Ok(v) => v,
            Err(reason) => {
                dead.push(DeadLetter { event: ev, reason });
                return Ok(());
            }
        };
        let key = ev.key.clone().unwrap_or_default();
        let lateness = self.spec.allowed_lateness_ms;
        let closed = |end: i64| end.saturating_add(lateness) <= watermark_ms;
        let t = ev.timestamp_ms;
        match self.spec.window {
            Window::Session { gap_ms } => {
                if closed(t + gap_ms) {
                    dead.push(DeadLetter {
                        event: ev,
                        reason: DeadLetterReason::Late { watermark_ms, allowed_lateness_ms: lateness },
                    });
                    return Ok(());
                }
                let mut start = t;
                let mut end = t + gap_ms;
                let mut acc = Accumulator::default();
                acc.add(x, &raw, self.spec.aggregate);
                // Merge every session of this key that the new one touches.
                let touching: Vec<i64> = self
                    .open
                    .range((key.clone(), i64::MIN)..=(key.clone(), i64::MAX))
                    .filter(|(&(_, s), o)| s <= end && t <= o.end_ms)
                    .map(|(&(_, s), _)| s)
                    .collect();
                for s in touching {
                    if let Some(o) = self.open.remove(&(key.clone(), s)) {
                        start = start.min(s);
                        end = end.max(o.end_ms);
                        acc.merge(o.acc);
                    }
                }
                self.insert(key, start, Open { end_ms: end, acc, early_sent: false })?;
            }
            w => {
                let windows = w.assign(t);
                let open: Vec<(i64, i64)> = windows.into_iter().filter(|&(_, end)| !closed(end)).collect();
                if open.is_empty() {
                    dead.push(DeadLetter {
                        event: ev,
                        reason: DeadLetterReason::Late { watermark_ms, allowed_lateness_ms: lateness },
                    });
                    return Ok(());
                }
                for (start, end) in open {
                    match self.open.get_mut(&(key.clone(), start)) {
                        Some(o) => o.acc.add(x, &raw, self.spec.aggregate),
                        None => {
                            let mut acc = Accumulator::default();
                            acc.add(x, &raw, self.spec.aggregate);
                            self.insert(key.clone(), start, Open { end_ms: end, acc, early_sent: false })?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, key: String, start: i64, open: Open) -> Result<(), StreamError> {
        if self.open.len() >= self.spec.max_open_windows {
            return Err(StreamError::StateTooLarge { open_windows: self.open.len(), max: self.spec.max_open_windows });
        }
        self.open.insert((key, start), open);
        Ok(())
    }

    /// Emits early updates for windows whose end the watermark passed, and final results
    /// (removing the state) for windows closed by the allowed lateness.
    pub fn on_watermark(&mut self, watermark_ms: i64, out: &mut Vec<WindowResult>) {
        let lateness = self.spec.allowed_lateness_ms;
        let kind = self.spec.aggregate;
        let mut done = Vec::new();
        for ((key, start), o) in self.open.iter_mut() {
            let result = |is_final| WindowResult {
                key: key.clone(),
                window_start_ms: *start,
                window_end_ms: o.end_ms,
                value: o.acc.result(kind),
                count: o.acc.count,
                is_final,
            };
            if o.end_ms.saturating_add(lateness) <= watermark_ms {
                out.push(result(true));
                done.push((key.clone(), *start));
            } else if self.spec.early_updates && !o.early_sent && o.end_ms <= watermark_ms {
                out.push(result(false));
                o.early_sent = true;
            }
        }
        for k in done {
            self.open.remove(&k);
        }
    }
}
