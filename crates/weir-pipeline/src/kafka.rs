//! The Kafka side of pipelines, through a real Kafka client (librdkafka via rdkafka), so a
//! pipeline runs against Weir or any Kafka/Redpanda cluster unchanged:
//! - a source that reads a topic as a member of a consumer group (more instances in the group
//!   split the partitions);
//! - a sink that writes window results or events to a topic;
//! - a dead-letter topic.
//!
//! Processing follows Kafka Streams' task model: one pipeline instance (task) per source
//! partition, with its own window state and watermark. A task's output depends only on its
//! partition's records, so replays after a crash or a rebalance produce the same results,
//! and the idempotent sinks end up with the same rows as an uninterrupted run. Aggregating by
//! a key therefore needs the topic partitioned by that key (as Kafka Streams requires).
//!
//! The loop: poll → process → every checkpoint interval: flush the dead-letter producer, write
//! results and every task's checkpoint (state + next offset) through the sink in one step,
//! then commit the offsets to the group. Committed offsets never run ahead of a checkpoint; on
//! assignment a task restores its checkpoint and skips records below its offset.

use crate::sink::{result_json, Batch, CheckpointDir, Sink, SinkError};
use crate::yaml::RunStats;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_stream::event::{DeadLetter, DeadLetterReason, Event, WindowResult};
use weir_stream::pipeline::{Outputs, Pipeline};
use weir_stream::StreamError;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("checkpoint {id}: {detail}")]
    Checkpoint { id: String, detail: String },
    #[error("{0}")]
    Other(String),
}

/// What to do when the sink fails to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkErrorPolicy {
    /// Retry with exponential backoff (100 ms doubling to 10 s) until it works: the pipeline
    /// waits, nothing is skipped.
    #[default]
    Retry,
    /// Write what can be written one item at a time; send each item the sink refuses to the
    /// dead-letter output with the error, and go on.
    DeadLetter,
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The group's committed offsets and the stored checkpoints (a normal restart).
    Committed,
    /// Rewind: forget checkpoints, reset the group to the beginning of the topic.
    Earliest,
    /// Rewind: forget checkpoints, reset the group to the first record at or after now − ms.
    Ago(i64),
}

impl std::str::FromStr for StartFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" | "beginning" => Ok(StartFrom::Earliest),
            "committed" => Ok(StartFrom::Committed),
            d => crate::yaml::parse_duration_ms(d)
                .map(StartFrom::Ago)
                .ok_or_else(|| format!("--from {s:?}: use earliest, committed or a duration like 2h")),
        }
    }
}

/// A topic read through a consumer group.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// Extra librdkafka properties (e.g. session.timeout.ms).
    pub properties: BTreeMap<String, String>,
    /// JSON field with the event time in ms; none = the record's timestamp.
    pub time_field: Option<String>,
    /// JSON field with the key; none = the record's key.
    pub key_field: Option<String>,
}

/// How a run behaves.
pub struct RunConfig {
    /// Prefix of checkpoint ids (the pipeline's name).
    pub name: String,
    pub checkpoint_interval: Duration,
    pub policy: SinkErrorPolicy,
    pub from: StartFrom,
    /// Stop once every assigned partition has been read to its end (bounded runs, benches).
    pub stop_at_end: bool,
    /// Set from outside (a signal) to stop after a final checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Flush early when this many results are waiting.
    pub max_pending: usize,
}

// ---------------------------------------------------------------------------------------------
// Producer (Kafka sink and dead-letter topic)

struct DeliveryCounter {
    failed: Arc<AtomicU64>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::error!(error = %e, "kafka delivery failed");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An idempotent, acks=all producer whose `flush` fails if any record since the last flush
/// was not delivered (the run then stops and replays from its checkpoint).
pub struct KafkaProducer {
    inner: ThreadedProducer<DeliveryCounter>,
    failed: Arc<AtomicU64>,
    topic: String,
}

impl KafkaProducer {
    pub fn new(brokers: &str, topic: &str) -> Result<Self, SinkError> {
        let failed = Arc::new(AtomicU64::new(0));
        let inner = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .create_with_context(DeliveryCounter { failed: failed.clone() })
            .map_err(|e| SinkError::Kafka(e.to_string()))?;
        Ok(Self { inner, failed, topic: topic.to_owned() })
    }

    pub fn send(&self, key: &[u8], payload: &[u8]) -> Result<(), SinkError> {
        self.send_record(BaseRecord::to(&self.topic).key(key).payload(payload))
    }

    /// A record with no value: deletes the key from a compacted topic.
    pub fn send_tombstone(&self, key: &[u8]) -> Result<(), SinkError> {
        self.send_record(BaseRecord::to(&self.topic).key(key))
    }

    fn send_record(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), SinkError> {
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(SinkError::Kafka(format!("{}: {e}", self.topic))),
            }
        }
    }

    pub fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush(Duration::from_secs(90)).map_err(|e| SinkError::Kafka(format!("{}: {e}", self.topic)))?;
        match self.failed.swap(0, Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(SinkError::Kafka(format!("{}: {n} records not delivered", self.topic))),
        }
    }
}

/// Window results (key `key@window_start`, so a compacted topic keeps one row per window) or
/// pass-through events (their own key) as JSON to a topic; checkpoints in a directory.
pub struct KafkaSink {
    producer: KafkaProducer,
    checkpoints: CheckpointDir,
}

impl KafkaSink {
    pub fn new(brokers: &str, topic: &str, checkpoints: CheckpointDir) -> Result<Self, SinkError> {
        Ok(Self { producer: KafkaProducer::new(brokers, topic)?, checkpoints })
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        for r in batch.results {
            let key = format!("{}@{}", r.key, r.window_start_ms);
            if r.retraction {
                self.producer.send_tombstone(key.as_bytes())?;
            } else {
                self.producer.send(key.as_bytes(), result_json(r).to_string().as_bytes())?;
            }
        }
        for ev in batch.events {
            let value = serde_json::to_vec(&ev.value).map_err(|e| SinkError::Kafka(e.to_string()))?;
            self.producer.send(ev.key.as_deref().unwrap_or_default().as_bytes(), &value)?;
        }
        self.producer.flush()?;
        self.checkpoints.store(batch.checkpoints)
    }

    fn load_checkpoint(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        self.checkpoints.load(id)
    }

    fn clear_checkpoints(&mut self, prefix: &str) -> Result<(), SinkError> {
        self.checkpoints.clear(prefix)
    }
}

// ---------------------------------------------------------------------------------------------
// Dead letters

/// Where dead letters go. Each is a JSON object with the reason and the source position; on a
/// topic its key is `topic/partition/offset`, so a replayed dead letter has the same key.
pub enum DeadLetterOut {
    Topic(KafkaProducer),
    File { file: std::io::BufWriter<std::fs::File>, path: std::path::PathBuf },
    Stderr,
}

impl DeadLetterOut {
    /// Appends to `path`; with `truncate`, starts it empty.
    pub fn file(path: &std::path::Path, truncate: bool) -> Result<Self, SinkError> {
        let f = crate::sink::open_output(path, truncate)?;
        Ok(DeadLetterOut::File { file: std::io::BufWriter::new(f), path: path.to_owned() })
    }

    fn emit(&mut self, key: &str, value: serde_json::Value) -> Result<(), SinkError> {
        match self {
            DeadLetterOut::Topic(p) => p.send(key.as_bytes(), value.to_string().as_bytes()),
            DeadLetterOut::File { file, path } => {
                writeln!(file, "{value}").map_err(|source| SinkError::Io { path: path.clone(), source })
            }
            DeadLetterOut::Stderr => {
                eprintln!("dead letter: {value}");
                Ok(())
            }
        }
    }

    pub fn write(&mut self, source_topic: &str, d: &DeadLetter) -> Result<(), SinkError> {
        crate::metrics::dead_letter(&d.reason);
        let e = &d.event;
        let key = format!("{source_topic}/{}/{}", e.partition, e.offset);
        let value = serde_json::json!({"reason": d.reason.to_string(), "topic": source_topic,
            "partition": e.partition, "offset": e.offset, "timestamp": e.timestamp_ms, "key": e.key, "value": e.value});
        self.emit(&key, value)
    }

    /// A result the sink refused (policy `dead_letter`).
    pub fn write_result(&mut self, r: &WindowResult, error: &SinkError) -> Result<(), SinkError> {
        crate::metrics::DEAD_SINK.inc();
        let key = format!("result/{}@{}", r.key, r.window_start_ms);
        self.emit(&key, serde_json::json!({"reason": format!("sink failed: {error}"), "result": result_json(r)}))
    }

    pub fn write_event(&mut self, ev: &Event, error: &SinkError) -> Result<(), SinkError> {
        crate::metrics::DEAD_SINK.inc();
        let key = format!("event/{}/{}", ev.partition, ev.offset);
        self.emit(
            &key,
            serde_json::json!({"reason": format!("sink failed: {error}"), "key": ev.key, "value": ev.value}),
        )
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            DeadLetterOut::Topic(p) => p.flush(),
            DeadLetterOut::File { file, path } => file
                .flush()
                .and_then(|()| file.get_ref().sync_data())
                .map_err(|source| SinkError::Io { path: path.clone(), source }),
            DeadLetterOut::Stderr => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The source loop

struct GroupContext {
    rebalanced: AtomicBool,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = tpl.count(), "partitions assigned"),
            Rebalance::Revoke(tpl) => tracing::info!(partitions = tpl.count(), "partitions revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
        self.rebalanced.store(true, Ordering::Release);
    }
}

struct Task {
    pipeline: Pipeline,
    /// Records below this offset are already in the task's state.
    next_offset: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Turns a record into an event, or a dead letter when it is not JSON or lacks its time.
pub fn decode(m: &BorrowedMessage<'_>, source: &KafkaSource) -> Result<Event, Box<DeadLetter>> {
    let record_ts = m.timestamp().to_millis();
    let record_key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
    let payload = m.payload().unwrap_or_default();
    let dead = |reason| {
        let value = serde_json::Value::String(String::from_utf8_lossy(payload).into_owned());
        Box::new(DeadLetter {
            event: Event {
                key: record_key.clone(),
                value,
                timestamp_ms: record_ts.unwrap_or(0),
                partition: m.partition(),
                offset: m.offset(),
            },
            reason,
        })
    };
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| dead(DeadLetterReason::Undecodable { detail: format!("not JSON: {e}") }))?;
    let timestamp_ms = match &source.time_field {
        Some(f) => value.get(f).and_then(serde_json::Value::as_i64).ok_or_else(|| {
            dead(DeadLetterReason::BadField { field: f.clone(), detail: "missing or not an integer".into() })
        })?,
        None => {
            record_ts.ok_or_else(|| dead(DeadLetterReason::Undecodable { detail: "record has no timestamp".into() }))?
        }
    };
    let key = match &source.key_field {
        Some(f) => weir_stream::event::key_from_field(&value, f),
        None => record_key,
    };
    Ok(Event { key, value, timestamp_ms, partition: m.partition(), offset: m.offset() })
}

/// Runs a pipeline over a topic until `stop` is set (or, with `stop_at_end`, until every
/// assigned partition is read to its end). `make` builds one pipeline per source partition.
pub fn run(
    source: &KafkaSource,
    make: &dyn Fn() -> Result<Pipeline, String>,
    sink: &mut dyn Sink,
    dead: &mut DeadLetterOut,
    cfg: &RunConfig,
) -> Result<RunStats, RunError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &source.brokers)
        .set("group.id", &source.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", if cfg.stop_at_end { "true" } else { "false" });
    for (k, v) in &source.properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer<GroupContext> =
        config.create_with_context(GroupContext { rebalanced: AtomicBool::new(false) })?;
    let prefix = format!("{}/{}/", cfg.name, source.topic);
    if cfg.from != StartFrom::Committed {
        rewind(&consumer, &source.topic, cfg.from)?;
        sink.clear_checkpoints(&prefix)?;
    }
    consumer.subscribe(&[&source.topic])?;

    let mut tasks: BTreeMap<i32, Task> = BTreeMap::new();
    let mut pending = Outputs::default();
    let mut stats = RunStats::default();
    let mut eof: BTreeSet<i32> = BTreeSet::new();
    let mut last_checkpoint = Instant::now();
    let mut dirty = false;
    let mut first_event: Option<Instant> = None;
    loop {
        if cfg.stop.load(Ordering::Acquire) {
            break;
        }
        let polled = consumer.poll(Duration::from_millis(100));
        if consumer.context().rebalanced.swap(false, Ordering::AcqRel) {
            sync_tasks(&consumer, &source.topic, &prefix, &mut tasks, sink, make)?;
        }
        match polled {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error (retrying)"),
            Some(Ok(m)) => {
                let p = m.partition();
                eof.remove(&p);
                first_event.get_or_insert_with(Instant::now);
                if let Some(task) = tasks.get_mut(&p) {
                    if m.offset() >= task.next_offset {
                        task.next_offset = m.offset() + 1;
                        stats.events += 1;
                        crate::metrics::EVENTS.inc();
                        dirty = true;
                        match decode(&m, source) {
                            Ok(ev) => {
                                let out = task.pipeline.process(ev, now_ms())?;
                                for d in &out.dead_letters {
                                    dead.write(&source.topic, d)?;
                                }
                                stats.dead_letters += out.dead_letters.len() as u64;
                                stats.duplicates += out.duplicates;
                                crate::metrics::DUPLICATES.add(out.duplicates);
                                stats.results += out.results.len() as u64;
                                pending.results.extend(out.results);
                                pending.events.extend(out.events);
                            }
                            Err(d) => {
                                stats.dead_letters += 1;
                                dead.write(&source.topic, &d)?;
                            }
                        }
                    }
                }
            }
        }
        let full = pending.results.len() + pending.events.len() >= cfg.max_pending;
        if dirty && (full || last_checkpoint.elapsed() >= cfg.checkpoint_interval) {
            checkpoint(&consumer, source, &prefix, &tasks, &mut pending, sink, dead, cfg)?;
            last_checkpoint = Instant::now();
            dirty = false;
        }
        if cfg.stop_at_end && !tasks.is_empty() && tasks.keys().all(|p| eof.contains(p)) {
            break;
        }
    }
    if dirty {
        checkpoint(&consumer, source, &prefix, &tasks, &mut pending, sink, dead, cfg)?;
    }
    consumer.unsubscribe();
    stats.active_ms = first_event.map_or(0, |t| t.elapsed().as_millis() as u64);
    Ok(stats)
}

/// Creates tasks for newly assigned partitions (restoring their checkpoints) and drops tasks
/// of revoked ones (their progress since the last checkpoint is replayed by the new owner).
fn sync_tasks(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    prefix: &str,
    tasks: &mut BTreeMap<i32, Task>,
    sink: &mut dyn Sink,
    make: &dyn Fn() -> Result<Pipeline, String>,
) -> Result<(), RunError> {
    let assigned: BTreeSet<i32> =
        consumer.assignment()?.elements_for_topic(topic).iter().map(|e| e.partition()).collect();
    tasks.retain(|p, _| assigned.contains(p));
    crate::metrics::PARTITIONS.set(assigned.len() as i64);
    for p in assigned {
        if tasks.contains_key(&p) {
            continue;
        }
        let mut pipeline = make().map_err(RunError::Other)?;
        let id = format!("{prefix}{p}");
        let next_offset = match sink.load_checkpoint(&id)? {
            Some(bytes) => {
                let cp = weir_stream::Checkpoint::from_json(&bytes)
                    .map_err(|e| RunError::Checkpoint { id: id.clone(), detail: e.to_string() })?;
                let next = cp.source_offsets.get(&p).copied().unwrap_or(0);
                pipeline.restore(cp);
                tracing::info!(partition = p, next_offset = next, "restored checkpoint");
                next
            }
            None => 0,
        };
        tasks.insert(p, Task { pipeline, next_offset });
    }
    Ok(())
}

/// Dead letters durable → results + checkpoints durable (one sink write) → offsets committed.
#[allow(clippy::too_many_arguments)]
fn checkpoint(
    consumer: &BaseConsumer<GroupContext>,
    source: &KafkaSource,
    prefix: &str,
    tasks: &BTreeMap<i32, Task>,
    pending: &mut Outputs,
    sink: &mut dyn Sink,
    dead: &mut DeadLetterOut,
    cfg: &RunConfig,
) -> Result<(), RunError> {
    let started = Instant::now();
    dead.flush()?;
    let mut checkpoints = Vec::with_capacity(tasks.len());
    for (&p, t) in tasks {
        let cp = t.pipeline.checkpoint(BTreeMap::from([(p, t.next_offset)]));
        let bytes =
            cp.to_json().map_err(|e| RunError::Checkpoint { id: format!("{prefix}{p}"), detail: e.to_string() })?;
        checkpoints.push((format!("{prefix}{p}"), bytes));
    }
    let batch = Batch { results: &pending.results, events: &pending.events, checkpoints: &checkpoints };
    write_with_policy(sink, &batch, dead, cfg.policy, &cfg.stop)?;
    crate::metrics::OUTPUTS.add((pending.results.len() + pending.events.len()) as u64);
    crate::metrics::OPEN_WINDOWS.set(tasks.values().map(|t| t.pipeline.open_windows() as i64).sum());
    pending.results.clear();
    pending.events.clear();
    let mut tpl = TopicPartitionList::new();
    for (&p, t) in tasks {
        if t.next_offset > 0 {
            tpl.add_partition_offset(&source.topic, p, Offset::Offset(t.next_offset))?;
        }
    }
    if tpl.count() > 0 {
        // Offsets are advisory here (the checkpoint is authoritative): a failed commit only
        // means more records are skipped on the next start.
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
    crate::metrics::CHECKPOINTS.inc();
    crate::metrics::CHECKPOINT_SECONDS.observe(started.elapsed());
    Ok(())
}

/// Writes a batch according to the error policy. Checkpoints are never skipped: if only they
/// cannot be written, the write is retried until it works or the run is stopped.
pub fn write_with_policy(
    sink: &mut dyn Sink,
    batch: &Batch<'_>,
    dead: &mut DeadLetterOut,
    policy: SinkErrorPolicy,
    stop: &AtomicBool,
) -> Result<(), RunError> {
    let mut backoff = Duration::from_millis(100);
    let mut retry = |e: SinkError| -> Result<(), RunError> {
        crate::metrics::SINK_FAILURES.inc();
        if stop.load(Ordering::Acquire) {
            return Err(e.into());
        }
        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "sink write failed");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
        Ok(())
    };
    loop {
        let Err(e) = sink.write(batch) else { return Ok(()) };
        match policy {
            SinkErrorPolicy::Retry => retry(e)?,
            SinkErrorPolicy::DeadLetter => {
                crate::metrics::SINK_FAILURES.inc();
                tracing::warn!(error = %e, "sink write failed; writing one item at a time");
                for r in batch.results {
                    if let Err(e) = sink.write(&Batch { results: std::slice::from_ref(r), ..Batch::default() }) {
                        dead.write_result(r, &e)?;
                    }
                }
                for ev in batch.events {
                    if let Err(e) = sink.write(&Batch { events: std::slice::from_ref(ev), ..Batch::default() }) {
                        dead.write_event(ev, &e)?;
                    }
                }
                dead.flush()?;
                let only_checkpoints = Batch { checkpoints: batch.checkpoints, ..Batch::default() };
                loop {
                    match sink.write(&only_checkpoints) {
                        Ok(()) => return Ok(()),
                        Err(e) => retry(e)?,
                    }
                }
            }
        }
    }
}

/// Resets the group's committed offsets (the group must have no active members), as
/// `kafka-consumer-groups --reset-offsets` does.
fn rewind(consumer: &BaseConsumer<GroupContext>, topic: &str, from: StartFrom) -> Result<(), RunError> {
    let md = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let partitions: Vec<i32> =
        md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    if partitions.is_empty() {
        return Err(RunError::Other(format!("topic {topic:?} has no partitions (does it exist?)")));
    }
    let mut tpl = TopicPartitionList::new();
    match from {
        StartFrom::Committed => return Ok(()),
        StartFrom::Earliest => {
            for &p in &partitions {
                let (low, _) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
                tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            }
        }
        StartFrom::Ago(ms) => {
            let mut q = TopicPartitionList::new();
            for &p in &partitions {
                q.add_partition_offset(topic, p, Offset::Offset(now_ms() - ms))?;
            }
            let found = consumer.offsets_for_times(q, TIMEOUT)?;
            for e in found.elements_for_topic(topic) {
                let offset = match e.offset() {
                    Offset::Offset(o) => o,
                    // No record that recent: start at the end.
                    _ => consumer.fetch_watermarks(topic, e.partition(), TIMEOUT)?.1,
                };
                tpl.add_partition_offset(topic, e.partition(), Offset::Offset(offset))?;
            }
        }
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    tracing::info!(?from, partitions = tpl.count(), "group offsets reset");
    Ok(())
}
