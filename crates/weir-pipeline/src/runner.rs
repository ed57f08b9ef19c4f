//! The one runner: every source (a Kafka topic, a JSON Lines file, the Nexmark generator)
//! feeds tasks through the `Source` trait, and every sink gets the same outputs (window
//! results with early updates and retractions, events, dead letters).
//!
//! Tasks: one per (stage, partition). In one process (bounded sources) the whole pipeline is
//! one task and its shuffles are no-ops. Over Kafka the pipeline is split at its shuffles:
//! stage 0 reads the source topic, stage s ≥ 1 reads `<pipeline>-<s>-repartition`, and what a
//! stage emits goes to the next stage's topic through the source's `Exchange`, keyed by the
//! event's key, with the emitting task and input position in headers so the next stage skips
//! replays (docs/repartition-format.md).
//!
//! The loop: poll → process → every checkpoint interval: flush the exchange (repartition
//! records durable), flush dead letters, write outputs and every task's checkpoint through the
//! sink in one step, then commit offsets. Committed offsets never run ahead of a checkpoint.

use crate::kafka::{write_with_policy, DeadLetterOut, RunError, SinkErrorPolicy};
use crate::sink::{Batch, Sink};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_stream::{DeadLetter, Event, Outputs, Pipeline};

/// A task: one stage of the pipeline over one partition of that stage's input. At stage 0
/// over several source topics, `partition` is `source << 16 | partition of that source`, so a
/// task keeps its id when another source gains partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    pub stage: usize,
    pub partition: i32,
}

/// Where a record of a repartition topic came from: the upstream task and the position of
/// the input that made it (offset, and its index among that input's outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    pub task: i32,
    pub offset: i64,
    pub seq: u32,
}

/// What a source hands the runner.
#[derive(Debug)]
pub enum Input {
    Event(Event, Option<Upstream>),
    /// A record that could not become an event.
    Dead(Box<DeadLetter>),
    /// An upstream task's watermark (repartition topics).
    Watermark {
        upstream: i32,
        watermark_ms: i64,
    },
    /// An upstream task has had no input for its idle timeout: do not wait for it.
    Idle {
        upstream: i32,
    },
}

#[derive(Debug)]
pub enum Polled {
    /// Nothing within the timeout.
    Nothing,
    /// A bounded source is exhausted.
    End,
    /// One input of a merged bounded source ended (it stops holding the watermark back).
    InputDone {
        task: TaskId,
        input: i32,
    },
    Input {
        task: TaskId,
        offset: i64,
        input: Input,
    },
}

/// Sends a stage's output to the next stage (a repartition topic).
pub trait Exchange {
    fn send(&mut self, stage: usize, ev: &Event, from: Upstream) -> Result<(), RunError>;
    /// Tells every partition of `stage`'s input that `upstream` will send nothing earlier.
    fn send_watermark(&mut self, stage: usize, upstream: i32, watermark_ms: i64) -> Result<(), RunError>;
    /// Tells every partition of `stage`'s input not to wait for `upstream` until it sends again.
    fn send_idle(&mut self, stage: usize, upstream: i32) -> Result<(), RunError>;
    /// Returns once everything sent is durable.
    fn flush(&mut self) -> Result<(), RunError>;
}

/// A source of inputs for tasks.
pub trait Source {
    fn poll(&mut self, timeout: Duration) -> Result<Polled, RunError>;
    /// The tasks now assigned, when that changed since the last call.
    fn assignment(&mut self) -> Result<Option<Vec<TaskId>>, RunError>;
    /// The tasks of a stage (the upstream tasks the next stage waits for): one per partition
    /// of its input; over several source topics, `source << 16 | partition` (see `TaskId`).
    fn tasks(&self, stage: usize) -> Vec<i32>;
    /// The topic (or file) and partition a task reads: checkpoint ids and dead letters name it.
    fn input_of(&self, task: TaskId) -> (&str, i32);
    /// Inputs one task reads merged (several files in one process): each is a partition of
    /// the task's watermark. 1 for everything else.
    fn merged_inputs(&self) -> i32 {
        1
    }
    /// The topic or file a dead letter came from (its event's partition, for merged inputs).
    fn dead_letter_origin(&self, task: TaskId, _partition: i32) -> &str {
        self.input_of(task).0
    }
    /// Bounded: the end of input closes every window, and nothing is checkpointed (a run
    /// reads it whole).
    fn bounded(&self) -> bool;
    /// Offsets covered by a durable checkpoint.
    fn commit(&mut self, offsets: &[(TaskId, i64)]) -> Result<(), RunError>;
    /// The group's committed offset for a task's partition.
    fn committed(&mut self, task: TaskId) -> Result<Option<i64>, RunError>;
    /// Every task has read its partition to the end (for `stop_at_end`).
    fn at_end(&mut self, positions: &BTreeMap<TaskId, i64>) -> Result<bool, RunError>;
    /// The exchange to the next stages (distributed sources only).
    fn exchange(&mut self) -> Option<&mut dyn Exchange>;
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    /// Source records read.
    pub events: u64,
    /// Outputs written to the sink (window results and events).
    pub results: u64,
    pub dead_letters: u64,
    pub duplicates: u64,
    /// Records read back from repartition topics (replays included).
    pub repartitioned: u64,
    /// Milliseconds from the first event read to the end (excludes joining the group).
    pub active_ms: u64,
}

/// How a run behaves.
pub struct RunConfig {
    /// Prefix of checkpoint ids (the pipeline's name).
    pub name: String,
    pub checkpoint_interval: Duration,
    pub policy: SinkErrorPolicy,
    /// Stop once every assigned partition has been read to its end (bounded runs, benches).
    pub stop_at_end: bool,
    /// Set from outside (a signal) to stop after a final checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Flush early when this many outputs are waiting.
    pub max_pending: usize,
}

struct Task {
    pipeline: Pipeline,
    /// Inputs below this offset are already in the task's state.
    next_offset: i64,
    /// Per upstream task, the last (offset, seq) applied.
    applied: BTreeMap<i32, (i64, u32)>,
    /// The last watermark sent downstream, and when.
    sent_watermark: i64,
    sent_at: Instant,
    /// When the task last had input, and whether it told downstream it is idle since.
    last_input: Instant,
    idle_sent: bool,
}

/// Builds the pipeline of one stage.
pub type MakePipeline<'a> = dyn Fn() -> Result<Pipeline, String> + 'a;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs `make`'s pipeline over the source into the sink until the source ends, `stop` is
/// set, or (with `stop_at_end`) every partition is read to its end.
/// Checkpoints are not taken more often than this when output fills up (`max_pending`).
const MIN_CHECKPOINT_GAP: Duration = Duration::from_millis(1000);

pub fn run(
    make: &MakePipeline<'_>,
    stages: usize,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    dead: &mut DeadLetterOut,
    cfg: &RunConfig,
) -> Result<RunStats, RunError> {
    let mut r = Runner {
        make,
        stages: if source.exchange().is_some() { stages } else { 1 },
        tasks: BTreeMap::new(),
        pending: Outputs::default(),
        scratch: Outputs::default(),
        stats: RunStats::default(),
        dirty: false,
        clock: Instant::now(),
        wall_ms: now_ms(),
    };
    let mut polls = 0u32;
    let mut last_checkpoint = Instant::now();
    let mut last_end_check = Instant::now();
    let mut last_watermarks = Instant::now();
    let mut first_event: Option<Instant> = None;
    let mut ended = false;
    while !cfg.stop.load(Ordering::Acquire) {
        let polled = source.poll(Duration::from_millis(100))?;
        // The clock is read once per 64 inputs, and after every wait: processing time to
        // within a few microseconds, without two clock reads per record.
        polls = polls.wrapping_add(1);
        if polls & 63 == 0 || !matches!(polled, Polled::Input { .. }) {
            r.clock = Instant::now();
            r.wall_ms = now_ms();
        }
        if let Some(assigned) = source.assignment()? {
            r.sync_tasks(&assigned, source, sink, cfg)?;
        }
        match polled {
            Polled::Nothing => {}
            Polled::End => {
                ended = true;
                break;
            }
            Polled::Input { task, offset, input } => {
                first_event.get_or_insert_with(Instant::now);
                r.input(task, offset, input, source, dead)?;
            }
            Polled::InputDone { task, input } => {
                if let Some(t) = r.tasks.get_mut(&task) {
                    let out = t.pipeline.partition_done(input, r.wall_ms);
                    let offset = t.next_offset;
                    r.outputs(task, offset, out, source, dead)?;
                }
            }
        }
        // Not per record: a pass over every task, at most every 50 ms (each task still sends
        // at most every 100 ms).
        if r.clock.duration_since(last_watermarks) >= Duration::from_millis(50) {
            r.send_watermarks(source, false)?;
            last_watermarks = r.clock;
        }
        let full = r.pending.results.len() + r.pending.events.len() >= cfg.max_pending;
        if source.bounded() {
            if full {
                r.write(&[], sink, dead, cfg)?;
            }
        } else if r.dirty && (full || r.clock.duration_since(last_checkpoint) >= cfg.checkpoint_interval) {
            if r.clock.duration_since(last_checkpoint) >= MIN_CHECKPOINT_GAP || !full {
                r.checkpoint(source, sink, dead, cfg)?;
                r.clock = Instant::now();
                last_checkpoint = r.clock;
            } else {
                // Output is bounded, checkpoints (a round trip each) are not taken more often
                // than this: the output goes ahead of the next checkpoint, as a bounded input's
                // does (replayed after a crash: at least once).
                r.write(&[], sink, dead, cfg)?;
            }
        }
        if cfg.stop_at_end
            && !r.tasks.is_empty()
            && r.clock.duration_since(last_end_check) >= Duration::from_millis(200)
        {
            last_end_check = r.clock;
            r.send_watermarks(source, true)?;
            if let Some(x) = source.exchange() {
                x.flush()?;
            }
            let positions = r.tasks.iter().map(|(id, t)| (*id, t.next_offset)).collect();
            // Read to the end: every task is caught up, so say so downstream (the stages after a
            // shuffle would otherwise wait for the idle timeout), and stop once that changes
            // nothing more.
            if source.at_end(&positions)? && !r.declare_idle(source)? {
                break;
            }
        }
    }
    if ended {
        // A bounded input is complete: close every window.
        let ids: Vec<TaskId> = r.tasks.keys().copied().collect();
        for id in ids {
            if let Some(t) = r.tasks.get_mut(&id) {
                let out = t.pipeline.advance_watermark(i64::MAX / 2);
                let offset = t.next_offset;
                r.outputs(id, offset, out, source, dead)?;
            }
        }
        r.write(&[], sink, dead, cfg)?;
    } else if r.dirty || !r.pending.results.is_empty() || !r.pending.events.is_empty() {
        r.checkpoint(source, sink, dead, cfg)?;
    }
    dead.flush()?;
    r.stats.active_ms = first_event.map_or(0, |t| t.elapsed().as_millis() as u64);
    Ok(r.stats)
}

struct Runner<'a> {
    make: &'a MakePipeline<'a>,
    stages: usize,
    tasks: BTreeMap<TaskId, Task>,
    pending: Outputs,
    /// Reused for each input's outputs (its buffers keep their capacity).
    scratch: Outputs,
    stats: RunStats,
    dirty: bool,
    /// The time of the loop's last clock read (see `run`), monotonic and wall (ms).
    clock: Instant,
    wall_ms: i64,
}

impl Runner<'_> {
    fn checkpoint_id(name: &str, source: &dyn Source, t: TaskId) -> String {
        let (topic, partition) = source.input_of(t);
        format!("{name}/{topic}/{partition}")
    }

    /// The pipeline of one stage (the whole pipeline when there is one stage).
    fn stage_pipeline(&self, stage: usize, source: &dyn Source) -> Result<Pipeline, RunError> {
        let p = (self.make)().map_err(RunError::Other)?;
        let mut p = if self.stages > 1 {
            p.into_stage(stage).ok_or_else(|| RunError::Other(format!("no stage {stage}")))?
        } else {
            p
        };
        if stage > 0 {
            p.watermark_from_upstream(source.tasks(stage - 1));
        } else if source.merged_inputs() > 1 {
            p.expect_partitions(source.merged_inputs());
        }
        Ok(p)
    }

    /// Creates tasks for newly assigned partitions (restoring their checkpoints) and drops tasks
    /// of revoked ones (their progress since the last checkpoint is replayed by the new owner).
    fn sync_tasks(
        &mut self,
        assigned: &[TaskId],
        source: &mut dyn Source,
        sink: &mut dyn Sink,
        cfg: &RunConfig,
    ) -> Result<(), RunError> {
        self.tasks.retain(|id, _| assigned.contains(id));
        crate::metrics::PARTITIONS.set(assigned.len() as i64);
        if assigned.iter().any(|id| !self.tasks.contains_key(id)) {
            sink.refresh_checkpoints()?;
        }
        for &id in assigned {
            if self.tasks.contains_key(&id) || id.stage >= self.stages {
                continue;
            }
            let mut pipeline = self.stage_pipeline(id.stage, source)?;
            let cp_id = Self::checkpoint_id(&cfg.name, source, id);
            let mut applied = BTreeMap::new();
            let next_offset = match sink.load_checkpoint(&cp_id)? {
                Some(bytes) => {
                    let cp = weir_stream::Checkpoint::from_json(&bytes)
                        .map_err(|e| RunError::Checkpoint { id: cp_id.clone(), detail: e.to_string() })?;
                    let next = cp.source_offsets.get(&id.partition).copied().unwrap_or(0);
                    applied = cp.applied.clone();
                    pipeline.restore(cp);
                    tracing::info!(
                        stage = id.stage,
                        partition = id.partition,
                        next_offset = next,
                        "restored checkpoint"
                    );
                    next
                }
                None if source.bounded() => 0,
                None => {
                    // State lost is never silent: a task with state (or one that must skip
                    // replays) cannot start empty at an offset the group committed.
                    if pipeline.has_state() || id.stage > 0 {
                        if let Some(committed) = source.committed(id)?.filter(|&o| o > 0) {
                            return Err(RunError::Other(format!(
                                "{cp_id}: the group committed offset {committed} but there is no checkpoint for it \
                                 (checkpoints of this sink are local files: is it running on another machine, or were \
                                 they deleted?). Starting there would lose the window state before it; rerun with \
                                 --from earliest to rebuild it"
                            )));
                        }
                    }
                    0
                }
            };
            let now = Instant::now();
            let task = Task {
                pipeline,
                next_offset,
                applied,
                sent_watermark: i64::MIN,
                sent_at: now,
                last_input: now,
                idle_sent: false,
            };
            self.tasks.insert(id, task);
        }
        Ok(())
    }

    fn input(
        &mut self,
        id: TaskId,
        offset: i64,
        input: Input,
        source: &mut dyn Source,
        dead: &mut DeadLetterOut,
    ) -> Result<(), RunError> {
        let Some(t) = self.tasks.get_mut(&id) else { return Ok(()) };
        if offset < t.next_offset {
            return Ok(()); // already in the restored state
        }
        t.next_offset = offset + 1;
        t.last_input = self.clock;
        t.idle_sent = false;
        self.dirty = true;
        if id.stage == 0 {
            self.stats.events += 1;
            crate::metrics::EVENTS.inc();
        } else {
            self.stats.repartitioned += 1;
        }
        let out = match input {
            Input::Event(ev, from) => {
                if let Some(up) = from {
                    let at = (up.offset, up.seq);
                    if t.applied.get(&up.task).is_some_and(|&last| at <= last) {
                        return Ok(()); // a replay of something already applied
                    }
                    t.applied.insert(up.task, at);
                }
                let mut out = std::mem::take(&mut self.scratch);
                t.pipeline.process_into(ev, self.wall_ms, &mut out)?;
                out
            }
            Input::Dead(d) => {
                self.stats.dead_letters += 1;
                return dead.write(source.dead_letter_origin(id, d.event.partition), &d).map_err(Into::into);
            }
            Input::Watermark { upstream, watermark_ms } => {
                t.pipeline.observe_upstream(upstream, watermark_ms, (id.partition, offset))
            }
            Input::Idle { upstream } => t.pipeline.upstream_idle(upstream, (id.partition, offset)),
        };
        self.outputs(id, offset, out, source, dead)
    }

    /// Dead letters out; events of a non-last stage to the next stage; the rest to the sink.
    fn outputs(
        &mut self,
        id: TaskId,
        offset: i64,
        mut out: Outputs,
        source: &mut dyn Source,
        dead: &mut DeadLetterOut,
    ) -> Result<(), RunError> {
        for d in &out.dead_letters {
            dead.write(source.dead_letter_origin(id, d.event.partition), d)?;
        }
        self.stats.dead_letters += out.dead_letters.len() as u64;
        self.stats.duplicates += out.duplicates;
        crate::metrics::DUPLICATES.add(out.duplicates);
        if id.stage + 1 < self.stages {
            let Some(x) = source.exchange() else { return Err(RunError::Other("no exchange".into())) };
            for (seq, ev) in out.events.iter().enumerate() {
                x.send(id.stage + 1, ev, Upstream { task: id.partition, offset, seq: seq as u32 })?;
            }
            if !out.results.is_empty() {
                return Err(RunError::Other("a stage before a shuffle emitted window results".into()));
            }
            out.events.clear();
        } else {
            self.pending.results.append(&mut out.results);
            self.pending.events.append(&mut out.events);
        }
        out.dead_letters.clear();
        out.duplicates = 0;
        self.scratch = out;
        Ok(())
    }

    /// Sends each non-last-stage task's output watermark downstream when it advanced (at most
    /// every 100 ms per task unless `now`).
    fn send_watermarks(&mut self, source: &mut dyn Source, now: bool) -> Result<(), RunError> {
        if self.stages < 2 {
            return Ok(());
        }
        let Some(x) = source.exchange() else { return Ok(()) };
        for (id, t) in &mut self.tasks {
            if id.stage + 1 >= self.stages {
                continue;
            }
            let wm = t.pipeline.output_watermark();
            if wm > t.sent_watermark && (now || t.sent_at.elapsed() >= Duration::from_millis(100)) {
                x.send_watermark(id.stage + 1, id.partition, wm)?;
                t.sent_watermark = wm;
                t.sent_at = Instant::now();
            }
            let idle_ms = u64::try_from(t.pipeline.idle_timeout_ms()).unwrap_or(u64::MAX);
            if !t.idle_sent && t.last_input.elapsed() >= Duration::from_millis(idle_ms) {
                x.send_idle(id.stage + 1, id.partition)?;
                t.idle_sent = true;
            }
        }
        Ok(())
    }

    /// Tells downstream that every task of a non-last stage that has not said so is idle;
    /// returns whether any had to.
    fn declare_idle(&mut self, source: &mut dyn Source) -> Result<bool, RunError> {
        let Some(x) = source.exchange() else { return Ok(false) };
        let mut any = false;
        for (id, t) in &mut self.tasks {
            if id.stage + 1 < self.stages && !t.idle_sent {
                x.send_idle(id.stage + 1, id.partition)?;
                t.idle_sent = true;
                any = true;
            }
        }
        if any {
            x.flush()?;
        }
        Ok(any)
    }

    /// Writes pending outputs (and checkpoints) through the sink.
    fn write(
        &mut self,
        checkpoints: &[(String, Vec<u8>)],
        sink: &mut dyn Sink,
        dead: &mut DeadLetterOut,
        cfg: &RunConfig,
    ) -> Result<(), RunError> {
        dead.flush()?;
        let batch = Batch { results: &self.pending.results, events: &self.pending.events, checkpoints };
        write_with_policy(sink, &batch, dead, cfg.policy, &cfg.stop)?;
        let n = (self.pending.results.len() + self.pending.events.len()) as u64;
        self.stats.results += n;
        crate::metrics::OUTPUTS.add(n);
        self.pending.results.clear();
        self.pending.events.clear();
        Ok(())
    }

    /// Exchange durable → dead letters durable → outputs + checkpoints durable (one sink
    /// write) → offsets committed.
    fn checkpoint(
        &mut self,
        source: &mut dyn Source,
        sink: &mut dyn Sink,
        dead: &mut DeadLetterOut,
        cfg: &RunConfig,
    ) -> Result<(), RunError> {
        let started = Instant::now();
        self.send_watermarks(source, true)?;
        if let Some(x) = source.exchange() {
            x.flush()?;
        }
        let mut checkpoints = Vec::with_capacity(self.tasks.len());
        for (&id, t) in &self.tasks {
            let mut cp = t.pipeline.checkpoint(BTreeMap::from([(id.partition, t.next_offset)]));
            cp.applied = t.applied.clone();
            let cp_id = Self::checkpoint_id(&cfg.name, source, id);
            let bytes = cp.to_json().map_err(|e| RunError::Checkpoint { id: cp_id.clone(), detail: e.to_string() })?;
            checkpoints.push((cp_id, bytes));
        }
        let flushed = started.elapsed();
        self.write(&checkpoints, sink, dead, cfg)?;
        let written = started.elapsed();
        crate::metrics::OPEN_WINDOWS.set(self.tasks.values().map(|t| t.pipeline.open_windows() as i64).sum());
        let offsets: Vec<(TaskId, i64)> =
            self.tasks.iter().filter(|(_, t)| t.next_offset > 0).map(|(id, t)| (*id, t.next_offset)).collect();
        source.commit(&offsets)?;
        tracing::debug!(?flushed, ?written, committed = ?started.elapsed(), "checkpoint");
        self.dirty = false;
        crate::metrics::CHECKPOINTS.inc();
        crate::metrics::CHECKPOINT_SECONDS.observe(started.elapsed());
        Ok(())
    }
}
