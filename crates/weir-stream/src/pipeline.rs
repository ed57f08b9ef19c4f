//! A pipeline: stateless steps (filter, map, flat_map, key_by, dedup) then an optional
//! windowed aggregation, driven by events and watermarks. Building is separate from
//! running: `Pipeline::builder()...build()` validates the spec once.

use crate::aggregate::UserAggregate;
use crate::dedup::Dedup;
use crate::event::{DeadLetter, DeadLetterReason, Event, WindowResult};
use crate::watermark::Watermarks;
use crate::windowed::{WindowOperator, WindowSpec};
use crate::StreamError;

type FilterFn = Box<dyn Fn(&Event) -> bool + Send>;
type MapFn = Box<dyn Fn(Event) -> Event + Send>;
type FlatMapFn = Box<dyn Fn(Event) -> Vec<Event> + Send>;
type KeyFn = Box<dyn Fn(&Event) -> Option<String> + Send>;
/// Fallible steps: an error sends the event to the dead-letter output with the reason.
type TryFilterFn = Box<dyn Fn(&Event) -> Result<bool, String> + Send>;
type TryMapFn = Box<dyn Fn(Event) -> Result<Event, (Event, String)> + Send>;
/// Appends the events it makes to the Vec (so no Vec per event), or fails.
type TryFlatMapFn = Box<dyn Fn(Event, &mut Vec<Event>) -> Result<(), (Event, String)> + Send>;

enum Step {
    Filter(FilterFn),
    Map(MapFn),
    FlatMap(FlatMapFn),
    KeyBy(KeyFn),
    TryFilter(TryFilterFn),
    TryMap(TryMapFn),
    TryFlatMap(TryFlatMapFn),
    Dedup(Dedup),
}

/// What processing produced: window results, pass-through events (pipelines without a
/// window) and dead letters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outputs {
    pub results: Vec<WindowResult>,
    pub events: Vec<Event>,
    pub dead_letters: Vec<DeadLetter>,
    /// Events dropped as duplicates by a dedup step (counted, on purpose).
    pub duplicates: u64,
}

impl Outputs {
    fn absorb(&mut self, other: Outputs) {
        self.results.extend(other.results);
        self.events.extend(other.events);
        self.dead_letters.extend(other.dead_letters);
        self.duplicates += other.duplicates;
    }
}

pub struct PipelineBuilder {
    steps: Vec<Step>,
    window: Option<WindowSpec>,
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    custom: Option<std::sync::Arc<dyn UserAggregate>>,
}

impl PipelineBuilder {
    pub fn filter(mut self, f: impl Fn(&Event) -> bool + Send + 'static) -> Self {
        self.steps.push(Step::Filter(Box::new(f)));
        self
    }
    pub fn map(mut self, f: impl Fn(Event) -> Event + Send + 'static) -> Self {
        self.steps.push(Step::Map(Box::new(f)));
        self
    }
    pub fn flat_map(mut self, f: impl Fn(Event) -> Vec<Event> + Send + 'static) -> Self {
        self.steps.push(Step::FlatMap(Box::new(f)));
        self
    }
    /// A filter that can fail on an event (e.g. an expression); failures are dead-lettered.
    pub fn try_filter(mut self, f: impl Fn(&Event) -> Result<bool, String> + Send + 'static) -> Self {
        self.steps.push(Step::TryFilter(Box::new(f)));
        self
    }
    /// A map that can fail on an event; failures are dead-lettered with the original event.
    pub fn try_map(mut self, f: impl Fn(Event) -> Result<Event, (Event, String)> + Send + 'static) -> Self {
        self.steps.push(Step::TryMap(Box::new(f)));
        self
    }
    /// A flat_map that can fail on an event (the event is dead-lettered with the reason). It
    /// appends its events to the Vec it is given.
    pub fn try_flat_map(
        mut self,
        f: impl Fn(Event, &mut Vec<Event>) -> Result<(), (Event, String)> + Send + 'static,
    ) -> Self {
        self.steps.push(Step::TryFlatMap(Box::new(f)));
        self
    }
    pub fn key_by(mut self, f: impl Fn(&Event) -> Option<String> + Send + 'static) -> Self {
        self.steps.push(Step::KeyBy(Box::new(f)));
        self
    }
    /// Drops events whose key was seen within `horizon_ms` of event time.
    pub fn dedup(mut self, horizon_ms: i64, max_keys: usize) -> Self {
        self.steps.push(Step::Dedup(Dedup::new(horizon_ms, max_keys)));
        self
    }
    pub fn window(mut self, spec: WindowSpec) -> Self {
        self.window = Some(spec);
        self
    }
    /// A window with a user-defined aggregate (`spec.aggregate` is set to `Custom`).
    pub fn window_with(mut self, mut spec: WindowSpec, aggregate: impl UserAggregate + 'static) -> Self {
        spec.aggregate = crate::Aggregate::Custom;
        self.window = Some(spec);
        self.custom = Some(std::sync::Arc::new(aggregate));
        self
    }
    /// Watermark = max event time per partition minus this.
    pub fn out_of_orderness(mut self, ms: i64) -> Self {
        self.out_of_orderness_ms = ms;
        self
    }
    /// A partition silent this long (processing time) stops holding the watermark back.
    pub fn idle_timeout(mut self, ms: i64) -> Self {
        self.idle_timeout_ms = ms;
        self
    }
    pub fn build(self) -> Result<Pipeline, StreamError> {
        let custom = self.custom;
        let window = self.window.map(|w| WindowOperator::new(w, custom)).transpose()?;
        Ok(Pipeline {
            steps: self.steps,
            window,
            watermarks: Watermarks::new(self.out_of_orderness_ms, self.idle_timeout_ms),
            scratch: (Vec::new(), Vec::new()),
        })
    }
}

pub struct Pipeline {
    steps: Vec<Step>,
    window: Option<WindowOperator>,
    watermarks: Watermarks,
    /// Reused between events: steps pass events through these instead of fresh Vecs.
    scratch: (Vec<Event>, Vec<Event>),
}

/// Everything a pipeline must remember to continue after a restart, together with the source
/// positions it covers: taken after the sink flushed, stored, then the offsets committed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Next offset to read per source partition.
    pub source_offsets: std::collections::BTreeMap<i32, i64>,
    watermarks: Watermarks,
    windows: Vec<(String, i64, crate::windowed::Open)>,
    /// Per dedup step, in order.
    dedup: Vec<Vec<(String, i64)>>,
}

impl Checkpoint {
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl Pipeline {
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            steps: Vec::new(),
            window: None,
            out_of_orderness_ms: 0,
            idle_timeout_ms: 60_000,
            custom: None,
        }
    }

    pub fn watermark(&self) -> i64 {
        self.watermarks.current()
    }

    pub fn open_windows(&self) -> usize {
        self.window.as_ref().map_or(0, WindowOperator::open_windows)
    }

    /// Processes one event at processing time `now_ms`.
    pub fn process(&mut self, event: Event, now_ms: i64) -> Result<Outputs, StreamError> {
        let mut out = Outputs::default();
        // The watermark before this event decides lateness; the event then advances it.
        let watermark = self.watermarks.current();
        let new_watermark = self.watermarks.observe(event.partition, event.timestamp_ms, now_ms);
        let (mut batch, mut next) = std::mem::take(&mut self.scratch);
        batch.clear();
        batch.push(event);
        for step in &mut self.steps {
            next.clear();
            for ev in batch.drain(..) {
                match step {
                    Step::Filter(f) => {
                        if f(&ev) {
                            next.push(ev);
                        }
                    }
                    Step::Map(f) => next.push(f(ev)),
                    Step::FlatMap(f) => next.extend(f(ev)),
                    Step::KeyBy(f) => {
                        let key = f(&ev);
                        next.push(Event { key, ..ev });
                    }
                    Step::TryFilter(f) => match f(&ev) {
                        Ok(true) => next.push(ev),
                        Ok(false) => {}
                        Err(detail) => out
                            .dead_letters
                            .push(DeadLetter { event: ev, reason: DeadLetterReason::Expression { detail } }),
                    },
                    Step::TryFlatMap(f) => {
                        if let Err((e, detail)) = f(ev, &mut next) {
                            out.dead_letters
                                .push(DeadLetter { event: e, reason: DeadLetterReason::Expression { detail } });
                        }
                    }
                    Step::TryMap(f) => match f(ev) {
                        Ok(e) => next.push(e),
                        Err((e, detail)) => out
                            .dead_letters
                            .push(DeadLetter { event: e, reason: DeadLetterReason::Expression { detail } }),
                    },
                    Step::Dedup(d) => {
                        if d.admit(ev.key.as_deref().unwrap_or_default(), ev.timestamp_ms)? {
                            next.push(ev);
                        } else {
                            out.duplicates += 1;
                        }
                    }
                }
            }
            std::mem::swap(&mut batch, &mut next);
        }
        let result = match &mut self.window {
            Some(w) => {
                batch.drain(..).try_for_each(|ev| w.process(ev, watermark, &mut out.results, &mut out.dead_letters))
            }
            None => {
                out.events.append(&mut batch);
                Ok(())
            }
        };
        self.scratch = (batch, next);
        result?;
        if new_watermark > watermark {
            out.absorb(self.fire(new_watermark));
        }
        Ok(out)
    }

    /// Applies processing-time idleness (a silent partition stops holding the watermark).
    pub fn tick(&mut self, now_ms: i64) -> Outputs {
        let before = self.watermarks.current();
        let wm = self.watermarks.tick(now_ms);
        if wm > before {
            self.fire(wm)
        } else {
            Outputs::default()
        }
    }

    /// The pipeline's state with the source offsets it has consumed up to.
    pub fn checkpoint(&self, source_offsets: std::collections::BTreeMap<i32, i64>) -> Checkpoint {
        Checkpoint {
            source_offsets,
            watermarks: self.watermarks.clone(),
            windows: self.window.as_ref().map(WindowOperator::export).unwrap_or_default(),
            dedup: self
                .steps
                .iter()
                .filter_map(|s| if let Step::Dedup(d) = s { Some(d.export()) } else { None })
                .collect(),
        }
    }

    /// Restores state saved by `checkpoint` into a pipeline built from the same spec.
    pub fn restore(&mut self, cp: Checkpoint) {
        self.watermarks = cp.watermarks;
        if let Some(w) = &mut self.window {
            w.import(cp.windows);
        }
        let mut saved = cp.dedup.into_iter();
        for step in &mut self.steps {
            if let Step::Dedup(d) = step {
                d.import(saved.next().unwrap_or_default());
            }
        }
    }

    /// Moves the watermark forward by hand (end of a bounded input, test driver).
    pub fn advance_watermark(&mut self, watermark_ms: i64) -> Outputs {
        let wm = self.watermarks.advance_to(watermark_ms);
        self.fire(wm)
    }

    fn fire(&mut self, watermark: i64) -> Outputs {
        let mut out = Outputs::default();
        for step in &mut self.steps {
            if let Step::Dedup(d) = step {
                d.expire(watermark);
            }
        }
        if let Some(w) = &mut self.window {
            w.on_watermark(watermark, &mut out.results);
        }
        out
    }
}
