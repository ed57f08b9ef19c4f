//! A pipeline: a chain of operators — stateless steps (filter, map, flat_map, key_by), dedup,
//! windowed aggregations and top-N windows, in any order and number — driven by events and
//! watermarks. A window's results are events for the operators after it (`{key,
//! window_start, window_end, <aggregates>…, count}` at time `window_end - 1`), so "count per
//! window, then the max count per window" is one pipeline. Building is separate from running:
//! `Pipeline::builder()...build()` validates it once.
//!
//! Watermarks: every operator after a window with allowed lateness L sees the watermark held
//! back by L, so the window's (possibly late-fired) results are never late downstream.
//!
//! `shuffle()` marks where the key changes before a stateful operator. In one process it is a
//! no-op; a distributed runner splits the pipeline there (`into_stages`) and moves events
//! between the stages through a repartition topic, keyed by the new key. A stage that reads a
//! repartition topic takes its watermark from its upstream tasks (`watermark_from_upstream`).

use crate::aggregate::UserAggregate;
use crate::dedup::Dedup;
use crate::event::{DeadLetter, DeadLetterReason, Event, WindowResult};
use crate::keyed_join::{JoinSpec, KeyedJoin};
use crate::topn::{TopN, TopNSpec};
use crate::watermark::Watermarks;
use crate::windowed::{WindowOperator, WindowSpec};
use crate::StreamError;

type FilterFn = Box<dyn Fn(&Event) -> bool + Send>;
type MapFn = Box<dyn Fn(Event) -> Event + Send>;
type FlatMapFn = Box<dyn Fn(Event) -> Vec<Event> + Send>;
type KeyFn = Box<dyn Fn(&Event) -> Option<String> + Send>;
type TryKeyFn = Box<dyn Fn(&Event) -> Result<Option<String>, String> + Send>;
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
    TryKeyBy(TryKeyFn),
    TryFilter(TryFilterFn),
    TryMap(TryMapFn),
    TryFlatMap(TryFlatMapFn),
    Dedup(Dedup),
}

/// One operator of the chain.
enum Node {
    Step(Step),
    Window(Box<WindowOperator>),
    TopN(Box<TopN>),
    Join(Box<KeyedJoin>),
    /// A partitioning boundary (see the module doc).
    Shuffle,
}

impl Node {
    /// Whether the operator keeps state per key (and so needs its input partitioned by key).
    fn is_keyed_state(&self) -> bool {
        matches!(self, Node::Step(Step::Dedup(_)) | Node::Window(_) | Node::TopN(_) | Node::Join(_))
    }

    /// The allowed lateness the operators after this one must hold the watermark back by.
    fn lateness_ms(&self) -> i64 {
        match self {
            Node::Window(w) => w.allowed_lateness_ms(),
            Node::TopN(t) => t.allowed_lateness_ms(),
            Node::Join(j) => j.allowed_lateness_ms(),
            _ => 0,
        }
    }
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
    pub fn absorb(&mut self, other: Outputs) {
        self.results.extend(other.results);
        self.events.extend(other.events);
        self.dead_letters.extend(other.dead_letters);
        self.duplicates += other.duplicates;
    }
}

/// Builds a pipeline; operators run in the order they are added.
pub struct PipelineBuilder {
    nodes: Vec<NodeSpec>,
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
}

enum NodeSpec {
    Step(Step),
    Window(WindowSpec, Option<std::sync::Arc<dyn UserAggregate>>),
    TopN(TopNSpec),
    Join(JoinSpec),
    Shuffle,
}

impl PipelineBuilder {
    fn step(mut self, s: Step) -> Self {
        self.nodes.push(NodeSpec::Step(s));
        self
    }
    pub fn filter(self, f: impl Fn(&Event) -> bool + Send + 'static) -> Self {
        self.step(Step::Filter(Box::new(f)))
    }
    pub fn map(self, f: impl Fn(Event) -> Event + Send + 'static) -> Self {
        self.step(Step::Map(Box::new(f)))
    }
    pub fn flat_map(self, f: impl Fn(Event) -> Vec<Event> + Send + 'static) -> Self {
        self.step(Step::FlatMap(Box::new(f)))
    }
    /// A filter that can fail on an event (e.g. an expression); failures are dead-lettered.
    pub fn try_filter(self, f: impl Fn(&Event) -> Result<bool, String> + Send + 'static) -> Self {
        self.step(Step::TryFilter(Box::new(f)))
    }
    /// A map that can fail on an event; failures are dead-lettered with the original event.
    pub fn try_map(self, f: impl Fn(Event) -> Result<Event, (Event, String)> + Send + 'static) -> Self {
        self.step(Step::TryMap(Box::new(f)))
    }
    /// A flat_map that can fail on an event (the event is dead-lettered with the reason). It
    /// appends its events to the Vec it is given.
    pub fn try_flat_map(
        self,
        f: impl Fn(Event, &mut Vec<Event>) -> Result<(), (Event, String)> + Send + 'static,
    ) -> Self {
        self.step(Step::TryFlatMap(Box::new(f)))
    }
    pub fn key_by(self, f: impl Fn(&Event) -> Option<String> + Send + 'static) -> Self {
        self.step(Step::KeyBy(Box::new(f)))
    }
    /// A key_by that can fail on an event; failures are dead-lettered.
    pub fn try_key_by(self, f: impl Fn(&Event) -> Result<Option<String>, String> + Send + 'static) -> Self {
        self.step(Step::TryKeyBy(Box::new(f)))
    }
    /// Drops events whose key was seen within `horizon_ms` of event time.
    pub fn dedup(self, horizon_ms: i64, max_keys: usize) -> Self {
        self.step(Step::Dedup(Dedup::new(horizon_ms, max_keys)))
    }
    pub fn window(mut self, spec: WindowSpec) -> Self {
        self.nodes.push(NodeSpec::Window(spec, None));
        self
    }
    /// A window with a user-defined aggregate (`spec.aggregate` is set to `Custom`).
    pub fn window_with(mut self, mut spec: WindowSpec, aggregate: impl UserAggregate + 'static) -> Self {
        spec.aggregate = crate::Aggregate::Custom;
        self.nodes.push(NodeSpec::Window(spec, Some(std::sync::Arc::new(aggregate))));
        self
    }
    /// The N best events per key and window (ties kept).
    pub fn top_n(mut self, spec: TopNSpec) -> Self {
        self.nodes.push(NodeSpec::TopN(spec));
        self
    }
    /// An inner join of two sides of the stream on its key.
    pub fn join(mut self, spec: JoinSpec) -> Self {
        self.nodes.push(NodeSpec::Join(spec));
        self
    }
    /// A partitioning boundary: the key changed and a stateful operator follows.
    pub fn shuffle(mut self) -> Self {
        self.nodes.push(NodeSpec::Shuffle);
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
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut holdback = Vec::with_capacity(self.nodes.len());
        let mut held = 0i64;
        let windows = self.nodes.iter().filter(|n| matches!(n, NodeSpec::Window(..) | NodeSpec::TopN(_))).count();
        let mut seen_windows = 0;
        for n in self.nodes {
            holdback.push(held);
            nodes.push(match n {
                NodeSpec::Step(s) => Node::Step(s),
                NodeSpec::Window(spec, custom) => {
                    seen_windows += 1;
                    if spec.early_updates && seen_windows < windows {
                        return Err(StreamError::InvalidSpec(
                            "early_updates only on the last window: the operators after a window see final results",
                        ));
                    }
                    held = held.saturating_add(spec.allowed_lateness_ms);
                    Node::Window(Box::new(WindowOperator::new(spec, custom)?))
                }
                NodeSpec::TopN(spec) => {
                    seen_windows += 1;
                    held = held.saturating_add(spec.allowed_lateness_ms);
                    Node::TopN(Box::new(TopN::new(spec)?))
                }
                NodeSpec::Join(spec) => {
                    held = held.saturating_add(spec.allowed_lateness_ms);
                    Node::Join(Box::new(KeyedJoin::new(spec)?))
                }
                NodeSpec::Shuffle => Node::Shuffle,
            });
        }
        Ok(Pipeline {
            fired: vec![i64::MIN; nodes.len()],
            nodes,
            holdback,
            watermarks: Watermarks::new(self.out_of_orderness_ms, self.idle_timeout_ms),
            from_upstream: false,
            position: (0, -1),
            scratch: (Vec::new(), Vec::new()),
        })
    }
}

pub struct Pipeline {
    nodes: Vec<Node>,
    /// Per node: how far its watermark trails the pipeline's (the allowed lateness of the
    /// windows before it).
    holdback: Vec<i64>,
    /// Per node: the watermark it last fired at, which decides lateness of what reaches it
    /// (what an earlier window emits while firing must not be judged by the new watermark).
    fired: Vec<i64>,
    watermarks: Watermarks,
    /// The watermark comes from upstream tasks' watermark records, not from event times.
    from_upstream: bool,
    /// (partition, offset) of the input being processed: the position of what it emits.
    position: (i32, i64),
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
    /// The first window's state (kept apart for the format of single-window checkpoints).
    windows: Vec<(String, i64, crate::windowed::Open)>,
    /// Per dedup step, in order.
    dedup: Vec<Vec<(String, i64)>>,
    /// Windows after the first, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    more_windows: Vec<Vec<(String, i64, crate::windowed::Open)>>,
    /// Per top-N window, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    top_n: Vec<Vec<(String, i64, crate::topn::Ranked)>>,
    /// Per join, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    joins: Vec<crate::keyed_join::JoinState>,
    /// For a stage reading a repartition topic: per upstream task, the last (offset, seq) of
    /// its input applied; records at or below it are replays and skipped.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub applied: std::collections::BTreeMap<i32, (i64, u32)>,
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
        PipelineBuilder { nodes: Vec::new(), out_of_orderness_ms: 0, idle_timeout_ms: 60_000 }
    }

    pub fn watermark(&self) -> i64 {
        self.watermarks.current()
    }

    /// The watermark of what the pipeline emits: its own, held back by its windows' allowed
    /// lateness (what a downstream stage may take as "no earlier output will come").
    pub fn output_watermark(&self) -> i64 {
        let held: i64 = self.nodes.iter().map(Node::lateness_ms).sum();
        self.watermarks.current().saturating_sub(held)
    }

    pub fn open_windows(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Window(w) => w.open_windows(),
                Node::TopN(t) => t.open_windows(),
                Node::Join(j) => j.open_windows(),
                _ => 0,
            })
            .sum()
    }

    /// The last window's output names (for sinks' columns), when the pipeline ends in one.
    pub fn result_names(&self) -> Option<Vec<String>> {
        match self.nodes.last() {
            Some(Node::Window(w)) => Some(w.spec().names().map(str::to_owned).collect()),
            _ => None,
        }
    }

    /// Whether any operator keeps state (windows, top-N, dedup).
    pub fn has_state(&self) -> bool {
        self.nodes.iter().any(Node::is_keyed_state)
    }

    /// Whether the pipeline's output is window results (it ends in an aggregating window).
    pub fn emits_results(&self) -> bool {
        matches!(self.nodes.last(), Some(Node::Window(_)))
    }

    /// Number of stages `into_stages` makes (shuffles + 1).
    pub fn stages(&self) -> usize {
        1 + self.nodes.iter().filter(|n| matches!(n, Node::Shuffle)).count()
    }

    /// Stage `i` of the pipeline split at its shuffles; the others are dropped. The
    /// watermark settings are kept; stages after the first take it from upstream.
    pub fn into_stage(mut self, i: usize) -> Option<Pipeline> {
        let mut stage = 0;
        let mut keep = Vec::new();
        let mut holdback = Vec::new();
        let mut fired = Vec::new();
        for ((n, h), f) in self.nodes.drain(..).zip(self.holdback.drain(..)).zip(self.fired.drain(..)) {
            if matches!(n, Node::Shuffle) {
                stage += 1;
                continue;
            }
            if stage == i {
                keep.push(n);
                holdback.push(h);
                fired.push(f);
            }
        }
        if i > stage {
            return None;
        }
        let base = holdback.first().copied().unwrap_or(0);
        for h in &mut holdback {
            *h -= base;
        }
        self.nodes = keep;
        self.holdback = holdback;
        self.fired = fired;
        Some(self)
    }

    /// This pipeline's watermark is the minimum of the watermarks of `upstream_tasks`, fed
    /// by `observe_upstream` (a stage after a shuffle).
    pub fn watermark_from_upstream(&mut self, upstream_tasks: impl IntoIterator<Item = i32>) {
        self.from_upstream = true;
        self.watermarks = Watermarks::new(0, i64::MAX);
        for t in upstream_tasks {
            self.watermarks.expect_partition(t);
        }
    }

    /// Partitions 0..n of the input hold the watermark back from the start (one task reading
    /// several inputs merged, e.g. several files: without it the first to send would set the
    /// watermark alone).
    pub fn expect_partitions(&mut self, n: i32) {
        for p in 0..n {
            self.watermarks.expect_partition(p);
        }
    }

    /// An input partition has ended (a file read to its end): it stops holding the watermark
    /// back. Fires what that closes.
    pub fn partition_done(&mut self, partition: i32, now_ms: i64) -> Outputs {
        let before = self.watermarks.current();
        let wm = self.watermarks.set_idle(partition, now_ms);
        let mut out = Outputs::default();
        if wm > before {
            self.fire(wm, &mut out);
        }
        out
    }

    /// An upstream task's watermark (a stage after a shuffle); fires what it closes.
    pub fn observe_upstream(&mut self, task: i32, watermark_ms: i64, position: (i32, i64)) -> Outputs {
        self.position = position;
        let before = self.watermarks.current();
        let wm = self.watermarks.observe(task, watermark_ms, 0);
        let mut out = Outputs::default();
        if wm > before {
            self.fire(wm, &mut out);
        }
        out
    }

    /// An upstream task is idle (its source partition has nothing new): it stops holding the
    /// watermark back until it sends again.
    pub fn upstream_idle(&mut self, task: i32, position: (i32, i64)) -> Outputs {
        self.position = position;
        let before = self.watermarks.current();
        let wm = self.watermarks.set_idle(task, 0);
        let mut out = Outputs::default();
        if wm > before {
            self.fire(wm, &mut out);
        }
        out
    }

    /// The idle timeout (processing time) of the source partitions.
    pub fn idle_timeout_ms(&self) -> i64 {
        self.watermarks.idle_timeout_ms()
    }

    /// Processes one event at processing time `now_ms`.
    pub fn process(&mut self, event: Event, now_ms: i64) -> Result<Outputs, StreamError> {
        let mut out = Outputs::default();
        self.process_into(event, now_ms, &mut out)?;
        Ok(out)
    }

    /// `process`, adding to `out` (a caller that reuses one `Outputs` allocates nothing for
    /// an event that passes through).
    pub fn process_into(&mut self, event: Event, now_ms: i64, out: &mut Outputs) -> Result<(), StreamError> {
        self.position = (event.partition, event.offset);
        // The watermark before this event decides lateness; the event then advances it.
        let watermark = self.watermarks.current();
        let new_watermark = if self.from_upstream {
            watermark
        } else {
            self.watermarks.observe(event.partition, event.timestamp_ms, now_ms)
        };
        let (mut batch, next) = std::mem::take(&mut self.scratch);
        batch.clear();
        batch.push(event);
        self.scratch.1 = next;
        let result = self.push_from(0, &mut batch, out);
        self.scratch.0 = batch;
        result?;
        if new_watermark > watermark {
            self.fire(new_watermark, out);
        }
        Ok(())
    }

    /// Runs `batch` through the nodes from `start`: stateless steps in place, stateful
    /// operators absorb it; what reaches the end is output.
    fn push_from(&mut self, start: usize, batch: &mut Vec<Event>, out: &mut Outputs) -> Result<(), StreamError> {
        let mut next = std::mem::take(&mut self.scratch.1);
        let mut result = Ok(());
        for i in start..self.nodes.len() {
            let watermark = self.fired[i];
            next.clear();
            match &mut self.nodes[i] {
                Node::Step(step) => {
                    if let Err(e) = apply(step, batch, &mut next, out) {
                        result = Err(e);
                        break;
                    }
                    std::mem::swap(batch, &mut next);
                }
                Node::Shuffle => {}
                Node::Window(w) => {
                    result = batch
                        .drain(..)
                        .try_for_each(|ev| w.process(ev, watermark, &mut out.results, &mut out.dead_letters));
                    break;
                }
                Node::TopN(t) => {
                    result = batch.drain(..).try_for_each(|ev| t.process(ev, watermark, &mut out.dead_letters));
                    break;
                }
                Node::Join(j) => {
                    // Pairs made at once go on to the next operators.
                    let r =
                        batch.drain(..).try_for_each(|ev| j.process(ev, watermark, &mut next, &mut out.dead_letters));
                    if let Err(e) = r {
                        result = Err(e);
                        break;
                    }
                    std::mem::swap(batch, &mut next);
                }
            }
        }
        out.events.append(batch);
        next.clear();
        self.scratch.1 = next;
        result
    }

    /// Applies processing-time idleness (a silent partition stops holding the watermark).
    pub fn tick(&mut self, now_ms: i64) -> Outputs {
        let before = self.watermarks.current();
        let wm = self.watermarks.tick(now_ms);
        let mut out = Outputs::default();
        if wm > before {
            self.fire(wm, &mut out);
        }
        out
    }

    /// The pipeline's state with the source offsets it has consumed up to.
    pub fn checkpoint(&self, source_offsets: std::collections::BTreeMap<i32, i64>) -> Checkpoint {
        let mut windows =
            self.nodes.iter().filter_map(|n| if let Node::Window(w) = n { Some(w.export()) } else { None });
        Checkpoint {
            source_offsets,
            watermarks: self.watermarks.clone(),
            windows: windows.next().unwrap_or_default(),
            more_windows: windows.collect(),
            top_n: self
                .nodes
                .iter()
                .filter_map(|n| if let Node::TopN(t) = n { Some(t.export()) } else { None })
                .collect(),
            joins: self
                .nodes
                .iter()
                .filter_map(|n| if let Node::Join(j) = n { Some(j.export()) } else { None })
                .collect(),
            dedup: self
                .nodes
                .iter()
                .filter_map(|s| if let Node::Step(Step::Dedup(d)) = s { Some(d.export()) } else { None })
                .collect(),
            applied: Default::default(),
        }
    }

    /// Restores state saved by `checkpoint` into a pipeline built from the same spec.
    pub fn restore(&mut self, cp: Checkpoint) {
        self.watermarks = cp.watermarks;
        let current = self.watermarks.current();
        for (f, h) in self.fired.iter_mut().zip(&self.holdback) {
            *f = current.saturating_sub(*h);
        }
        let mut windows = std::iter::once(cp.windows).chain(cp.more_windows);
        let mut top_n = cp.top_n.into_iter();
        let mut joins = cp.joins.into_iter();
        let mut saved = cp.dedup.into_iter();
        for node in &mut self.nodes {
            match node {
                Node::Window(w) => w.import(windows.next().unwrap_or_default()),
                Node::TopN(t) => t.import(top_n.next().unwrap_or_default()),
                Node::Join(j) => j.import(joins.next().unwrap_or_default()),
                Node::Step(Step::Dedup(d)) => d.import(saved.next().unwrap_or_default()),
                _ => {}
            }
        }
    }

    /// Moves the watermark forward by hand (end of a bounded input, test driver).
    pub fn advance_watermark(&mut self, watermark_ms: i64) -> Outputs {
        let wm = self.watermarks.advance_to(watermark_ms);
        let mut out = Outputs::default();
        self.fire(wm, &mut out);
        out
    }

    /// Fires every operator at the watermark, in order: what a window emits goes through the
    /// operators after it (which see their held-back watermark) before they fire in turn.
    fn fire(&mut self, watermark: i64, out: &mut Outputs) {
        let (partition, offset) = self.position;
        let last = self.nodes.len().saturating_sub(1);
        for i in 0..self.nodes.len() {
            let wm = watermark.saturating_sub(self.holdback[i]);
            self.fired[i] = self.fired[i].max(wm);
            let mut emitted = Vec::new();
            match &mut self.nodes[i] {
                Node::Step(Step::Dedup(d)) => d.expire(wm),
                Node::Window(w) => {
                    if i == last {
                        w.on_watermark(wm, &mut out.results);
                        continue;
                    }
                    let mut results = Vec::new();
                    w.on_watermark(wm, &mut results);
                    let spec = w.spec();
                    emitted.extend(results.iter().map(|r| r.to_event(spec.names(), partition, offset)));
                }
                Node::TopN(t) => t.on_watermark(wm, &mut emitted),
                Node::Join(j) => j.on_watermark(wm, &mut emitted),
                _ => continue,
            }
            if !emitted.is_empty() {
                // Errors here are state bounds of later operators: the events are dead-lettered
                // rather than lost.
                if let Err(e) = self.push_from(i + 1, &mut emitted, out) {
                    for ev in emitted {
                        let detail = e.to_string();
                        out.dead_letters
                            .push(DeadLetter { event: ev, reason: DeadLetterReason::Expression { detail } });
                    }
                }
            }
        }
    }
}

/// One stateless step (or dedup) over a batch of events, into `next`.
fn apply(step: &mut Step, batch: &mut Vec<Event>, next: &mut Vec<Event>, out: &mut Outputs) -> Result<(), StreamError> {
    for ev in batch.drain(..) {
        match step {
            Step::Filter(f) => {
                if f(&ev) {
                    next.push(ev);
                }
            }
            Step::Map(f) => next.push(f(ev).without_raw()),
            Step::FlatMap(f) => next.extend(f(ev).into_iter().map(Event::without_raw)),
            Step::KeyBy(f) => {
                let key = f(&ev);
                next.push(Event { key, ..ev });
            }
            Step::TryKeyBy(f) => match f(&ev) {
                Ok(key) => next.push(Event { key, ..ev }),
                Err(detail) => {
                    out.dead_letters.push(DeadLetter { event: ev, reason: DeadLetterReason::Expression { detail } })
                }
            },
            Step::TryFilter(f) => match f(&ev) {
                Ok(true) => next.push(ev),
                Ok(false) => {}
                Err(detail) => {
                    out.dead_letters.push(DeadLetter { event: ev, reason: DeadLetterReason::Expression { detail } })
                }
            },
            Step::TryFlatMap(f) => {
                let from = next.len();
                if let Err((e, detail)) = f(ev, next) {
                    out.dead_letters.push(DeadLetter { event: e, reason: DeadLetterReason::Expression { detail } });
                }
                for e in &mut next[from..] {
                    e.raw = None;
                }
            }
            Step::TryMap(f) => match f(ev) {
                Ok(e) => next.push(e.without_raw()),
                Err((e, detail)) => {
                    out.dead_letters.push(DeadLetter { event: e, reason: DeadLetterReason::Expression { detail } })
                }
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
    Ok(())
}
