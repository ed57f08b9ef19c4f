//! JSON Lines source and sink: one JSON object per line.
//!
//! Source lines look like `{"key": "...", "timestamp": 1700000000000, "value": {...}}`, or any
//! JSON object with the event time in a named field. Malformed lines become dead letters.

use serde_json::{json, Value};
use std::io::{BufRead, Write};
use weir_stream::event::{DeadLetter, DeadLetterReason, Event, WindowResult};

/// How to read events out of JSON lines.
#[derive(Debug, Clone)]
pub struct JsonlFormat {
    /// Field holding the event time in ms (default "timestamp").
    pub time_field: String,
    /// Field holding the key (default "key"); absent means no key.
    pub key_field: String,
}

impl Default for JsonlFormat {
    fn default() -> Self {
        Self { time_field: "timestamp".into(), key_field: "key".into() }
    }
}

impl JsonlFormat {
    /// Parses one line into an event (the whole object is the value), or a dead letter.
    pub fn parse(&self, line: &str, offset: i64) -> Result<Event, Box<DeadLetter>> {
        let bad = |detail: String| {
            Box::new(DeadLetter {
                event: Event::new(None, Value::String(line.to_owned()), 0).on_partition(0, offset),
                reason: DeadLetterReason::BadField { field: self.time_field.clone(), detail },
            })
        };
        let v: Value = serde_json::from_str(line).map_err(|e| {
            Box::new(DeadLetter {
                event: Event::new(None, Value::String(line.to_owned()), 0).on_partition(0, offset),
                reason: DeadLetterReason::Undecodable { detail: format!("not JSON: {e}") },
            })
        })?;
        let t =
            v.get(&self.time_field).and_then(Value::as_i64).ok_or_else(|| bad("missing or not an integer".into()))?;
        let key = weir_stream::event::key_from_field(&v, &self.key_field);
        Ok(Event { key, value: v, timestamp_ms: t, partition: 0, offset, source: 0, raw: None })
    }

    /// Reads every line of `input`.
    pub fn read_all(&self, input: impl BufRead) -> std::io::Result<Vec<Result<Event, Box<DeadLetter>>>> {
        let mut out = Vec::new();
        for (i, line) in input.lines().enumerate() {
            let line = line?;
            if !line.trim().is_empty() {
                out.push(self.parse(&line, i as i64));
            }
        }
        Ok(out)
    }
}

/// Writes window results as JSON lines.
pub fn write_result(out: &mut (impl Write + ?Sized), r: &WindowResult) -> std::io::Result<()> {
    writeln!(out, "{}", crate::sink::result_json(r))
}

/// Writes a dead letter as a JSON line with its reason.
pub fn write_dead_letter(out: &mut (impl Write + ?Sized), d: &DeadLetter) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        json!({"reason": d.reason.to_string(), "offset": d.event.offset, "timestamp": d.event.timestamp_ms, "value": d.event.full_value()})
    )
}
