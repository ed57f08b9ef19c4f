//! YAML pipeline specs with CEL expressions (filter, map, key_by), e.g.
//!
//! ```yaml
//! name: paid-order-sums
//! source: { jsonl: orders.jsonl, time_field: timestamp, key_field: customer }
//! steps:
//!   - filter: "event.status == 'paid'"
//!   - map: "{'customer': event.customer, 'amount': event.amount * 100}"
//!   - key_by: "event.customer"
//!   - dedup: { horizon: 10m }
//! window: { tumbling: 1m, aggregate: sum, field: amount, allowed_lateness: 30s, out_of_orderness: 5s }
//! sink: { sqlite: out.db, table: sums }
//! dead_letters: { jsonl: late.jsonl }
//! ```
//!
//! Inside expressions the event's JSON value is `event`, its key `key` and its time `ts`.
//! Validation compiles every expression and reports errors with the line they are on.

use crate::jsonl::JsonlFormat;
use crate::kafka::{DeadLetterOut, KafkaSource, RunConfig, SinkErrorPolicy, StartFrom};
use crate::sink::{Batch, CheckpointDir, JsonlSink, Sink};
use serde::Deserialize;
use std::sync::Arc;
use weir_stream::aggregate::Aggregate;
use weir_stream::event::Event;
use weir_stream::pipeline::{Pipeline, PipelineBuilder};
use weir_stream::window::Window;
use weir_stream::WindowSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    pub source: SourceSpec,
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    pub window: Option<WindowYaml>,
    pub sink: SinkSpec,
    pub dead_letters: Option<DeadLetterSpec>,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// `retry` (default: wait with backoff) or `dead_letter` (skip what the sink refuses).
    #[serde(default)]
    pub on_sink_error: SinkErrorPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A JSON Lines file (a bounded input).
    pub jsonl: Option<String>,
    /// A topic read through a consumer group.
    pub kafka: Option<KafkaSourceYaml>,
    /// Field with the event time in ms. Default: `timestamp` for JSON Lines, the record's
    /// timestamp for Kafka.
    pub time_field: Option<String>,
    /// Field with the key. Default: `key` for JSON Lines, the record's key for Kafka.
    pub key_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceYaml {
    pub brokers: String,
    pub topic: String,
    /// Consumer group; default: the pipeline's name.
    pub group: Option<String>,
    /// Extra librdkafka consumer properties.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Directory for checkpoints of sinks that are not databases (default `.weir-checkpoints`
    /// next to the spec). Database sinks keep them in their `weir_checkpoints` table.
    pub dir: Option<String>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self { interval: default_interval(), dir: None }
    }
}

fn default_interval() -> String {
    "5s".into()
}

/// One step: exactly one of its fields is set (`- filter: "..."`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub filter: Option<String>,
    pub map: Option<String>,
    /// A CEL expression returning a list: each element becomes an event (same key and time).
    pub flat_map: Option<String>,
    pub key_by: Option<String>,
    pub dedup: Option<DedupSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    pub horizon: String,
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_max_keys() -> usize {
    1_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowYaml {
    pub tumbling: Option<String>,
    pub sliding: Option<SlidingYaml>,
    pub session: Option<String>,
    pub aggregate: String,
    pub field: Option<String>,
    #[serde(default)]
    pub allowed_lateness: Option<String>,
    #[serde(default)]
    pub out_of_orderness: Option<String>,
    #[serde(default)]
    pub early_updates: bool,
    #[serde(default = "default_max_windows")]
    pub max_open_windows: usize,
}

fn default_max_windows() -> usize {
    1_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlidingYaml {
    pub size: String,
    pub slide: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    pub sqlite: Option<String>,
    /// A libpq-style connection string, e.g. `host=127.0.0.1 user=postgres dbname=app`.
    pub postgres: Option<String>,
    pub table: Option<String>,
    pub jsonl: Option<String>,
    pub kafka: Option<KafkaSinkYaml>,
    #[serde(default)]
    pub stdout: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkYaml {
    pub topic: String,
    /// Default: the source's brokers.
    pub brokers: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    pub jsonl: Option<String>,
    pub topic: Option<String>,
    /// Default: the source's brokers.
    pub brokers: Option<String>,
}

/// A spec error with the line of the YAML it is about (1-based), when known.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct SpecError {
    pub line: Option<usize>,
    pub message: String,
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Parses `30s`, `5m`, `2h`, `1d`, `250ms` or plain milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    Some(match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return None,
    })
}

/// A compiled CEL expression over `event`, `key` and `ts`.
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<cel::Program>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Expr {
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = cel::Program::compile(source).map_err(|e| e.to_string())?;
        Ok(Self { source: source.to_owned(), program: Arc::new(program) })
    }

    /// Evaluates against an event; errors (missing fields, wrong types) come back as text.
    pub fn eval(&self, ev: &Event) -> Result<serde_json::Value, String> {
        thread_local! {
            // Building CEL's standard library is far dearer than evaluating an expression:
            // one root context per thread, a cheap child scope per event.
            static ROOT: cel::Context<'static, 'static> = cel::Context::default();
        }
        ROOT.with(|root| {
            let mut ctx = root.new_inner_scope();
            ctx.add_variable_from_value("event", json_to_cel(&ev.value));
            ctx.add_variable_from_value("key", ev.key.as_ref().map_or(cel::Value::Null, |k| k.clone().into()));
            ctx.add_variable_from_value("ts", cel::Value::Int(ev.timestamp_ms));
            let v = self.program.execute(&ctx).map_err(|e| e.to_string())?;
            v.json().map_err(|e| e.to_string())
        })
    }
}

/// JSON to CEL, with every integer that fits in i64 as `int` (CEL's default integer type), so
/// `event.amount * 100` works on JSON's `12` (serde would make it a `uint`, and CEL refuses
/// `uint * int`).
fn json_to_cel(v: &serde_json::Value) -> cel::Value {
    use serde_json::Value as J;
    match v {
        J::Null => cel::Value::Null,
        J::Bool(b) => cel::Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => s.clone().into(),
        J::Array(a) => cel::Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        J::Object(o) => {
            let map: std::collections::HashMap<String, cel::Value> =
                o.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect();
            map.into()
        }
    }
}

/// A validated spec: the pipeline plus where to read and write.
pub struct Compiled {
    pub spec: Spec,
    text: String,
    pub pipeline: Pipeline,
}

impl Compiled {
    /// Another pipeline from the same (already validated) spec: one per source partition.
    pub fn new_pipeline(&self) -> Result<Pipeline, String> {
        self.spec.build_pipeline(&self.text).map_err(|e| e.to_string())
    }
}

impl Spec {
    /// Parses and validates YAML text; every error names its line.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        serde_norway::from_str(text)
            .map_err(|e| SpecError { line: e.location().map(|l| l.line()), message: e.to_string() })
    }

    /// Validates the whole spec and compiles its expressions and window into a pipeline.
    pub fn compile(self, text: &str) -> Result<Compiled, SpecError> {
        let err = |needle: &str, message: String| SpecError { line: line_of(text, needle), message };
        let pipeline = self.build_pipeline(text)?;
        let src = &self.source;
        if src.jsonl.is_some() == src.kafka.is_some() {
            return Err(err("source:", "source needs exactly one of jsonl, kafka".into()));
        }
        let sink = &self.sink;
        let kinds =
            [sink.sqlite.is_some(), sink.postgres.is_some(), sink.jsonl.is_some(), sink.kafka.is_some(), sink.stdout];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(err("sink:", "sink needs exactly one of sqlite, postgres, jsonl, kafka, stdout".into()));
        }
        if (sink.sqlite.is_some() || sink.postgres.is_some()) && self.window.is_none() {
            return Err(err("sink:", "database sinks store window results: add a window".into()));
        }
        let brokers = src.kafka.as_ref().map(|k| k.brokers.clone());
        if let Some(k) = &sink.kafka {
            if k.brokers.is_none() && brokers.is_none() {
                return Err(err("kafka:", "the kafka sink needs brokers (the source is not kafka)".into()));
            }
        }
        if let Some(d) = &self.dead_letters {
            if d.jsonl.is_some() == d.topic.is_some() {
                return Err(err("dead_letters:", "dead_letters needs exactly one of jsonl, topic".into()));
            }
            if d.topic.is_some() && d.brokers.is_none() && brokers.is_none() {
                return Err(err("dead_letters:", "a dead-letter topic needs brokers (the source is not kafka)".into()));
            }
        }
        let interval = &self.checkpoint.interval;
        if parse_duration_ms(interval).is_none_or(|ms| ms <= 0) {
            return Err(err("interval:", format!("checkpoint interval {interval:?} is not a positive duration")));
        }
        Ok(Compiled { spec: self, text: text.to_owned(), pipeline })
    }

    /// Brokers for a sink or dead-letter topic: its own, else the Kafka source's (validation
    /// makes sure one exists).
    fn brokers<'a>(&'a self, own: Option<&'a str>) -> &'a str {
        own.or(self.source.kafka.as_ref().map(|k| k.brokers.as_str())).unwrap_or_default()
    }

    /// Compiles expressions and windows into a pipeline.
    fn build_pipeline(&self, text: &str) -> Result<Pipeline, SpecError> {
        let err = |needle: &str, message: String| SpecError { line: line_of(text, needle), message };
        let mut b: PipelineBuilder = Pipeline::builder();
        for step in &self.steps {
            let set = [
                step.filter.is_some(),
                step.map.is_some(),
                step.flat_map.is_some(),
                step.key_by.is_some(),
                step.dedup.is_some(),
            ];
            if set.iter().filter(|x| **x).count() != 1 {
                return Err(err(
                    "steps:",
                    "each step needs exactly one of filter, map, flat_map, key_by, dedup".into(),
                ));
            }
            b = match step {
                StepSpec { filter: Some(src), .. } => {
                    let e = Expr::compile(src).map_err(|m| err(src, format!("filter {src:?}: {m}")))?;
                    // A failure (missing field, wrong type) dead-letters the event.
                    b.try_filter(move |ev| match e.eval(ev)? {
                        serde_json::Value::Bool(keep) => Ok(keep),
                        other => Err(format!("filter returned {other}, not a bool")),
                    })
                }
                StepSpec { map: Some(src), .. } => {
                    let e = Expr::compile(src).map_err(|m| err(src, format!("map {src:?}: {m}")))?;
                    b.try_map(move |mut ev| match e.eval(&ev) {
                        Ok(v) => {
                            ev.value = v;
                            Ok(ev)
                        }
                        Err(detail) => Err((ev, detail)),
                    })
                }
                StepSpec { flat_map: Some(src), .. } => {
                    let e = Expr::compile(src).map_err(|m| err(src, format!("flat_map {src:?}: {m}")))?;
                    b.try_flat_map(move |ev, out| match e.eval(&ev) {
                        Ok(serde_json::Value::Array(items)) => {
                            out.extend(items.into_iter().map(|value| Event { value, key: ev.key.clone(), ..ev }));
                            Ok(())
                        }
                        Ok(other) => Err((ev, format!("flat_map returned {other}, not a list"))),
                        Err(detail) => Err((ev, detail)),
                    })
                }
                StepSpec { key_by: Some(src), .. } => {
                    let e = Expr::compile(src).map_err(|m| err(src, format!("key_by {src:?}: {m}")))?;
                    b.try_map(move |mut ev| match e.eval(&ev) {
                        Ok(serde_json::Value::String(s)) => {
                            ev.key = Some(s);
                            Ok(ev)
                        }
                        Ok(serde_json::Value::Null) => {
                            ev.key = None;
                            Ok(ev)
                        }
                        Ok(other) => {
                            ev.key = Some(other.to_string());
                            Ok(ev)
                        }
                        Err(detail) => Err((ev, detail)),
                    })
                }
                StepSpec { dedup: Some(DedupSpec { horizon, max_keys }), .. } => {
                    let h = parse_duration_ms(horizon)
                        .ok_or_else(|| err(horizon, format!("dedup horizon {horizon:?} is not a duration")))?;
                    b.dedup(h, *max_keys)
                }
                _ => unreachable!("exactly one field is set, checked above"),
            };
        }
        if let Some(w) = &self.window {
            let dur =
                |s: &str| parse_duration_ms(s).ok_or_else(|| err(s, format!("{s:?} is not a duration (e.g. 30s, 5m)")));
            let window = match (&w.tumbling, &w.sliding, &w.session) {
                (Some(t), None, None) => Window::Tumbling { size_ms: dur(t)? },
                (None, Some(s), None) => Window::Sliding { size_ms: dur(&s.size)?, slide_ms: dur(&s.slide)? },
                (None, None, Some(g)) => Window::Session { gap_ms: dur(g)? },
                _ => return Err(err("window:", "window needs exactly one of tumbling, sliding, session".into())),
            };
            let aggregate = match w.aggregate.as_str() {
                "count" => Aggregate::Count,
                "sum" => Aggregate::Sum,
                "min" => Aggregate::Min,
                "max" => Aggregate::Max,
                "avg" => Aggregate::Avg,
                "count_distinct" => Aggregate::CountDistinct,
                other => return Err(err(&format!("aggregate: {other}"), format!("unknown aggregate {other:?}"))),
            };
            if let Some(o) = &w.out_of_orderness {
                b = b.out_of_orderness(dur(o)?);
            }
            let lateness = w.allowed_lateness.as_deref().map(dur).transpose()?.unwrap_or(0);
            b = b.window(WindowSpec {
                window,
                aggregate,
                field: w.field.clone(),
                allowed_lateness_ms: lateness,
                early_updates: w.early_updates,
                max_open_windows: w.max_open_windows,
            });
        }
        b.build().map_err(|e| err("window:", e.to_string()))
    }
}

/// Parses and compiles in one step.
pub fn load(text: &str) -> Result<Compiled, SpecError> {
    Spec::parse(text)?.compile(text)
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    pub events: u64,
    pub results: u64,
    pub dead_letters: u64,
    pub duplicates: u64,
    /// Milliseconds from the first event read to the end (excludes joining the group).
    pub active_ms: u64,
}

/// How `run` reads a Kafka source.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub from: StartFrom,
    pub stop_at_end: bool,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { from: StartFrom::Committed, stop_at_end: false, stop: Default::default() }
    }
}

fn io_err(what: &str, e: &dyn std::fmt::Display) -> SpecError {
    SpecError { line: None, message: format!("{what}: {e}") }
}

/// Opens the spec's sink; relative paths are resolved against `base`.
pub fn open_sink(spec: &Spec, base: &std::path::Path) -> Result<Box<dyn Sink>, SpecError> {
    let dir = base.join(spec.checkpoint.dir.as_deref().unwrap_or(".weir-checkpoints"));
    let checkpoints = || CheckpointDir::open(&dir).map_err(|e| io_err("checkpoints", &e));
    let table = spec.sink.table.as_deref().unwrap_or("results");
    let s = &spec.sink;
    Ok(if let Some(db) = &s.sqlite {
        Box::new(crate::sqlite::SqliteSink::open(&base.join(db), table).map_err(|e| io_err("sqlite sink", &e))?)
    } else if let Some(conninfo) = &s.postgres {
        Box::new(crate::postgres::PostgresSink::open(conninfo, table).map_err(|e| io_err("postgres sink", &e))?)
    } else if let Some(k) = &s.kafka {
        let brokers = spec.brokers(k.brokers.as_deref());
        Box::new(crate::kafka::KafkaSink::new(brokers, &k.topic, checkpoints()?).map_err(|e| io_err("kafka sink", &e))?)
    } else if let Some(p) = &s.jsonl {
        // A JSON Lines source is read whole on every run: its output file starts empty.
        let truncate = spec.source.jsonl.is_some();
        Box::new(JsonlSink::file(&base.join(p), checkpoints()?, truncate).map_err(|e| io_err("jsonl sink", &e))?)
    } else {
        Box::new(JsonlSink::stdout(checkpoints()?))
    })
}

/// Opens the spec's dead-letter output (stderr when none is set).
pub fn open_dead_letters(spec: &Spec, base: &std::path::Path) -> Result<DeadLetterOut, SpecError> {
    let Some(d) = &spec.dead_letters else { return Ok(DeadLetterOut::Stderr) };
    if let Some(topic) = &d.topic {
        let brokers = spec.brokers(d.brokers.as_deref());
        let p = crate::kafka::KafkaProducer::new(brokers, topic).map_err(|e| io_err("dead-letter topic", &e))?;
        return Ok(DeadLetterOut::Topic(p));
    }
    let path = base.join(d.jsonl.as_deref().unwrap_or_default());
    DeadLetterOut::file(&path, spec.source.jsonl.is_some()).map_err(|e| io_err("dead letters", &e))
}

/// Runs a compiled spec: a JSON Lines source to its end (closing every window), a Kafka
/// source until stopped (or to its end with `stop_at_end`). Relative paths are resolved
/// against `base`.
pub fn run(compiled: Compiled, base: &std::path::Path, opts: &RunOptions) -> Result<RunStats, SpecError> {
    let mut sink = open_sink(&compiled.spec, base)?;
    let mut dead = open_dead_letters(&compiled.spec, base)?;
    let spec = &compiled.spec;
    if let Some(k) = &spec.source.kafka {
        let source = KafkaSource {
            brokers: k.brokers.clone(),
            topic: k.topic.clone(),
            group: k.group.clone().unwrap_or_else(|| spec.name.clone()),
            properties: k.properties.clone(),
            time_field: spec.source.time_field.clone(),
            key_field: spec.source.key_field.clone(),
        };
        let cfg = RunConfig {
            name: spec.name.clone(),
            checkpoint_interval: std::time::Duration::from_millis(
                parse_duration_ms(&spec.checkpoint.interval).unwrap_or(5000).max(1) as u64,
            ),
            policy: spec.on_sink_error,
            from: opts.from,
            stop_at_end: opts.stop_at_end,
            stop: opts.stop.clone(),
            max_pending: 100_000,
        };
        let make = || compiled.new_pipeline();
        return crate::kafka::run(&source, &make, sink.as_mut(), &mut dead, &cfg).map_err(|e| io_err("pipeline", &e));
    }
    let jsonl = spec.source.jsonl.as_deref().unwrap_or_default();
    let format = JsonlFormat {
        time_field: spec.source.time_field.clone().unwrap_or_else(|| "timestamp".into()),
        key_field: spec.source.key_field.clone().unwrap_or_else(|| "key".into()),
    };
    let input = std::fs::File::open(base.join(jsonl)).map_err(|e| io_err(jsonl, &e))?;
    let mut driver = weir_stream::TestDriver::new(compiled.pipeline);
    let mut stats = RunStats::default();
    for parsed in format.read_all(std::io::BufReader::new(input)).map_err(|e| io_err("reading the source", &e))? {
        stats.events += 1;
        match parsed {
            Ok(ev) => driver.push(ev).map_err(|e| io_err("pipeline", &e))?,
            Err(d) => {
                stats.dead_letters += 1;
                dead.write(jsonl, &d).map_err(|e| io_err("dead letters", &e))?;
            }
        }
    }
    // A bounded input is complete: close every window.
    driver.advance_watermark(i64::MAX / 2);
    let results = driver.final_results();
    stats.results = results.len() as u64;
    stats.duplicates = driver.duplicates();
    for d in driver.dead_letters() {
        stats.dead_letters += 1;
        dead.write(jsonl, d).map_err(|e| io_err("dead letters", &e))?;
    }
    let batch = Batch { results: &results, events: driver.events(), checkpoints: &[] };
    crate::kafka::write_with_policy(sink.as_mut(), &batch, &mut dead, spec.on_sink_error, &opts.stop)
        .map_err(|e| io_err("sink", &e))?;
    dead.flush().map_err(|e| io_err("dead letters", &e))?;
    Ok(stats)
}
