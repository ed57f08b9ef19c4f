//! The Kafka side of pipelines, through a real Kafka client (librdkafka via rdkafka), so a
//! pipeline runs against Weir or any Kafka/Redpanda cluster unchanged:
//! - a source that reads a topic as a member of a consumer group (more instances in the group
//!   split the partitions);
//! - a sink that writes window results or events to a topic;
//! - a dead-letter topic.
//!
//! - the `Source` and `Exchange` of the runner over Kafka: one consumer group reads the source
//!   topic and the pipeline's repartition topics (`<pipeline>-<stage>-repartition`); tasks are
//!   (stage, partition), and what a stage emits is produced to the next stage's topic.
//!
//! Processing follows Kafka Streams' task model: a task's output depends only on its
//! partition's records, so replays after a crash or a rebalance produce the same results,
//! and the idempotent sinks end up with the same rows as an uninterrupted run.

use crate::runner::{Exchange, Input, Polled, Source, TaskId, Upstream};
use crate::sink::{result_json, result_json_named, Batch, CheckpointStore, Sink, SinkError};
use crate::yaml::{EventFormat, TimeFrom};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_stream::StreamError;
use weir_stream::{DeadLetter, DeadLetterReason, Event, WindowResult};

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
    /// Skip to the end (repartition topics on a rewind: their records are re-derived).
    End,
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

// ---------------------------------------------------------------------------------------------
// Producer (Kafka sink and dead-letter topic)

struct DeliveryCounter {
    failed: Arc<AtomicU64>,
    /// Per (topic, partition) watched: the highest offset delivered (repartition topics, so a
    /// bounded run knows where their end is without asking the broker).
    delivered: Arc<Vec<(String, Vec<AtomicI64>)>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Err((e, _)) => {
                tracing::error!(error = %e, "kafka delivery failed");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(m) => {
                if let Some((_, parts)) = self.delivered.iter().find(|(t, _)| t == m.topic()) {
                    if let Some(slot) = usize::try_from(m.partition()).ok().and_then(|p| parts.get(p)) {
                        slot.fetch_max(m.offset(), Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// An idempotent, acks=all producer whose `flush` fails if any record since the last flush
/// was not delivered (the run then stops and replays from its checkpoint).
pub struct KafkaProducer {
    inner: ThreadedProducer<DeliveryCounter>,
    failed: Arc<AtomicU64>,
    topic: String,
    delivered: Arc<Vec<(String, Vec<AtomicI64>)>>,
}

impl KafkaProducer {
    pub fn new(brokers: &str, topic: &str) -> Result<Self, SinkError> {
        Self::watching(brokers, topic, &[])
    }

    /// A producer that keeps the highest delivered offset of each partition of these topics.
    fn watching(brokers: &str, topic: &str, watched: &[(String, i32)]) -> Result<Self, SinkError> {
        let failed = Arc::new(AtomicU64::new(0));
        let delivered: Arc<Vec<(String, Vec<AtomicI64>)>> =
            Arc::new(watched.iter().map(|(t, n)| (t.clone(), (0..*n).map(|_| AtomicI64::new(-1)).collect())).collect());
        let inner = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            // Kafka's default partitioner (null keys to one partition): repartition records of
            // a key always land in one partition, whichever instance sends them.
            .set("partitioner", "murmur2")
            .create_with_context(DeliveryCounter { failed: failed.clone(), delivered: delivered.clone() })
            .map_err(|e| SinkError::Kafka(e.to_string()))?;
        Ok(Self { inner, failed, topic: topic.to_owned(), delivered })
    }

    /// The highest offset delivered to a watched partition (-1: none).
    fn delivered(&self, topic: &str, partition: i32) -> i64 {
        self.delivered
            .iter()
            .find(|(t, _)| t == topic)
            .and_then(|(_, parts)| parts.get(usize::try_from(partition).ok()?))
            .map_or(-1, |a| a.load(Ordering::Relaxed))
    }

    pub fn send(&self, key: &[u8], payload: &[u8]) -> Result<(), SinkError> {
        self.send_record(BaseRecord::to(&self.topic).key(key).payload(payload))
    }

    /// A record with no value: deletes the key from a compacted topic.
    pub fn send_tombstone(&self, key: &[u8]) -> Result<(), SinkError> {
        self.send_record(BaseRecord::to(&self.topic).key(key))
    }

    pub(crate) fn send_record(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), SinkError> {
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
    /// Aggregate names of the results.
    pub names: Vec<String>,
    producer: KafkaProducer,
    checkpoints: Box<dyn CheckpointStore>,
}

impl KafkaSink {
    pub fn new(brokers: &str, topic: &str, checkpoints: impl CheckpointStore + 'static) -> Result<Self, SinkError> {
        Ok(Self {
            names: Vec::new(),
            producer: KafkaProducer::new(brokers, topic)?,
            checkpoints: Box::new(checkpoints),
        })
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        for r in batch.results {
            let key = format!("{}@{}", r.key, r.window_start_ms);
            if r.is_retraction() {
                self.producer.send_tombstone(key.as_bytes())?;
            } else {
                self.producer.send(key.as_bytes(), result_json_named(r, &self.names).to_string().as_bytes())?;
            }
        }
        for ev in batch.events {
            let value = ev.value_text();
            self.producer.send(ev.key.as_deref().unwrap_or_default().as_bytes(), value.as_bytes())?;
        }
        self.producer.flush()?;
        self.checkpoints.store(batch.checkpoints)
    }

    fn checkpoint_store(&mut self) -> Option<&mut dyn CheckpointStore> {
        Some(&mut self.checkpoints)
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints in a topic

/// A checkpoint bigger than this is split into chunks (a record stays well under brokers'
/// default 1 MB message limit).
const CHUNK_BYTES: usize = 512 * 1024;

/// Checkpoints in a compacted topic of the source cluster (`<pipeline>-checkpoints`, one
/// partition), so whichever instance gets a partition finds its state. A checkpoint `id` is
/// the record `id` holding `{"generation", "chunks", "bytes"}`, written after its chunks
/// `id#0`, `id#1`, … each holding the generation (8 bytes, big-endian) then its part of the
/// data. Reading takes every record to the end of the topic; a header whose chunks are not
/// all there with its generation is an error, never a partial state. docs/checkpoint-format.md.
pub struct CheckpointTopic {
    producer: KafkaProducer,
    brokers: String,
    topic: String,
    /// Everything in the topic, latest per key, read on first use after a refresh.
    cache: Option<std::collections::HashMap<String, Vec<u8>>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ChunkedHeader {
    generation: u64,
    chunks: u32,
    bytes: u64,
}

impl CheckpointTopic {
    /// Opens (creating, compacted) the topic.
    pub fn open(brokers: &str, topic: &str) -> Result<Self, SinkError> {
        let admin_err = |e: RunError| SinkError::Kafka(format!("checkpoint topic {topic}: {e}"));
        ensure_topic(brokers, topic, 1, &[("cleanup.policy", "compact")]).map_err(admin_err)?;
        Ok(Self {
            producer: KafkaProducer::new(brokers, topic)?,
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            cache: None,
        })
    }

    fn read_all(&self) -> Result<std::collections::HashMap<String, Vec<u8>>, SinkError> {
        let err = |e: KafkaError| SinkError::Kafka(format!("reading checkpoint topic {}: {e}", self.topic));
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "weir-checkpoint-reader")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(err)?;
        let (low, high) = consumer.fetch_watermarks(&self.topic, 0, TIMEOUT).map_err(err)?;
        let mut latest = std::collections::HashMap::new();
        if high <= low {
            return Ok(latest);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(low)).map_err(err)?;
        consumer.assign(&tpl).map_err(err)?;
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                if std::time::Instant::now() > deadline {
                    return Err(SinkError::Kafka(format!("reading checkpoint topic {}: timed out", self.topic)));
                }
                continue;
            };
            let m = m.map_err(err)?;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            match m.payload() {
                Some(v) => latest.insert(key, v.to_vec()),
                None => latest.remove(&key),
            };
            if m.offset() + 1 >= high {
                break;
            }
        }
        Ok(latest)
    }
}

impl CheckpointStore for CheckpointTopic {
    fn store(&mut self, checkpoints: &[(String, Vec<u8>)]) -> Result<(), SinkError> {
        if checkpoints.is_empty() {
            return Ok(()); // a flush waits a round trip: none for nothing
        }
        let generation =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        for (id, data) in checkpoints {
            let chunks = data.chunks(CHUNK_BYTES).len().max(1);
            for (i, chunk) in data.chunks(CHUNK_BYTES).enumerate() {
                let mut v = Vec::with_capacity(8 + chunk.len());
                v.extend_from_slice(&generation.to_be_bytes());
                v.extend_from_slice(chunk);
                self.producer.send(format!("{id}#{i}").as_bytes(), &v)?;
            }
            let header = ChunkedHeader { generation, chunks: chunks as u32, bytes: data.len() as u64 };
            let header = serde_json::to_vec(&header).map_err(|e| SinkError::Kafka(e.to_string()))?;
            self.producer.send(id.as_bytes(), &header)?;
            if let Some(c) = &mut self.cache {
                c.insert(id.clone(), header);
            }
        }
        self.producer.flush()?;
        if !checkpoints.is_empty() {
            // The chunks are only in the topic: read afresh next time.
            self.cache = None;
        }
        Ok(())
    }

    fn load(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        if self.cache.is_none() {
            self.cache = Some(self.read_all()?);
        }
        let Some(all) = &self.cache else { return Ok(None) };
        let Some(header) = all.get(id) else { return Ok(None) };
        let corrupt = |what: String| SinkError::Kafka(format!("checkpoint {id} in topic {}: {what}", self.topic));
        let h: ChunkedHeader = serde_json::from_slice(header).map_err(|e| corrupt(e.to_string()))?;
        let mut data = Vec::with_capacity(usize::try_from(h.bytes).unwrap_or(0).min(1 << 30));
        for i in 0..h.chunks {
            let chunk = all.get(&format!("{id}#{i}")).ok_or_else(|| corrupt(format!("chunk {i} missing")))?;
            if chunk.len() < 8 || chunk[..8] != h.generation.to_be_bytes() {
                return Err(corrupt(format!("chunk {i} is of another generation")));
            }
            data.extend_from_slice(&chunk[8..]);
        }
        if data.len() as u64 != h.bytes {
            return Err(corrupt(format!("{} bytes, the header says {}", data.len(), h.bytes)));
        }
        Ok(Some(data))
    }

    fn clear(&mut self, prefix: &str) -> Result<(), SinkError> {
        let all = self.read_all()?;
        for key in all.keys().filter(|k| k.starts_with(prefix)) {
            self.producer.send_tombstone(key.as_bytes())?;
        }
        self.producer.flush()?;
        self.cache = None;
        Ok(())
    }

    fn refresh(&mut self) -> Result<(), SinkError> {
        self.cache = None;
        Ok(())
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
            "partition": e.partition, "offset": e.offset, "timestamp": e.timestamp_ms, "key": e.key, "value": e.full_value()});
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
            serde_json::json!({"reason": format!("sink failed: {error}"), "key": ev.key, "value": ev.full_value()}),
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
// The source: a consumer group over the source topic and the repartition topics

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

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Header names of repartition records (docs/repartition-format.md).
const H_TASK: &str = "weir.task";
const H_OFFSET: &str = "weir.offset";
const H_SEQ: &str = "weir.seq";
const H_TIME: &str = "weir.time";
const H_WATERMARK: &str = "weir.watermark";
const H_IDLE: &str = "weir.idle";
const H_SOURCE: &str = "weir.source";

/// Bits of a stage-0 task id that hold the partition (the rest: the source's index).
const SOURCE_SHIFT: u32 = 16;

/// One source topic and how its records become events.
#[derive(Debug, Clone)]
pub struct SourceTopic {
    pub topic: String,
    pub format: EventFormat,
}

/// What the Kafka source reads: the topic, the group, and how records become events.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    /// The source topics (one, or several: then events carry their source's index and
    /// stage-0 tasks are `source << 16 | partition`).
    pub sources: Vec<SourceTopic>,
    pub group: String,
    /// Extra librdkafka properties (e.g. session.timeout.ms).
    pub properties: BTreeMap<String, String>,
    /// The pipeline's name: repartition topics are `<name>-<stage>-repartition`.
    pub name: String,
    /// Stages of the pipeline (1 = no repartition topic).
    pub stages: usize,
    /// Partitions of the repartition topics (default: the source topic's, the largest count
    /// over several).
    pub repartition_partitions: Option<i32>,
    pub from: StartFrom,
    pub stop_at_end: bool,
}

/// The Kafka side of a run: consumer, repartition producer, topics per stage.
pub struct KafkaSource {
    consumer: BaseConsumer<GroupContext>,
    producer: Option<KafkaProducer>,
    /// The source topics with their partition counts (stage 0).
    sources: Vec<(SourceTopic, i32)>,
    /// Per stage-0 task, the latest event time read: a tombstone's time.
    latest: std::collections::HashMap<i32, i64>,
    /// Topic per stage ≥ 1: the repartition topics (index 0 unused: the sources).
    topics: Vec<String>,
    partitions: Vec<i32>,
    started: bool,
    /// (low, high) watermarks per task and when they were asked, cached between end checks.
    ends: BTreeMap<TaskId, ((i64, i64), std::time::Instant)>,
    /// Deletes what the group has applied from the repartition topics (as Kafka Streams
    /// purges its repartition topics), at most every `PURGE_INTERVAL`.
    purger: Option<(rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>, std::time::Instant)>,
}

/// How often records already applied are deleted from repartition topics.
const PURGE_INTERVAL: Duration = Duration::from_secs(30);

/// Waits for a future on this thread (rdkafka's admin calls are async; the runner is not).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

impl KafkaSource {
    /// Checks the source topic exists, creates missing repartition topics, rewinds if asked,
    /// and subscribes to every topic of the pipeline.
    pub fn open(cfg: &KafkaSourceConfig, sink: &mut dyn Sink) -> Result<Self, RunError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &cfg.brokers)
            .set("group.id", &cfg.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // A pipeline consumes slower than librdkafka fetches, so the prefetch queue fills;
            // librdkafka then waits fetch.queue.backoff.ms (1 s by default) before fetching
            // again, and the pipeline starves for most of that second (q1 over a topic ran at
            // 100 k events/s with the CPU two-thirds idle). Refetch soon instead, and keep the
            // queue at 16 MB (default 64 MB) so memory stays bounded.
            .set("fetch.queue.backoff.ms", "10")
            .set("queued.max.messages.kbytes", "16384");
        if cfg.stop_at_end {
            // End checks ask the broker for watermarks on the fetch connection, which waits
            // behind a long-poll fetch: keep those short.
            config.set("fetch.wait.max.ms", "100");
        }
        for (k, v) in &cfg.properties {
            config.set(k, v);
        }
        let consumer: BaseConsumer<GroupContext> =
            config.create_with_context(GroupContext { rebalanced: AtomicBool::new(false) })?;
        if cfg.sources.is_empty() || cfg.sources.len() > 1 << (31 - SOURCE_SHIFT) {
            return Err(RunError::Other(format!("{} source topics: 1 to 32768 are supported", cfg.sources.len())));
        }
        let mut sources = Vec::with_capacity(cfg.sources.len());
        for s in &cfg.sources {
            let n = partition_count(&consumer, &s.topic)?.ok_or_else(|| {
                RunError::Other(format!(
                    "source topic {:?} does not exist on {} (create it: weir topic create {} --partitions N)",
                    s.topic, cfg.brokers, s.topic
                ))
            })?;
            if cfg.sources.len() > 1 && n > 1 << SOURCE_SHIFT {
                return Err(RunError::Other(format!(
                    "source topic {:?} has {n} partitions: with several sources at most {} are supported",
                    s.topic,
                    1 << SOURCE_SHIFT
                )));
            }
            sources.push((s.clone(), n));
        }
        let source_partitions = sources.iter().map(|(_, n)| *n).max().unwrap_or(1);
        let mut topics = vec![String::new()];
        let mut partitions = vec![sources.iter().map(|(_, n)| *n).sum()];
        let want = cfg.repartition_partitions.unwrap_or(source_partitions);
        for stage in 1..cfg.stages {
            let name = format!("{}-{stage}-repartition", cfg.name);
            let have = match partition_count(&consumer, &name)? {
                Some(n) => n,
                None => {
                    ensure_topic(&cfg.brokers, &name, want, &[])?;
                    wait_for_topic(&consumer, &name)?
                }
            };
            if have != want {
                return Err(RunError::Other(format!(
                    "repartition topic {name:?} has {have} partitions, the pipeline needs {want}: a different count \
                     would move keys between partitions. Delete the topic (and rerun with --from earliest), or set \
                     repartition.partitions: {have}"
                )));
            }
            topics.push(name);
            partitions.push(want);
        }
        if cfg.from != StartFrom::Committed {
            for (s, _) in &sources {
                rewind(&consumer, &s.topic, cfg.from)?;
                sink.clear_checkpoints(&format!("{}/{}/", cfg.name, s.topic))?;
            }
            for topic in &topics[1..] {
                // Repartition topics restart from their end: what is in them is derived from
                // source records that will be read again.
                rewind(&consumer, topic, StartFrom::End)?;
                sink.clear_checkpoints(&format!("{}/{topic}/", cfg.name))?;
            }
        }
        let names: Vec<&str> =
            sources.iter().map(|(s, _)| s.topic.as_str()).chain(topics[1..].iter().map(String::as_str)).collect();
        consumer.subscribe(&names)?;
        let watched: Vec<(String, i32)> = topics.iter().cloned().zip(partitions.iter().copied()).skip(1).collect();
        let producer =
            if cfg.stages > 1 { Some(KafkaProducer::watching(&cfg.brokers, &topics[1], &watched)?) } else { None };
        let purger = match cfg.stages > 1 {
            true => {
                Some((ClientConfig::new().set("bootstrap.servers", &cfg.brokers).create()?, std::time::Instant::now()))
            }
            false => None,
        };
        Ok(Self {
            consumer,
            producer,
            sources,
            latest: std::collections::HashMap::new(),
            topics,
            partitions,
            started: false,
            ends: BTreeMap::new(),
            purger,
        })
    }

    /// The task reading (topic, partition), if the topic is one of the pipeline's.
    fn task_of(&self, topic: &str, partition: i32) -> Option<(TaskId, Option<usize>)> {
        if let Some(i) = self.sources.iter().position(|(s, _)| s.topic == topic) {
            let task = TaskId { stage: 0, partition: ((i as i32) << SOURCE_SHIFT) | partition };
            return Some((task, Some(i)));
        }
        let stage = self.topics.iter().skip(1).position(|t| t == topic)? + 1;
        Some((TaskId { stage, partition }, None))
    }

    /// The topic and partition a task reads.
    fn locate(&self, t: TaskId) -> (&str, i32) {
        if t.stage == 0 {
            let i = (t.partition >> SOURCE_SHIFT) as usize;
            let topic = self.sources.get(i).map_or("", |(s, _)| s.topic.as_str());
            (topic, t.partition & ((1 << SOURCE_SHIFT) - 1))
        } else {
            (self.topics.get(t.stage).map_or("", String::as_str), t.partition)
        }
    }

    /// A repartition record: headers say where it came from and what it is.
    fn decode_repartitioned(&self, m: &BorrowedMessage<'_>) -> Input {
        let mut task = None;
        let mut offset = None;
        let mut seq = None;
        let mut time = None;
        let mut watermark = None;
        let mut idle = false;
        let mut source = 0u16;
        if let Some(h) = m.headers() {
            for header in h.iter() {
                let v = header.value.unwrap_or_default();
                match header.key {
                    H_TASK => task = v.try_into().ok().map(i32::from_be_bytes),
                    H_OFFSET => offset = v.try_into().ok().map(i64::from_be_bytes),
                    H_SEQ => seq = v.try_into().ok().map(u32::from_be_bytes),
                    H_TIME => time = v.try_into().ok().map(i64::from_be_bytes),
                    H_WATERMARK => watermark = v.try_into().ok().map(i64::from_be_bytes),
                    H_IDLE => idle = true,
                    H_SOURCE => source = v.try_into().ok().map_or(0, u16::from_be_bytes),
                    _ => {}
                }
            }
        }
        let dead = |detail: String| {
            let value =
                serde_json::Value::String(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            let event = Event {
                key: None,
                value,
                timestamp_ms: 0,
                partition: m.partition(),
                offset: m.offset(),
                source: 0,
                raw: None,
            };
            Input::Dead(Box::new(DeadLetter { event, reason: DeadLetterReason::Undecodable { detail } }))
        };
        let Some(task) = task else { return dead(format!("repartition record without {H_TASK}")) };
        if let Some(w) = watermark {
            return Input::Watermark { upstream: task, watermark_ms: w };
        }
        if idle {
            return Input::Idle { upstream: task };
        }
        let (Some(offset), Some(seq), Some(time)) = (offset, seq, time) else {
            return dead("repartition record without its position headers".into());
        };
        let value = match serde_json::from_slice(m.payload().unwrap_or_default()) {
            Ok(v) => v,
            Err(e) => return dead(format!("not JSON: {e}")),
        };
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let ev =
            Event { key, value, timestamp_ms: time, partition: m.partition(), offset: m.offset(), source, raw: None };
        Input::Event(ev, Some(Upstream { task, offset, seq }))
    }

    fn decode_source(
        sources: &[(SourceTopic, i32)],
        latest_times: &mut std::collections::HashMap<i32, i64>,
        m: &BorrowedMessage<'_>,
        task: TaskId,
        i: usize,
    ) -> Input {
        let record_ts = m.timestamp().to_millis();
        let record_key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let source = i as u16;
        let Some(payload) = m.payload() else {
            // A tombstone: a null value for its record key (a table join deletes the key's row).
            // Unless times are the records' timestamps it has no event time of its own: it
            // happens where it is in its partition, at the latest event time read there.
            let format = &sources[i].0.format;
            let latest = latest_times.get(&task.partition).copied().unwrap_or(i64::MIN);
            let timestamp_ms = match (&format.time, record_ts) {
                (TimeFrom::RecordTimestamp, Some(ts)) => ts,
                _ => latest,
            };
            let value = serde_json::Value::Null;
            let ev = Event {
                key: record_key,
                value,
                timestamp_ms,
                partition: m.partition(),
                offset: m.offset(),
                source,
                raw: None,
            };
            return Input::Event(ev, None);
        };
        let format = &sources[i].0.format;
        match format.decode(payload) {
            Ok((value, raw)) => match format.event(value, record_key, record_ts, m.partition(), m.offset()) {
                Ok(mut ev) => {
                    ev.source = source;
                    ev.raw = raw;
                    let latest = latest_times.entry(task.partition).or_insert(i64::MIN);
                    *latest = (*latest).max(ev.timestamp_ms);
                    Input::Event(ev, None)
                }
                Err(mut d) => {
                    d.event.source = source;
                    d.event.raw = raw;
                    Input::Dead(d)
                }
            },
            Err(e) => {
                let value = serde_json::Value::String(String::from_utf8_lossy(payload).into_owned());
                let event = Event {
                    key: record_key,
                    value,
                    timestamp_ms: record_ts.unwrap_or(0),
                    partition: m.partition(),
                    offset: m.offset(),
                    source,
                    raw: None,
                };
                let detail = format!("not JSON: {e}");
                Input::Dead(Box::new(DeadLetter { event, reason: DeadLetterReason::Undecodable { detail } }))
            }
        }
    }
}

/// Partitions of a topic, None when it does not exist.
fn partition_count<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str) -> Result<Option<i32>, RunError> {
    let md = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    Ok(Some(t.partitions().len() as i32))
}

/// Fails unless the source topic exists (checked before anything is created for the run).
pub fn check_source_topic(brokers: &str, topic: &str, properties: &BTreeMap<String, String>) -> Result<(), RunError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in properties.iter().filter(|(k, _)| k.starts_with("security.") || k.starts_with("sasl.")) {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create()?;
    match partition_count(&consumer, topic)? {
        Some(_) => Ok(()),
        None => Err(RunError::Other(format!(
            "source topic {topic:?} does not exist on {brokers} (create it: weir topic create {topic} --partitions N)"
        ))),
    }
}

/// Waits until a created topic shows in metadata (subscribing before would miss it).
fn wait_for_topic(consumer: &BaseConsumer<GroupContext>, topic: &str) -> Result<i32, RunError> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(n) = partition_count(consumer, topic)? {
            return Ok(n);
        }
        if std::time::Instant::now() > deadline {
            return Err(RunError::Other(format!("topic {topic:?} was created but does not show in metadata")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates a topic unless it exists (the broker's default replication); returns its partitions.
fn ensure_topic(brokers: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Result<i32, RunError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = block_on(admin.create_topics([&topic], &AdminOptions::new().operation_timeout(Some(TIMEOUT))))?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(RunError::Other(format!("creating topic {t:?}: {code}"))),
        }
    }
    tracing::info!(topic = name, partitions, "created topic");
    Ok(partitions)
}

impl Source for KafkaSource {
    fn poll(&mut self, timeout: Duration) -> Result<Polled, RunError> {
        let m = match self.consumer.poll(timeout) {
            None => return Ok(Polled::Nothing),
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(Polled::Nothing),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error (retrying)");
                return Ok(Polled::Nothing);
            }
            Some(Ok(m)) => m,
        };
        let Some((task, source)) = self.task_of(m.topic(), m.partition()) else { return Ok(Polled::Nothing) };
        let input = match source {
            Some(i) => Self::decode_source(&self.sources, &mut self.latest, &m, task, i),
            None => self.decode_repartitioned(&m),
        };
        Ok(Polled::Input { task, offset: m.offset(), input })
    }

    fn assignment(&mut self) -> Result<Option<Vec<TaskId>>, RunError> {
        if !self.consumer.context().rebalanced.swap(false, Ordering::AcqRel) {
            return Ok(None);
        }
        self.started = true;
        let tpl = self.consumer.assignment()?;
        let tasks = tpl
            .elements()
            .iter()
            .filter_map(|e| self.task_of(e.topic(), e.partition()).map(|(task, _)| task))
            .collect();
        Ok(Some(tasks))
    }

    fn tasks(&self, stage: usize) -> Vec<i32> {
        if stage == 0 {
            let tasks = self.sources.iter().enumerate();
            tasks.flat_map(|(i, (_, n))| (0..*n).map(move |p| ((i as i32) << SOURCE_SHIFT) | p)).collect()
        } else {
            (0..self.partitions.get(stage).copied().unwrap_or(1)).collect()
        }
    }

    fn input_of(&self, task: TaskId) -> (&str, i32) {
        self.locate(task)
    }

    fn bounded(&self) -> bool {
        false
    }

    fn commit(&mut self, offsets: &[(TaskId, i64)]) -> Result<(), RunError> {
        let mut tpl = TopicPartitionList::new();
        for (t, o) in offsets {
            let (topic, partition) = self.locate(*t);
            tpl.add_partition_offset(topic, partition, Offset::Offset(*o))?;
        }
        if tpl.count() > 0 {
            // Offsets are advisory here (the checkpoint is authoritative): a failed commit only
            // means more records are skipped on the next start.
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
        self.purge(offsets);
        Ok(())
    }

    fn committed(&mut self, task: TaskId) -> Result<Option<i64>, RunError> {
        let mut tpl = TopicPartitionList::new();
        let (topic, partition) = self.locate(task);
        tpl.add_partition(topic, partition);
        let c = self.consumer.committed_offsets(tpl, TIMEOUT)?;
        Ok(c.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
    }

    fn at_end(&mut self, positions: &BTreeMap<TaskId, i64>) -> Result<bool, RunError> {
        // First the answer the cache gives (no request): any task behind its known end.
        let end_of = |this: &Self, t: &TaskId, (low, high): (i64, i64)| {
            let (topic, partition) = this.locate(*t);
            let delivered = this.producer.as_ref().map_or(-1, |p| p.delivered(topic, partition));
            (low, high.max(delivered + 1))
        };
        for (t, &next) in positions {
            if let Some(&(w, _)) = self.ends.get(t) {
                let (low, high) = end_of(self, t, w);
                if next < high && low < high {
                    tracing::debug!(stage = t.stage, partition = t.partition, next, high, "not at the end yet");
                    return Ok(false);
                }
            }
        }
        // Then ask the broker about the tasks that look done (a request is slow: at most once
        // a second per partition).
        for (t, &next) in positions {
            let stale = self.ends.get(t).is_none_or(|(_, at)| at.elapsed() >= Duration::from_secs(1));
            if stale {
                let (topic, partition) = self.locate(*t);
                let w = self.consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
                self.ends.insert(*t, (w, std::time::Instant::now()));
            }
            let Some(&(w, _)) = self.ends.get(t) else { continue };
            let (low, high) = end_of(self, t, w);
            if next < high && low < high {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn exchange(&mut self) -> Option<&mut dyn Exchange> {
        if self.producer.is_some() {
            Some(self)
        } else {
            None
        }
    }
}

impl KafkaSource {
    /// Deletes the records below each repartition task's checkpointed offset: its state
    /// covers them, and only this group reads them. Failures only cost disk: logged.
    fn purge(&mut self, offsets: &[(TaskId, i64)]) {
        let Some((admin, last)) = &mut self.purger else { return };
        if last.elapsed() < PURGE_INTERVAL {
            return;
        }
        *last = std::time::Instant::now();
        let mut tpl = TopicPartitionList::new();
        for (t, o) in offsets.iter().filter(|(t, _)| t.stage > 0) {
            if let Some(topic) = self.topics.get(t.stage) {
                if tpl.add_partition_offset(topic, t.partition, Offset::Offset(*o)).is_err() {
                    return;
                }
            }
        }
        if tpl.count() == 0 {
            return;
        }
        let opts = rdkafka::admin::AdminOptions::new().operation_timeout(Some(TIMEOUT));
        match block_on(admin.delete_records(&tpl, &opts)) {
            Ok(_) => tracing::debug!(partitions = tpl.count(), "purged applied repartition records"),
            Err(e) => tracing::warn!(error = %e, "purging repartition topics failed"),
        }
    }

    /// A control record (watermark, idle) from `upstream` to every partition of `stage`.
    fn broadcast(&mut self, stage: usize, upstream: i32, header: &str, value: &[u8]) -> Result<(), RunError> {
        let Some(p) = &self.producer else { return Err(RunError::Other("no repartition producer".into())) };
        for partition in 0..self.partitions[stage] {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header { key: H_TASK, value: Some(&upstream.to_be_bytes()) })
                .insert(Header { key: header, value: Some(value) });
            let record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.topics[stage]).partition(partition).payload(&[][..]).headers(headers);
            p.send_record(record)?;
        }
        Ok(())
    }
}

impl Exchange for KafkaSource {
    fn send(&mut self, stage: usize, ev: &Event, from: Upstream) -> Result<(), RunError> {
        let Some(p) = &self.producer else { return Err(RunError::Other("no repartition producer".into())) };
        let value = ev.value_text();
        let value = value.as_bytes();
        let mut headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header { key: H_TASK, value: Some(&from.task.to_be_bytes()) })
            .insert(Header { key: H_OFFSET, value: Some(&from.offset.to_be_bytes()) })
            .insert(Header { key: H_SEQ, value: Some(&from.seq.to_be_bytes()) })
            .insert(Header { key: H_TIME, value: Some(&ev.timestamp_ms.to_be_bytes()) });
        if ev.source != 0 {
            headers = headers.insert(Header { key: H_SOURCE, value: Some(&ev.source.to_be_bytes()) });
        }
        let mut record = BaseRecord::to(&self.topics[stage]).payload(value).headers(headers);
        if let Some(k) = &ev.key {
            record = record.key(k.as_bytes());
        }
        p.send_record(record).map_err(Into::into)
    }

    fn send_watermark(&mut self, stage: usize, upstream: i32, watermark_ms: i64) -> Result<(), RunError> {
        self.broadcast(stage, upstream, H_WATERMARK, &watermark_ms.to_be_bytes())
    }

    fn send_idle(&mut self, stage: usize, upstream: i32) -> Result<(), RunError> {
        self.broadcast(stage, upstream, H_IDLE, &[1])
    }

    fn flush(&mut self) -> Result<(), RunError> {
        match &self.producer {
            Some(p) => p.flush().map_err(Into::into),
            None => Ok(()),
        }
    }
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
        StartFrom::End => {
            for &p in &partitions {
                let (_, high) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
                tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
            }
        }
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

/// A topic's records as they are now, written as JSON Lines (`weir sql "SELECT …"`): each
/// line is the value's JSON object with the record's `key`, `timestamp`, `partition` and
/// `offset` beside its fields (a value that is not an object is under `value`; a value that
/// is not JSON is refused). Reads every partition from its start to its current end, without
/// a consumer group. Returns the number of records.
pub fn snapshot_topic(brokers: &str, topic: &str, out: &mut dyn Write) -> Result<u64, RunError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("group.id", "weir-sql-snapshot").set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let Some(partitions) = partition_count(&consumer, topic)? else {
        return Err(RunError::Other(format!("topic {topic:?} does not exist on {brokers}")));
    };
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl)?;
    let mut n = 0u64;
    let deadline_idle = Duration::from_secs(30);
    let mut last = std::time::Instant::now();
    while !ends.is_empty() {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            if last.elapsed() > deadline_idle {
                return Err(RunError::Other(format!("reading {topic}: no record for 30 s before its end")));
            }
            continue;
        };
        let m = m?;
        last = std::time::Instant::now();
        let (p, offset) = (m.partition(), m.offset());
        let value: serde_json::Value = match m.payload() {
            None => serde_json::Value::Null,
            Some(b) => serde_json::from_slice(b).map_err(|e| {
                RunError::Other(format!(
                    "{topic}/{p} offset {offset}: the value is not JSON ({e}); SQL reads JSON values"
                ))
            })?,
        };
        let mut row = match value {
            serde_json::Value::Object(m) => m,
            other => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        for (name, v) in [
            ("key", key.map_or(serde_json::Value::Null, serde_json::Value::String)),
            ("timestamp", m.timestamp().to_millis().map_or(serde_json::Value::Null, Into::into)),
            ("partition", p.into()),
            ("offset", offset.into()),
        ] {
            if row.insert(name.into(), v).is_some() {
                return Err(RunError::Other(format!(
                    "{topic}/{p} offset {offset}: the value has a field {name:?}, which is also the record's {name} column"
                )));
            }
        }
        serde_json::to_writer(&mut *out, &serde_json::Value::Object(row))
            .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
            .map_err(|e| RunError::Other(format!("writing the snapshot: {e}")))?;
        n += 1;
        if ends.get(&p).is_some_and(|end| offset + 1 >= *end) {
            ends.remove(&p);
        }
    }
    Ok(n)
}
