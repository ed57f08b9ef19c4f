//! A test driver: feed events with controlled event times and processing times, advance the
//! watermark, and look at everything the pipeline emitted — no broker, no sleeps.

use crate::event::{DeadLetter, Event, WindowResult};
use crate::pipeline::{Outputs, Pipeline};
use crate::StreamError;

pub struct TestDriver {
    pipeline: Pipeline,
    now_ms: i64,
    collected: Outputs,
}

impl TestDriver {
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline, now_ms: 0, collected: Outputs::default() }
    }

    /// Processing time for the next events (for idleness).
    pub fn set_processing_time(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        let out = self.pipeline.tick(now_ms);
        self.absorb(out);
    }

    pub fn push(&mut self, event: Event) -> Result<(), StreamError> {
        let out = self.pipeline.process(event, self.now_ms)?;
        self.absorb(out);
        Ok(())
    }

    pub fn advance_watermark(&mut self, watermark_ms: i64) {
        let out = self.pipeline.advance_watermark(watermark_ms);
        self.absorb(out);
    }

    fn absorb(&mut self, out: Outputs) {
        self.collected.results.extend(out.results);
        self.collected.events.extend(out.events);
        self.collected.dead_letters.extend(out.dead_letters);
        self.collected.duplicates += out.duplicates;
    }

    /// Final window results so far, sorted by (key, window start).
    pub fn final_results(&self) -> Vec<WindowResult> {
        let mut r: Vec<WindowResult> = self.collected.results.iter().filter(|r| r.is_final()).cloned().collect();
        r.sort_by(|a, b| (&a.key, a.window_start_ms).cmp(&(&b.key, b.window_start_ms)));
        r
    }

    pub fn early_results(&self) -> Vec<WindowResult> {
        self.collected.results.iter().filter(|r| r.kind == crate::event::ResultKind::Early).cloned().collect()
    }

    /// Early updates withdrawn (session windows that merged), in emission order.
    pub fn retractions(&self) -> Vec<WindowResult> {
        self.collected.results.iter().filter(|r| r.is_retraction()).cloned().collect()
    }

    pub fn events(&self) -> &[Event] {
        &self.collected.events
    }

    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.collected.dead_letters
    }

    pub fn duplicates(&self) -> u64 {
        self.collected.duplicates
    }

    pub fn watermark(&self) -> i64 {
        self.pipeline.watermark()
    }
}
