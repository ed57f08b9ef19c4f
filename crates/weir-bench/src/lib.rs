//! weir-bench: load against any Kafka-protocol broker with the real client stack (librdkafka
//! through rdkafka), so Weir and other brokers are measured the same way. Modes: produce
//! (acknowledgement latency), consume, and e2e (produce and consume at once, latency from a
//! timestamp in the payload). Latencies go into HDR histograms; when a rate is set, produce
//! latency counts from each message's scheduled send time, so a stalled producer cannot hide
//! its own delay (coordinated omission).
//!
//! Architecture invariant: talks to brokers only through the Kafka client; knows nothing of
//! Weir's crates.

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Produce,
    Consume,
    E2e,
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub mode: Mode,
    pub bootstrap: String,
    pub topic: String,
    /// Partitions of the topic when the bench creates it.
    pub partitions: i32,
    pub producers: usize,
    pub consumers: usize,
    pub message_bytes: usize,
    pub batch_bytes: usize,
    pub linger_ms: u64,
    pub acks: String,
    pub compression: String,
    pub idempotence: bool,
    pub duration: Duration,
    /// Stop after this many messages (all producers together), if set.
    pub messages: Option<u64>,
    /// Messages per second for all producers together; unlimited when None.
    pub rate: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Setup(String),
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub samples: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            samples: h.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub mode: Mode,
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub errors: u64,
    /// Produce: acknowledgement latency. E2e: produce-to-consume latency. Consume: none.
    pub latency: Option<Latency>,
    /// Messages per partition, by index: acknowledged ones (produce, e2e) or consumed ones
    /// (consume). Shows whether the load was spread or was a one-partition figure.
    pub partition_messages: Vec<u64>,
}

impl Report {
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": format!("{:?}", self.mode).to_lowercase(),
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "messages_per_second": self.messages_per_second(),
            "megabytes_per_second": self.megabytes_per_second(),
            "errors": self.errors,
            "latency_us": self.latency.map(|l| serde_json::json!({
                "p50": l.p50, "p90": l.p90, "p99": l.p99, "p99.9": l.p999, "max": l.max, "samples": l.samples
            })),
            "partitions": self.partition_messages.iter().enumerate()
                .map(|(p, n)| serde_json::json!({"partition": p, "messages": n}))
                .collect::<Vec<_>>(),
        })
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<8} {:>12} msgs {:>10.0} msg/s {:>9.1} MB/s  {:>6.1}s  errors {}\n",
            format!("{:?}", self.mode).to_lowercase(),
            self.messages,
            self.messages_per_second(),
            self.megabytes_per_second(),
            self.seconds,
            self.errors
        );
        if let Some(l) = self.latency {
            s += &format!(
                "latency (µs)  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)\n",
                l.p50, l.p90, l.p99, l.p999, l.max, l.samples
            );
        }
        if !self.partition_messages.is_empty() {
            let total = self.partition_messages.iter().sum::<u64>().max(1) as f64;
            s += "partitions   ";
            for (p, n) in self.partition_messages.iter().enumerate() {
                s += &format!(" {p}: {n} ({:.1}%)", *n as f64 * 100.0 / total);
            }
            s += "\n";
        }
        s
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h with 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records acknowledgement latency per delivered message (one context per producer thread).
struct AckContext {
    started: Instant,
    latency: Mutex<Histogram<u64>>,
    errors: AtomicU64,
    acked: AtomicU64,
    /// Acknowledged messages by partition index, sized once from the topic's metadata (a
    /// partition added during the run is not counted here).
    by_partition: Vec<AtomicU64>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    /// Microseconds since `started` when the message was due to be sent. A plain integer,
    /// carried in the pointer-sized opaque: no allocation per message.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, due_us: Self::DeliveryOpaque) {
        match result {
            Ok(m) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = usize::try_from(m.partition()).ok().and_then(|p| self.by_partition.get(p)) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                let now = self.started.elapsed().as_micros() as u64;
                let latency = now.saturating_sub(due_us as u64).max(1);
                // Latency counts from when the message was due (its slot in the rate schedule),
                // which is the coordinated-omission correction; no synthetic samples needed.
                let _ = self.latency.lock().unwrap_or_else(|e| e.into_inner()).record(latency);
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn producer_config(cfg: &BenchConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap)
        .set("acks", &cfg.acks)
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("batch.size", cfg.batch_bytes.to_string())
        .set("compression.type", &cfg.compression)
        .set("enable.idempotence", cfg.idempotence.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000");
    c
}

fn ensure_topic(cfg: &BenchConfig) -> Result<(), BenchError> {
    // Create with the wanted partitions through the admin protocol (a throwaway client).
    // A broker without CreateTopics (librdkafka's mock cluster, some proxies) or one that
    // does not answer in time leaves the topic to its auto-creation, said on stderr.
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &cfg.bootstrap).create()?;
    let topic = NewTopic::new(&cfg.topic, cfg.partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = match futures_lite_block_on(admin.create_topics([&topic], &options)) {
        Ok(results) => results,
        Err(e) => {
            eprintln!("creating topic {}: {e}; relying on the broker's auto-creation", cfg.topic);
            return Ok(());
        }
    };
    for r in results {
        if let Err((name, code)) = r {
            use rdkafka::types::RDKafkaErrorCode as E;
            match code {
                E::TopicAlreadyExists => {}
                E::UnsupportedFeature | E::OperationTimedOut | E::RequestTimedOut | E::UnsupportedVersion => {
                    eprintln!("creating topic {name}: {code}; relying on the broker's auto-creation");
                }
                _ => return Err(BenchError::Setup(format!("creating topic {name}: {code}"))),
            }
        }
    }
    Ok(())
}

/// Drives one future to completion on this thread (rdkafka's admin futures need no runtime).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

/// Sends a record, serving delivery reports while the client's queue is full.
fn send_waiting<
    'a,
    C: ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> Result<(), BenchError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, r)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                producer.poll(Duration::from_millis(1));
                record = r;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

struct ProduceOutcome {
    sent: u64,
    acked: u64,
    errors: u64,
    latency: Histogram<u64>,
    by_partition: Vec<u64>,
}

/// The topic's partition count, from the broker (it may exist with another count than
/// `cfg.partitions`).
fn partition_count(cfg: &BenchConfig) -> Result<usize, BenchError> {
    let producer: BaseProducer = producer_config(cfg).create()?;
    let md = producer.client().fetch_metadata(Some(&cfg.topic), Duration::from_secs(10))?;
    Ok(md.topics().first().map_or(0, |t| t.partitions().len()))
}

/// Adds `b` into `a`, element by element, growing `a` as needed.
fn add_counts(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

/// One producer thread. Records carry no key, so the client's sticky partitioner spreads
/// them over every partition a batch at a time, as keyless traffic from any Kafka client is
/// (Kafka's own producer-perf-test sends no keys either).
fn produce_loop(
    cfg: &BenchConfig,
    partitions: usize,
    stop: &AtomicBool,
    budget: &AtomicU64,
) -> Result<ProduceOutcome, BenchError> {
    let per_thread_rate = cfg.rate.map(|r| (r / cfg.producers as u64).max(1));
    let ctx = AckContext {
        started: Instant::now(),
        latency: Mutex::new(histogram()),
        errors: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        by_partition: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
    };
    let producer: BaseProducer<AckContext> = producer_config(cfg).create_with_context(ctx)?;
    let mut payload = vec![b'w'; cfg.message_bytes.max(8)];
    let started = Instant::now();
    let offset = started.saturating_duration_since(producer.context().started);
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < cfg.duration {
        if cfg.messages.is_some() && budget.fetch_sub(1, Ordering::Relaxed) == 0 {
            budget.store(0, Ordering::Relaxed);
            break;
        }
        // When rate-limited, latency counts from when the message was due, not when we got
        // around to sending it (coordinated omission).
        let due_us = match per_thread_rate {
            Some(r) => {
                let due = Duration::from_micros(sent * 1_000_000 / r);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                // On the context's clock: the offset between the two clocks plus the due time.
                (offset + due).as_micros() as u64
            }
            None => producer.context().started.elapsed().as_micros() as u64,
        };
        payload[..8].copy_from_slice(&now_ns().to_be_bytes());
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&cfg.topic, due_us as usize).payload(&payload[..]);
        send_waiting(&producer, record)?;
        sent += 1;
        if sent.is_multiple_of(64) {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(30))?;
    let ctx = producer.context();
    let latency = ctx.latency.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(ProduceOutcome {
        sent,
        acked: ctx.acked.load(Ordering::Relaxed),
        errors: ctx.errors.load(Ordering::Relaxed),
        latency,
        by_partition: ctx.by_partition.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
    })
}

struct ConsumeOutcome {
    messages: u64,
    bytes: u64,
    latency: Histogram<u64>,
    by_partition: Vec<u64>,
}

fn consumer(cfg: &BenchConfig, group: &str) -> Result<BaseConsumer, BenchError> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()?;
    c.subscribe(&[&cfg.topic])?;
    Ok(c)
}

fn consume_loop(
    c: &BaseConsumer,
    cfg: &BenchConfig,
    stop: &AtomicBool,
    total: &AtomicU64,
    started: Instant,
    last_us: &AtomicU64,
    partitions: usize,
) -> ConsumeOutcome {
    let mut out = ConsumeOutcome { messages: 0, bytes: 0, latency: histogram(), by_partition: vec![0; partitions] };
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < cfg.duration + Duration::from_secs(5) {
        let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
            // Consume mode ends once the topic has been drained for a second.
            if cfg.mode == Mode::Consume
                && total.load(Ordering::Relaxed) > 0
                && idle_since.elapsed() > Duration::from_secs(1)
            {
                break;
            }
            continue;
        };
        idle_since = Instant::now();
        last_us.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let payload = m.payload().unwrap_or_default();
        out.messages += 1;
        out.bytes += payload.len() as u64;
        if let Some(n) = usize::try_from(m.partition()).ok().and_then(|p| out.by_partition.get_mut(p)) {
            *n += 1;
        }
        if cfg.mode == Mode::E2e && payload.len() >= 8 {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&payload[..8]);
            let latency_us = now_ns().saturating_sub(u64::from_be_bytes(ts)) / 1000;
            let _ = out.latency.record(latency_us.max(1));
        }
        let seen = total.fetch_add(1, Ordering::Relaxed) + 1;
        if cfg.messages.is_some_and(|m| seen >= m) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    out
}

/// Before an e2e run: one marker message per partition, consumed by the group, so every
/// consumer has resolved its position and the run measures steady state, not start-up.
fn warm_up(cfg: &BenchConfig, consumers: &[BaseConsumer]) -> Result<(), BenchError> {
    let producer: BaseProducer = producer_config(cfg).create()?;
    for p in 0..cfg.partitions {
        let marker = [0u8; 8];
        let _ = producer.send(BaseRecord::<(), [u8]>::to(&cfg.topic).payload(&marker[..]).partition(p));
    }
    producer.flush(Duration::from_secs(10))?;
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen < cfg.partitions && Instant::now() < deadline {
        for c in consumers {
            if let Some(Ok(_)) = c.poll(Duration::from_millis(20)) {
                seen += 1;
            }
        }
    }
    if seen < cfg.partitions {
        return Err(BenchError::Setup(format!("warm-up: consumers saw {seen} of {} markers in 30 s", cfg.partitions)));
    }
    Ok(())
}

/// Runs one benchmark and reports throughput and latency.
pub fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    if cfg.producers == 0 || cfg.consumers == 0 {
        return Err(BenchError::Setup("producers and consumers must be at least 1".into()));
    }
    ensure_topic(cfg)?;
    let partitions = partition_count(cfg)?;
    let stop = AtomicBool::new(false);
    let consumed = AtomicU64::new(0);
    let group = format!("weir-bench-{}-{}", std::process::id(), now_ns() % 1_000_000);
    let budget = AtomicU64::new(cfg.messages.unwrap_or(u64::MAX));
    let consumers: Vec<BaseConsumer> = if cfg.mode == Mode::Produce {
        Vec::new()
    } else {
        (0..cfg.consumers).map(|_| consumer(cfg, &group)).collect::<Result<_, _>>()?
    };
    if cfg.mode == Mode::E2e {
        warm_up(cfg, &consumers)?;
    }
    let started = Instant::now();
    let last_us = AtomicU64::new(0);
    std::thread::scope(|s| {
        let (stop_ref, consumed_ref, last_ref) = (&stop, &consumed, &last_us);
        let consumer_threads: Vec<_> = consumers
            .iter()
            .map(|c| s.spawn(move || consume_loop(c, cfg, stop_ref, consumed_ref, started, last_ref, partitions)))
            .collect();
        let producer_threads: Vec<_> = if cfg.mode == Mode::Consume {
            Vec::new()
        } else {
            (0..cfg.producers)
                .map(|_| {
                    let (stop, budget) = (&stop, &budget);
                    s.spawn(move || produce_loop(cfg, partitions, stop, budget))
                })
                .collect()
        };
        let mut produced = Vec::new();
        for t in producer_threads {
            produced.push(t.join().map_err(|_| BenchError::Setup("producer thread panicked".into()))??);
        }
        if cfg.mode == Mode::E2e {
            // Let the consumers drain what was acknowledged, then stop them.
            let acked: u64 = produced.iter().map(|p| p.acked).sum();
            let deadline = Instant::now() + Duration::from_secs(10);
            while consumed.load(Ordering::Relaxed) < acked && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
        }
        if cfg.mode == Mode::Produce {
            stop.store(true, Ordering::Relaxed);
        }
        let mut consumed_out = Vec::new();
        for t in consumer_threads {
            consumed_out.push(t.join().map_err(|_| BenchError::Setup("consumer thread panicked".into()))?);
        }
        // Consumers: time until the last message arrived, not the idle wait after it.
        let seconds = match cfg.mode {
            Mode::Produce => started.elapsed().as_secs_f64(),
            _ => Duration::from_micros(last_us.load(Ordering::Relaxed)).as_secs_f64(),
        };
        let mut partition_messages = vec![0; partitions];
        match cfg.mode {
            Mode::Consume => consumed_out.iter().for_each(|c| add_counts(&mut partition_messages, &c.by_partition)),
            Mode::Produce | Mode::E2e => {
                produced.iter().for_each(|p| add_counts(&mut partition_messages, &p.by_partition))
            }
        }
        let report = match cfg.mode {
            Mode::Produce => {
                let mut h = histogram();
                for p in &produced {
                    let _ = h.add(&p.latency);
                }
                let acked: u64 = produced.iter().map(|p| p.acked).sum();
                Report {
                    mode: cfg.mode,
                    messages: acked,
                    bytes: acked * cfg.message_bytes as u64,
                    seconds,
                    errors: produced.iter().map(|p| p.errors + p.sent.saturating_sub(p.acked + p.errors)).sum(),
                    latency: Some(Latency::of(&h)),
                    partition_messages,
                }
            }
            Mode::Consume | Mode::E2e => {
                let mut h = histogram();
                for c in &consumed_out {
                    let _ = h.add(&c.latency);
                }
                Report {
                    mode: cfg.mode,
                    messages: consumed_out.iter().map(|c| c.messages).sum(),
                    bytes: consumed_out.iter().map(|c| c.bytes).sum(),
                    seconds,
                    errors: produced.iter().map(|p| p.errors).sum(),
                    latency: (cfg.mode == Mode::E2e).then(|| Latency::of(&h)),
                    partition_messages,
                }
            }
        };
        Ok(report)
    })
}

/// One Nexmark query's run.
#[derive(Debug, Clone)]
pub struct NexmarkReport {
    pub query: String,
    /// `in-process` (generator → engine) or `via-topic` (topic → client → engine).
    pub mode: &'static str,
    pub events: u64,
    pub outputs: u64,
    pub seconds: f64,
}

impl NexmarkReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"query": self.query, "mode": self.mode, "events": self.events, "outputs": self.outputs,
            "seconds": self.seconds, "events_per_second": self.events_per_second()})
    }
}

/// Nexmark queries with the generator in-process: only the engine is timed (generation and the
/// conversion to JSON events happen before the clock starts). One thread: events/s per core.
pub fn nexmark_in_process(queries: &[&str], events: usize, rate: usize) -> Result<Vec<NexmarkReport>, BenchError> {
    let mut out = Vec::new();
    for q in queries {
        let (o, secs) = weir_pipeline::nexmark::run_in_process(q, events, rate, false)
            .map_err(|e| BenchError::Setup(format!("{q}: {e}")))?;
        out.push(NexmarkReport {
            query: (*q).to_owned(),
            mode: "in-process",
            events: events as u64,
            outputs: o.count,
            seconds: secs,
        });
    }
    Ok(out)
}

/// Nexmark through a broker: the generator's events are produced as JSON to a fresh
/// one-partition topic, then each query reads them back with a Kafka client, decodes the JSON
/// and runs. Timed per query from the first poll to the last output.
pub fn nexmark_via_topic(
    bootstrap: &str,
    queries: &[&str],
    events: usize,
    rate: usize,
) -> Result<(f64, Vec<NexmarkReport>), BenchError> {
    let topic = format!("nexmark-{}", std::process::id());
    let cfg = BenchConfig {
        mode: Mode::Produce,
        bootstrap: bootstrap.to_owned(),
        topic: topic.clone(),
        partitions: 1,
        producers: 1,
        consumers: 1,
        message_bytes: 0,
        batch_bytes: 1_000_000,
        linger_ms: 5,
        acks: "all".into(),
        compression: "none".into(),
        idempotence: false,
        duration: Duration::from_secs(3600),
        messages: None,
        rate: None,
    };
    ensure_topic(&cfg)?;
    let producer: BaseProducer = producer_config(&cfg).create()?;
    let started = Instant::now();
    let mut buf = Vec::with_capacity(512);
    for (i, e) in weir_pipeline::nexmark::generator(rate).take(events).enumerate() {
        buf.clear();
        serde_json::to_writer(&mut buf, &weir_pipeline::nexmark::to_event(&e, i as i64).value)
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        send_waiting(&producer, BaseRecord::<(), [u8]>::to(&topic).payload(&buf[..]))?;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let produce_secs = started.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for q in queries {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("nexmark-{q}-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "16777216")
            .create()?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)?;
        c.assign(&tpl)?;
        let mut query = weir_pipeline::nexmark::Query::new(q, weir_pipeline::nexmark::Output::default())
            .map_err(|e| BenchError::Setup(format!("{q}: {e}")))?;
        let mut seen = 0usize;
        let mut clock: Option<Instant> = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        while seen < events {
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!("{q}: read {seen} of {events} events in 600 s")));
            }
            let Some(m) = c.poll(Duration::from_millis(100)) else { continue };
            let m = m?;
            clock.get_or_insert_with(Instant::now);
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())
                .map_err(|e| BenchError::Setup(format!("offset {}: {e}", m.offset())))?;
            let ev = weir_pipeline::nexmark::from_json(value, m.offset())
                .ok_or_else(|| BenchError::Setup(format!("offset {}: no date_time", m.offset())))?;
            query.push(ev).map_err(|e| BenchError::Setup(format!("{q}: {e}")))?;
            seen += 1;
        }
        query.finish();
        let secs = clock.map_or(0.0, |c| c.elapsed().as_secs_f64());
        out.push(NexmarkReport {
            query: (*q).to_owned(),
            mode: "via-topic",
            events: events as u64,
            outputs: query.output.count,
            seconds: secs,
        });
    }
    Ok((produce_secs, out))
}
