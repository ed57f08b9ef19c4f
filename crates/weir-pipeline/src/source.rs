//! Bounded sources read in one process: JSON Lines files (streamed line by line, so memory
//! does not grow with the file) and the Nexmark generator. Each is one task (stage 0,
//! partition 0); offsets are line numbers (0-based) or event numbers.

use crate::kafka::RunError;
use crate::runner::{Exchange, Input, Polled, Source, TaskId};
use crate::yaml::EventFormat;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;
use weir_stream::{DeadLetter, DeadLetterReason, Event};

const TASK: TaskId = TaskId { stage: 0, partition: 0 };

/// Lines longer than this are dead letters, not allocations.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A JSON Lines file, one event per line.
pub struct JsonlSource<R> {
    input: R,
    name: String,
    format: EventFormat,
    line: String,
    offset: i64,
    assigned: bool,
}

impl<R: BufRead> JsonlSource<R> {
    pub fn new(input: R, name: &str, format: EventFormat) -> Self {
        Self { input, name: name.to_owned(), format, line: String::new(), offset: -1, assigned: false }
    }
}

/// A bounded source's common answers.
macro_rules! bounded_source_common {
    () => {
        fn assignment(&mut self) -> Result<Option<Vec<TaskId>>, RunError> {
            Ok((!std::mem::replace(&mut self.assigned, true)).then(|| vec![TASK]))
        }
        fn partitions(&self, _stage: usize) -> i32 {
            1
        }
        fn topic(&self, _stage: usize) -> &str {
            &self.name
        }
        fn bounded(&self) -> bool {
            true
        }
        fn commit(&mut self, _offsets: &[(TaskId, i64)]) -> Result<(), RunError> {
            Ok(())
        }
        fn committed(&mut self, _task: TaskId) -> Result<Option<i64>, RunError> {
            Ok(None)
        }
        fn at_end(&mut self, _positions: &BTreeMap<TaskId, i64>) -> Result<bool, RunError> {
            Ok(false)
        }
        fn exchange(&mut self) -> Option<&mut dyn Exchange> {
            None
        }
    };
}

impl<R: BufRead> Source for JsonlSource<R> {
    fn poll(&mut self, _timeout: Duration) -> Result<Polled, RunError> {
        loop {
            self.line.clear();
            self.offset += 1;
            let mut limited = <&mut R as std::io::Read>::take(&mut self.input, MAX_LINE_BYTES as u64 + 1);
            let n = limited
                .read_line(&mut self.line)
                .map_err(|e| RunError::Other(format!("reading {}: {e}", self.name)))?;
            if n == 0 {
                return Ok(Polled::End);
            }
            if n > MAX_LINE_BYTES && !self.line.ends_with('\n') {
                // Skip the rest of the over-long line.
                let mut rest = Vec::new();
                self.input.read_until(b'\n', &mut rest).map_err(|e| RunError::Other(format!("{}: {e}", self.name)))?;
                let detail = format!("line longer than {MAX_LINE_BYTES} bytes");
                let event = Event::new(None, serde_json::Value::Null, 0).on_partition(0, self.offset);
                let d = DeadLetter { event, reason: DeadLetterReason::Undecodable { detail } };
                return Ok(Polled::Input { task: TASK, offset: self.offset, input: Input::Dead(Box::new(d)) });
            }
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            let input = match serde_json::from_str(text) {
                Ok(value) => match self.format.event(value, None, None, 0, self.offset) {
                    Ok(ev) => Input::Event(ev, None),
                    Err(d) => Input::Dead(d),
                },
                Err(e) => {
                    let event =
                        Event::new(None, serde_json::Value::String(text.to_owned()), 0).on_partition(0, self.offset);
                    let detail = format!("line {} of {}: not JSON: {e}", self.offset + 1, self.name);
                    Input::Dead(Box::new(DeadLetter { event, reason: DeadLetterReason::Undecodable { detail } }))
                }
            };
            return Ok(Polled::Input { task: TASK, offset: self.offset, input });
        }
    }

    bounded_source_common!();
}

/// The Nexmark generator: `events` events, each as the `nexmark` crate serializes it
/// (`{"Bid": {...}}`, `{"Auction": {...}}`, `{"Person": {...}}`).
pub struct NexmarkSource {
    generator: std::iter::Take<nexmark::EventGenerator>,
    name: String,
    format: EventFormat,
    offset: i64,
    assigned: bool,
}

impl NexmarkSource {
    pub fn new(events: u64, rate: usize, format: EventFormat) -> Self {
        let generator = crate::nexmark::generator(rate).take(events as usize);
        Self { generator, name: "nexmark".into(), format, offset: -1, assigned: false }
    }
}

impl Source for NexmarkSource {
    fn poll(&mut self, _timeout: Duration) -> Result<Polled, RunError> {
        let Some(e) = self.generator.next() else { return Ok(Polled::End) };
        self.offset += 1;
        let value = crate::nexmark::to_crate_json(&e);
        let input = match self.format.event(value, None, None, 0, self.offset) {
            Ok(ev) => Input::Event(ev, None),
            Err(d) => Input::Dead(d),
        };
        Ok(Polled::Input { task: TASK, offset: self.offset, input })
    }

    bounded_source_common!();
}
