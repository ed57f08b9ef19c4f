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
    /// Which input of a merged source this is: the events' partition and source.
    index: u16,
}

impl<R: BufRead> JsonlSource<R> {
    pub fn new(input: R, name: &str, format: EventFormat) -> Self {
        Self { input, name: name.to_owned(), format, line: String::new(), offset: -1, assigned: false, index: 0 }
    }

    /// Input `index` of a merged source (`MergedSource`).
    pub fn with_index(mut self, index: u16) -> Self {
        self.index = index;
        self
    }
}

/// A bounded source's common answers.
macro_rules! bounded_source_common {
    () => {
        fn assignment(&mut self) -> Result<Option<Vec<TaskId>>, RunError> {
            Ok((!std::mem::replace(&mut self.assigned, true)).then(|| vec![TASK]))
        }
        fn tasks(&self, _stage: usize) -> Vec<i32> {
            vec![0]
        }
        fn input_of(&self, _task: TaskId) -> (&str, i32) {
            (&self.name, 0)
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
                let mut event =
                    Event::new(None, serde_json::Value::Null, 0).on_partition(i32::from(self.index), self.offset);
                event.source = self.index;
                let d = DeadLetter { event, reason: DeadLetterReason::Undecodable { detail } };
                return Ok(Polled::Input { task: TASK, offset: self.offset, input: Input::Dead(Box::new(d)) });
            }
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            let partition = i32::from(self.index);
            let input = match self.format.decode(text.as_bytes()) {
                Ok((value, raw)) => match self.format.event(value, None, None, partition, self.offset) {
                    Ok(mut ev) => {
                        ev.source = self.index;
                        ev.raw = raw;
                        Input::Event(ev, None)
                    }
                    Err(mut d) => {
                        d.event.source = self.index;
                        d.event.raw = raw;
                        Input::Dead(d)
                    }
                },
                Err(e) => {
                    let mut event = Event::new(None, serde_json::Value::String(text.to_owned()), 0)
                        .on_partition(partition, self.offset);
                    event.source = self.index;
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

/// Several bounded inputs (files) read as one task, merged by event time: the next input is
/// always taken from the input whose waiting event is earliest, so no input runs ahead of the
/// others by more than its own disorder and window state stays bounded. Each input is a
/// partition of the task's watermark (`Event::partition`) and a source of the spec
/// (`Event::source`). Offsets handed to the runner count inputs over all files (they must
/// grow); events keep their own line numbers.
pub struct MergedSource<S> {
    inputs: Vec<S>,
    /// Per input: its next input, read ahead (None: not read yet or ended).
    heads: Vec<Option<Input>>,
    ended: Vec<bool>,
    /// Ended inputs not yet reported to the runner.
    done: Vec<i32>,
    name: String,
    offset: i64,
    assigned: bool,
}

impl<S: Source> MergedSource<S> {
    pub fn new(inputs: Vec<S>, name: &str) -> Self {
        let n = inputs.len();
        Self {
            inputs,
            heads: (0..n).map(|_| None).collect(),
            ended: vec![false; n],
            done: Vec::new(),
            name: name.to_owned(),
            offset: -1,
            assigned: false,
        }
    }

    /// The event time that orders an input: dead letters and control inputs go first.
    fn time_of(input: &Input) -> i64 {
        match input {
            Input::Event(ev, _) => ev.timestamp_ms,
            _ => i64::MIN,
        }
    }
}

impl<S: Source> Source for MergedSource<S> {
    fn poll(&mut self, timeout: Duration) -> Result<Polled, RunError> {
        for i in 0..self.inputs.len() {
            if self.heads[i].is_none() && !self.ended[i] {
                match self.inputs[i].poll(timeout)? {
                    Polled::Input { input, .. } => self.heads[i] = Some(input),
                    Polled::End => {
                        self.ended[i] = true;
                        self.done.push(i as i32);
                    }
                    Polled::Nothing | Polled::InputDone { .. } => {}
                }
            }
        }
        if let Some(input) = self.done.pop() {
            return Ok(Polled::InputDone { task: TASK, input });
        }
        let next = (0..self.heads.len())
            .filter_map(|i| self.heads[i].as_ref().map(|h| (Self::time_of(h), i)))
            .min()
            .map(|(_, i)| i);
        match next.and_then(|i| self.heads[i].take()) {
            Some(input) => {
                self.offset += 1;
                Ok(Polled::Input { task: TASK, offset: self.offset, input })
            }
            None => Ok(Polled::End),
        }
    }

    fn merged_inputs(&self) -> i32 {
        self.inputs.len() as i32
    }

    fn dead_letter_origin(&self, task: TaskId, partition: i32) -> &str {
        match usize::try_from(partition).ok().and_then(|i| self.inputs.get(i)) {
            Some(input) => input.input_of(task).0,
            None => &self.name,
        }
    }

    bounded_source_common!();
}
