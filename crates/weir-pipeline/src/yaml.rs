//! The YAML front end: pipeline specs with CEL expressions, compiled to a weir-stream
//! pipeline. A spec is a chain of steps; windows are steps too, and their results are events
//! for the steps after them, so stages chain (steps → window → steps → window …):
//!
//! ```yaml
//! name: hot-auctions
//! source: { jsonl: bids.jsonl, time: "event.Bid.date_time" }
//! out_of_orderness: 1s
//! steps:
//!   - filter: "has(event.Bid)"
//!   - map: "{'auction': event.Bid.auction, 'price': event.Bid.price}"
//!   - key_by: "event.auction"
//!   - window: { sliding: { size: 10s, slide: 2s }, aggregates: [ { bids: count }, { top: "max(price)" } ] }
//!   - key_by: "string(event.window_start)"
//!   - window: { tumbling: 2s, top_n: { n: 1, by: bids } }
//! sink: { jsonl: hot.jsonl }
//! ```
//!
//! Inside expressions the event's JSON value is `event`, its key `key` and its time `ts`.
//! Validation compiles every expression and reports errors with the line they are on.
//!
//! Partitioning: a stateful step (dedup, window) must see every event of a key. Where the key
//! may be spread over several source partitions — after a `key_by`, or at the first stateful
//! step over a Kafka topic not declared `partitioned_by_key` — the compiler inserts a shuffle:
//! the runner sends the events through a repartition topic keyed by the new key.

use crate::expr_check::Expect;
use crate::kafka::CheckpointTopic;
use crate::kafka::{DeadLetterOut, KafkaSource, KafkaSourceConfig, SinkErrorPolicy, SourceTopic, StartFrom};
pub use crate::runner::RunStats;
use crate::runner::{RunConfig, Source};
use crate::sink::{CheckpointDir, CheckpointStore, JsonlSink, Sink};
use crate::source::{JsonlSource, NexmarkSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_stream::aggregate::Aggregate;
use weir_stream::event::Event;
use weir_stream::pipeline::{Pipeline, PipelineBuilder};
use weir_stream::window::Window;
use weir_stream::{JoinKind, JoinSpec, NamedAggregate, Side, TopNSpec, WindowSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    /// The one source (or `sources`).
    pub source: Option<SourceSpec>,
    /// Several sources by name (all topics of one cluster, or all files): a join side can be
    /// a source's name (`left: orders`), and events of every source flow through the steps.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSpec>,
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// A last window step (the form of single-window specs).
    pub window: Option<WindowYaml>,
    /// Watermark = max event time seen per source partition minus this (default 0).
    pub out_of_orderness: Option<String>,
    /// A source partition silent this long stops holding the watermark back (default 60s).
    pub idle_timeout: Option<String>,
    pub sink: SinkSpec,
    pub dead_letters: Option<DeadLetterSpec>,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// `retry` (default: wait with backoff) or `dead_letter` (skip what the sink refuses).
    #[serde(default)]
    pub on_sink_error: SinkErrorPolicy,
    #[serde(default)]
    pub repartition: RepartitionSpec,
}

/// Repartition topics (`<pipeline>-<stage>-repartition`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepartitionSpec {
    /// Partitions of each repartition topic; default: the source topic's.
    pub partitions: Option<i32>,
}

/// Where events come from, and how a record becomes an event.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawSource")]
pub struct SourceSpec {
    pub kind: SourceKind,
    pub time: TimeFrom,
    pub key: KeyFrom,
}

#[derive(Debug)]
pub enum SourceKind {
    /// A JSON Lines file (a bounded input).
    Jsonl(String),
    /// A topic read through a consumer group.
    Kafka(KafkaSourceYaml),
    /// The Nexmark generator (bounded), events as the `nexmark` crate serializes them.
    Nexmark(NexmarkYaml),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    jsonl: Option<String>,
    kafka: Option<KafkaSourceYaml>,
    nexmark: Option<NexmarkYaml>,
    /// Top-level field with the event time in ms.
    time_field: Option<String>,
    /// Top-level field with the key.
    key_field: Option<String>,
    /// Expression for the event time in ms (e.g. `event.Bid.date_time`).
    time: Option<String>,
    /// Expression for the key (e.g. `event.customer`).
    key: Option<String>,
}

/// How an event's time is found.
#[derive(Debug, Clone)]
pub enum TimeFrom {
    /// The Kafka record's timestamp.
    RecordTimestamp,
    /// A field path in the event (`time_field`); missing is an error.
    Field(Vec<String>),
    Expr(Expr),
}

/// How an event's key is found.
#[derive(Debug, Clone)]
pub enum KeyFrom {
    /// The Kafka record's key.
    RecordKey,
    /// A field path in the event (`key_field`); missing means no key.
    Field(Vec<String>),
    Expr(Expr),
}

impl TryFrom<RawSource> for SourceSpec {
    type Error = String;
    fn try_from(r: RawSource) -> Result<Self, String> {
        let kind = match (r.jsonl, r.kafka, r.nexmark) {
            (Some(p), None, None) => SourceKind::Jsonl(p),
            (None, Some(k), None) => SourceKind::Kafka(k),
            (None, None, Some(n)) => SourceKind::Nexmark(n),
            _ => return Err("source needs exactly one of jsonl, kafka, nexmark".into()),
        };
        let path = |f: String| vec![f];
        let compile = |what: &str, src: String| {
            crate::expr_check::check(&src, &VARS, Expect::Any).map_err(|e| format!("source {what} {src:?}: {e}"))?;
            Expr::compile(&src).map_err(|e| format!("source {what} {src:?}: {e}"))
        };
        let bounded = !matches!(kind, SourceKind::Kafka(_));
        let time = match (r.time_field, r.time) {
            (Some(_), Some(_)) => return Err("source: use time_field or time, not both".into()),
            (Some(f), None) => TimeFrom::Field(path(f)),
            (None, Some(e)) => TimeFrom::Expr(compile("time", e)?),
            (None, None) if matches!(kind, SourceKind::Nexmark(_)) => TimeFrom::Expr(compile(
                "time",
                "has(event.Bid) ? event.Bid.date_time : has(event.Auction) ? event.Auction.date_time : event.Person.date_time".into(),
            )?),
            (None, None) if bounded => TimeFrom::Field(path("timestamp".into())),
            (None, None) => TimeFrom::RecordTimestamp,
        };
        let key = match (r.key_field, r.key) {
            (Some(_), Some(_)) => return Err("source: use key_field or key, not both".into()),
            (Some(f), None) => KeyFrom::Field(path(f)),
            (None, Some(e)) => KeyFrom::Expr(compile("key", e)?),
            (None, None) if bounded => KeyFrom::Field(path("key".into())),
            (None, None) => KeyFrom::RecordKey,
        };
        Ok(SourceSpec { kind, time, key })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceYaml {
    pub brokers: String,
    pub topic: String,
    /// Consumer group; default: the pipeline's name.
    pub group: Option<String>,
    /// The topic is partitioned by the source's key (the record key, or `key`/`key_field`):
    /// all records of a key are in one partition, so stateful steps before any `key_by` need
    /// no repartition topic. Default false (a shuffle is inserted, which is always correct).
    #[serde(default)]
    pub partitioned_by_key: bool,
    /// Extra librdkafka consumer properties.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkYaml {
    /// Events to generate.
    pub events: u64,
    /// Events per second of event time (Nexmark's default 10,000).
    #[serde(default = "default_rate")]
    pub rate: usize,
}

fn default_rate() -> usize {
    10_000
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

/// One step (`- filter: "..."`, `- window: {...}`): exactly one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawStep")]
pub enum StepSpec {
    Filter(String),
    Map(String),
    /// A CEL expression returning a list: each element becomes an event (same key and time).
    FlatMap(String),
    KeyBy(String),
    Dedup(DedupSpec),
    Window(WindowYaml),
    Join(JoinYaml),
}

/// An inner join of two sides of the stream: `left`/`right` say which events are on each side,
/// `left_key`/`right_key` what they join on; one of `window`, `interval`, `table`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinYaml {
    pub left: String,
    pub left_key: String,
    pub right: String,
    pub right_key: String,
    /// Both in the same tumbling window of this size.
    pub window: Option<String>,
    /// `left.time` within `[right.time + lower, right.time + upper]` (durations, may be negative).
    pub interval: Option<IntervalYaml>,
    /// The right side is a table (rows per key over event time; a null value, e.g. a Kafka
    /// tombstone, deletes the key): each left event joins the key's row as of its time.
    #[serde(default)]
    pub table: bool,
    /// A regular join: every left event with every right event of its key, whenever they
    /// arrive (insert-only streams, Flink's regular join); state is kept (up to `max_state`).
    #[serde(default)]
    pub unbounded: bool,
    pub allowed_lateness: Option<String>,
    #[serde(default = "default_max_windows")]
    pub max_state: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalYaml {
    pub lower: String,
    /// A duration; or `until`: a CEL expression over the right event giving the latest left
    /// time it pairs with (e.g. an auction's `expires`).
    pub upper: Option<String>,
    pub until: Option<String>,
}

/// A step as written: a one-key map (serde_norway reads enums only from YAML tags).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    filter: Option<String>,
    map: Option<String>,
    flat_map: Option<String>,
    key_by: Option<String>,
    dedup: Option<DedupSpec>,
    window: Option<WindowYaml>,
    join: Option<JoinYaml>,
}

impl TryFrom<RawStep> for StepSpec {
    type Error = String;
    fn try_from(r: RawStep) -> Result<Self, String> {
        let mut kinds = [
            r.filter.map(StepSpec::Filter),
            r.map.map(StepSpec::Map),
            r.flat_map.map(StepSpec::FlatMap),
            r.key_by.map(StepSpec::KeyBy),
            r.dedup.map(StepSpec::Dedup),
            r.window.map(StepSpec::Window),
            r.join.map(StepSpec::Join),
        ]
        .into_iter()
        .flatten();
        match (kinds.next(), kinds.next()) {
            (Some(step), None) => Ok(step),
            _ => Err("each step needs exactly one of filter, map, flat_map, key_by, dedup, window, join".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    pub horizon: String,
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_max_keys() -> usize {
    1_000_000
}

/// A window step: its shape, what it computes, and its lateness.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWindow")]
pub struct WindowYaml {
    pub window: Window,
    /// `until`: the field with each key's closing time.
    pub end_field: Option<String>,
    pub output: WindowOutput,
    pub allowed_lateness_ms: i64,
    /// The spec-wide out-of-orderness, given here (the form of single-window specs).
    pub out_of_orderness_ms: Option<i64>,
    pub early_updates: bool,
    pub max_open_windows: usize,
}

/// What a window computes.
#[derive(Debug, Clone)]
pub enum WindowOutput {
    /// Named aggregates (the first is the primary one).
    Aggregates(Vec<(String, Aggregate, Option<String>)>),
    /// The N best events per key and window, ties kept.
    TopN { n: usize, by: String, descending: bool },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    tumbling: Option<String>,
    sliding: Option<SlidingYaml>,
    session: Option<String>,
    /// One window per key, open until the time in this field (inclusive), e.g. `expires`.
    until: Option<String>,
    /// One window per key over all time: closed by the end of a bounded input only.
    #[serde(default)]
    global: bool,
    /// One aggregate, output as `value`.
    aggregate: Option<String>,
    field: Option<String>,
    /// Several named aggregates: `[ { bids: count }, { top: "max(price)" } ]`.
    aggregates: Option<Vec<std::collections::BTreeMap<String, String>>>,
    top_n: Option<TopNYaml>,
    allowed_lateness: Option<String>,
    out_of_orderness: Option<String>,
    #[serde(default)]
    early_updates: bool,
    #[serde(default = "default_max_windows")]
    max_open_windows: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopNYaml {
    #[serde(default = "one")]
    n: usize,
    by: String,
    /// `desc` (default: the highest first) or `asc`.
    #[serde(default)]
    order: Order,
}

fn one() -> usize {
    1
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Order {
    #[default]
    Desc,
    Asc,
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

fn duration(s: &str) -> Result<i64, String> {
    parse_duration_ms(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 30s, 5m)"))
}

fn aggregate_named(name: &str) -> Result<Aggregate, String> {
    Ok(match name {
        "count" => Aggregate::Count,
        "sum" => Aggregate::Sum,
        "min" => Aggregate::Min,
        "max" => Aggregate::Max,
        "avg" => Aggregate::Avg,
        "count_distinct" => Aggregate::CountDistinct,
        other => return Err(format!("unknown aggregate {other:?} (count, sum, min, max, avg, count_distinct)")),
    })
}

/// `count`, or `sum(field)`, `max(field)`, …
fn aggregate_call(text: &str) -> Result<(Aggregate, Option<String>), String> {
    let text = text.trim();
    match text.split_once('(') {
        None => {
            let a = aggregate_named(text)?;
            if a.needs_field() {
                return Err(format!("aggregate {text} needs a field: {text}(field)"));
            }
            Ok((a, None))
        }
        Some((name, rest)) => {
            let field = rest.strip_suffix(')').ok_or_else(|| format!("{text:?}: expected name(field)"))?.trim();
            let a = aggregate_named(name.trim())?;
            let field = (!field.is_empty()).then(|| field.to_owned());
            if a.needs_field() && field.is_none() {
                return Err(format!("aggregate {name} needs a field: {name}(field)"));
            }
            Ok((a, field))
        }
    }
}

impl TryFrom<RawWindow> for WindowYaml {
    type Error = String;
    fn try_from(w: RawWindow) -> Result<Self, String> {
        let window = match (&w.tumbling, &w.sliding, &w.session, &w.until, w.global) {
            (Some(t), None, None, None, false) => Window::Tumbling { size_ms: duration(t)? },
            (None, Some(s), None, None, false) => {
                Window::Sliding { size_ms: duration(&s.size)?, slide_ms: duration(&s.slide)? }
            }
            (None, None, Some(g), None, false) => Window::Session { gap_ms: duration(g)? },
            (None, None, None, Some(_), false) => Window::Until,
            (None, None, None, None, true) => Window::Global,
            _ => return Err("window needs exactly one of tumbling, sliding, session, until, global".into()),
        };
        window.validate().map_err(str::to_owned)?;
        let output = match (w.aggregate, w.aggregates, w.top_n) {
            (Some(a), None, None) => {
                let a = aggregate_named(&a)?;
                if a.needs_field() && w.field.is_none() {
                    return Err("this aggregate needs a field".into());
                }
                WindowOutput::Aggregates(vec![("value".into(), a, w.field)])
            }
            (None, Some(list), None) if w.field.is_none() => {
                let mut out = Vec::new();
                for entry in list {
                    let mut it = entry.into_iter();
                    let (Some((name, call)), None) = (it.next(), it.next()) else {
                        return Err("each entry of aggregates is one `name: aggregate(field)`".into());
                    };
                    if out.iter().any(|(n, _, _)| *n == name) {
                        return Err(format!("aggregate name {name:?} is used twice"));
                    }
                    let (a, field) = aggregate_call(&call)?;
                    out.push((name, a, field));
                }
                if out.is_empty() {
                    return Err("aggregates is empty".into());
                }
                WindowOutput::Aggregates(out)
            }
            (None, None, Some(t)) if w.field.is_none() => {
                WindowOutput::TopN { n: t.n, by: t.by, descending: matches!(t.order, Order::Desc) }
            }
            _ => return Err("window needs exactly one of aggregate (with field), aggregates, top_n".into()),
        };
        if matches!(output, WindowOutput::TopN { .. }) && w.early_updates {
            return Err("top_n has no early updates".into());
        }
        if matches!(output, WindowOutput::TopN { .. }) && matches!(window, Window::Until | Window::Global) {
            return Err("top_n needs a tumbling or sliding window".into());
        }
        Ok(WindowYaml {
            window,
            end_field: w.until,
            output,
            allowed_lateness_ms: w.allowed_lateness.as_deref().map(duration).transpose()?.unwrap_or(0),
            out_of_orderness_ms: w.out_of_orderness.as_deref().map(duration).transpose()?,
            early_updates: w.early_updates,
            max_open_windows: w.max_open_windows,
        })
    }
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
    /// Lines are event values alone (SQL rows); set by the SQL front end.
    #[serde(skip)]
    pub rows: bool,
    /// With `rows`: the table columns of a database sink (the SELECT list).
    #[serde(skip)]
    pub row_columns: Vec<(String, crate::rows::ColumnType)>,
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

/// The line an error message is about: the first line holding something it quotes, else
/// the section it names.
fn locate(text: &str, message: &str) -> Option<usize> {
    let quoted = message.split('"').skip(1).step_by(2).find(|q| !q.is_empty());
    if let Some(line) = quoted.and_then(|q| line_of(text, q)) {
        return Some(line);
    }
    ["window", "step", "source", "sink", "dead_letters", "aggregate", "top_n"]
        .iter()
        .find(|w| message.contains(*w))
        .and_then(|w| line_of(text, w))
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Durations in specs: `30s`, `5m`, `2h`, `1d`, `250ms` or plain milliseconds (the one parser
/// every front end uses).
pub use weir_stream::duration::parse_ms as parse_duration_ms;

/// A compiled CEL expression over `event`, `key` and `ts`.
#[derive(Clone)]
pub struct Expr {
    source: String,
    program: Arc<cel::Program>,
    /// `event.a.b`: read by a JSON lookup instead of a CEL evaluation.
    path: Option<Vec<String>>,
    /// The compiled fast path (`fast_expr`), when the expression is in its subset.
    fast: Option<Arc<crate::fast_expr::Fast>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Expr {
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = cel::Program::compile(source).map_err(|e| e.to_string())?;
        let fast = crate::fast_expr::Fast::compile(program.expression()).map(Arc::new);
        Ok(Self { source: source.to_owned(), program: Arc::new(program), path: event_path(source), fast })
    }

    /// Whether the expression runs on the compiled fast path (`fast_expr`).
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    #[cfg(test)]
    pub(crate) fn fast(&self) -> Option<&crate::fast_expr::Fast> {
        self.fast.as_deref()
    }

    /// A filter's or a predicate's answer; a non-bool result is an error naming `what`.
    pub fn eval_bool(&self, ev: &Event, what: &str) -> Result<bool, String> {
        if let Some(b) = self.fast.as_ref().and_then(|f| f.eval_bool(ev)) {
            return Ok(b);
        }
        match self.lookup(ev) {
            Some(Ok(serde_json::Value::Bool(b))) => Ok(*b),
            Some(Ok(other)) => Err(format!("{what} returned {other}, not a bool")),
            Some(Err(e)) => Err(e),
            None => match self.eval_cel(ev)? {
                serde_json::Value::Bool(b) => Ok(b),
                other => Err(format!("{what} returned {other}, not a bool")),
            },
        }
    }

    /// The value as a key (`key_text`).
    pub fn eval_key(&self, ev: &Event) -> Result<Option<String>, String> {
        if let Some(k) = self.fast.as_ref().and_then(|f| f.eval_key(ev)) {
            return Ok(k);
        }
        match self.lookup(ev) {
            Some(r) => r.map(key_text),
            None => self.eval_cel(ev).map(|v| key_text(&v)),
        }
    }

    /// The value as an event time: an integer, or a number truncated (None: neither).
    pub fn eval_time(&self, ev: &Event) -> Result<Option<i64>, String> {
        if let Some(t) = self.fast.as_ref().and_then(|f| f.eval_time(ev)) {
            return Ok(Some(t));
        }
        match self.lookup(ev) {
            Some(r) => r.map(time_of),
            None => self.eval_cel(ev).map(|v| time_of(&v)),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The value of a plain `event.a.b` expression, borrowed (None: not a plain path).
    pub fn lookup<'e>(&self, ev: &'e Event) -> Option<Result<&'e serde_json::Value, String>> {
        let path = self.path.as_ref()?;
        Some(lookup(&ev.value, path).ok_or_else(|| format!("no such key: {}", self.source)))
    }

    /// Evaluates against an event; errors (missing fields, wrong types) come back as text.
    pub fn eval(&self, ev: &Event) -> Result<serde_json::Value, String> {
        if let Some(v) = self.fast.as_ref().and_then(|f| f.eval_json(ev)) {
            return Ok(v);
        }
        if let Some(v) = self.lookup(ev) {
            return v.cloned();
        }
        self.eval_cel(ev)
    }

    /// `eval` for a step that replaces the event's value: a plain `event.a.b` is moved out of
    /// the event rather than copied.
    pub fn eval_replacing(&self, ev: &mut Event) -> Result<serde_json::Value, String> {
        if let Some(path) = &self.path {
            let mut v = &mut ev.value;
            for p in path {
                match v.get_mut(p.as_str()) {
                    Some(next) => v = next,
                    None => return self.eval(ev),
                }
            }
            return Ok(std::mem::take(v));
        }
        self.eval(ev)
    }

    /// Evaluates with the cel interpreter (what the fast path leaves to it, errors included).
    pub fn eval_cel(&self, ev: &Event) -> Result<serde_json::Value, String> {
        thread_local! {
            // Building CEL's standard library is far dearer than evaluating an expression:
            // one root context per thread, a cheap child scope per event.
            static ROOT: cel::Context<'static, 'static> = crate::cel_env::root();
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

/// An event time from a JSON value: an integer, or a number truncated (None: neither).
pub(crate) fn time_of(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// `event.a.b` as the path `[a, b]`.
fn event_path(source: &str) -> Option<Vec<String>> {
    let rest = source.trim().strip_prefix("event.")?;
    let ident = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
    parts.iter().all(|p| ident(p)).then_some(parts)
}

/// The value at a field path of a JSON object.
pub fn lookup<'v>(mut v: &'v serde_json::Value, path: &[String]) -> Option<&'v serde_json::Value> {
    for p in path {
        v = v.get(p)?;
    }
    Some(v)
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

/// A validated spec, ready to build pipelines (one per task) from.
pub struct Compiled {
    pub spec: Spec,
    text: String,
    /// Stages (shuffles + 1) of the compiled pipeline.
    pub stages: usize,
    /// The output names of the last window, when the pipeline ends in an aggregating window
    /// (database sinks' columns); None when it outputs events.
    pub result_names: Option<Vec<String>>,
}

impl Compiled {
    /// A fresh pipeline from the (already validated) spec.
    pub fn new_pipeline(&self) -> Result<Pipeline, String> {
        self.spec.build_pipeline(&self.text).map_err(|e| e.to_string())
    }

    /// How records of each source become events, in source order.
    pub fn formats(&self) -> Vec<EventFormat> {
        let list = self.spec.source_list();
        let projection = if list.len() == 1 { self.projection().map(Arc::new) } else { None };
        list.iter()
            .map(|(_, s)| EventFormat { time: s.time.clone(), key: s.key.clone(), projection: projection.clone() })
            .collect()
    }

    /// What the pipeline reads of an event before it replaces it, when that is known and the
    /// event is not needed whole (`projection`): the paths of the source's time and key and of
    /// every filter and key_by up to the first map or flat_map, and of that map. None (decode
    /// everything) when an expression reads the event whole or at a computed path, or is not
    /// on the fast path; when a dedup, window or join comes before any map (they keep events,
    /// or shuffle them through a topic); when several sources are read; and when unchanged
    /// events reach a sink that cannot write them as they came (the database sinks).
    pub fn projection(&self) -> Option<crate::projection::Projection> {
        let mut p = crate::projection::Projection::new();
        let reads = |p: &mut crate::projection::Projection, src: &str| {
            let e = Expr::compile(src).ok()?;
            e.fast.as_ref().is_some_and(|f| f.reads(p)).then_some(())
        };
        let list = self.spec.source_list();
        let [(_, source)] = list.as_slice() else { return None };
        match &source.time {
            TimeFrom::RecordTimestamp => {}
            TimeFrom::Field(path) => p.read(path),
            TimeFrom::Expr(e) => reads(&mut p, e.source())?,
        }
        match &source.key {
            KeyFrom::RecordKey => {}
            KeyFrom::Field(path) => p.read(path),
            KeyFrom::Expr(e) => reads(&mut p, e.source())?,
        }
        for step in self.spec.all_steps() {
            match step {
                StepRef::Step(StepSpec::Filter(src) | StepSpec::KeyBy(src)) => reads(&mut p, src)?,
                StepRef::Step(StepSpec::Map(src) | StepSpec::FlatMap(src)) => {
                    reads(&mut p, src)?;
                    return Some(p);
                }
                StepRef::Step(StepSpec::Dedup(_) | StepSpec::Window(_) | StepSpec::Join(_)) | StepRef::Window(_) => {
                    return None
                }
            }
        }
        let sink = &self.spec.sink;
        (sink.sqlite.is_none() && sink.postgres.is_none()).then_some(p)
    }

    /// How records of the (first) source become events.
    pub fn format(&self) -> EventFormat {
        self.formats().into_iter().next().unwrap_or(EventFormat {
            time: TimeFrom::RecordTimestamp,
            key: KeyFrom::RecordKey,
            projection: None,
        })
    }
}

/// How a decoded JSON value becomes an event: its time and its key.
#[derive(Debug, Clone)]
pub struct EventFormat {
    pub time: TimeFrom,
    pub key: KeyFrom,
    /// Decode only these paths of a record, keeping its text (`Compiled::projection`).
    pub projection: Option<Arc<crate::projection::Projection>>,
}

impl EventFormat {
    /// Decodes a record's bytes: only the projection's paths when there is one, with the text
    /// kept for the event (`Event::raw`); the whole value otherwise.
    pub fn decode(&self, bytes: &[u8]) -> Result<(serde_json::Value, Option<Arc<str>>), serde_json::Error> {
        if let Some(p) = &self.projection {
            // Text that is not UTF-8 is no JSON either: serde_json says why below.
            if let Ok(text) = std::str::from_utf8(bytes) {
                return p.decode(text).map(|v| (v, Some(Arc::from(text))));
            }
        }
        serde_json::from_slice(bytes).map(|v| (v, None))
    }

    /// The event for a JSON value read at (partition, offset), with the record's key and
    /// timestamp when the source has them; a dead letter when its time cannot be found.
    pub fn event(
        &self,
        value: serde_json::Value,
        record_key: Option<String>,
        record_ts: Option<i64>,
        partition: i32,
        offset: i64,
    ) -> Result<Event, Box<weir_stream::DeadLetter>> {
        use weir_stream::{DeadLetter, DeadLetterReason};
        let mut ev = Event {
            key: record_key,
            value,
            timestamp_ms: record_ts.unwrap_or(0),
            partition,
            offset,
            source: 0,
            raw: None,
        };
        let dead = |ev: Event, reason| Box::new(DeadLetter { event: ev, reason });
        match &self.time {
            TimeFrom::RecordTimestamp if record_ts.is_none() => {
                let detail = "record has no timestamp".into();
                return Err(dead(ev, DeadLetterReason::Undecodable { detail }));
            }
            TimeFrom::RecordTimestamp => {}
            TimeFrom::Field(path) => match lookup(&ev.value, path).and_then(time_of) {
                Some(t) => ev.timestamp_ms = t,
                None => {
                    let reason = DeadLetterReason::BadField {
                        field: path.join("."),
                        detail: "missing or not an integer".into(),
                    };
                    return Err(dead(ev, reason));
                }
            },
            TimeFrom::Expr(e) => match e.eval_time(&ev) {
                Ok(Some(t)) => ev.timestamp_ms = t,
                Ok(None) => {
                    let reason =
                        DeadLetterReason::BadField { field: e.source.clone(), detail: "not an integer".into() };
                    return Err(dead(ev, reason));
                }
                Err(detail) => return Err(dead(ev, DeadLetterReason::Expression { detail })),
            },
        }
        match &self.key {
            KeyFrom::RecordKey => {}
            KeyFrom::Field(path) => ev.key = lookup(&ev.value, path).and_then(key_text),
            KeyFrom::Expr(e) => match e.eval_key(&ev) {
                Ok(k) => ev.key = k,
                Err(detail) => return Err(dead(ev, DeadLetterReason::Expression { detail })),
            },
        }
        Ok(ev)
    }
}

/// A key from a JSON value: a string as it is, null as no key, anything else as its JSON text.
pub fn key_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Spec {
    /// Parses and validates YAML text; every error names its line.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        serde_norway::from_str(text).map_err(|e| {
            let message = e.to_string();
            let line = match e.location().map(|l| l.line()) {
                // Errors of our own checks while deserializing (a bad duration, two kinds
                // in one step) carry no position: find what they quote.
                None | Some(1) => locate(text, &message).or(e.location().map(|l| l.line())),
                line => line,
            };
            // The line is said once, in front (serde's own " at line L column C" goes).
            let message = match message.rfind(" at line ") {
                Some(i) if line.is_some() && message[i + 9..].contains(" column ") => message[..i].to_owned(),
                _ => message,
            };
            SpecError { line, message }
        })
    }

    /// The steps with the legacy top-level window as the last one.
    fn all_steps(&self) -> impl Iterator<Item = StepRef<'_>> {
        self.steps
            .iter()
            .map(|s| match s {
                StepSpec::Window(w) => StepRef::Window(w),
                other => StepRef::Step(other),
            })
            .chain(self.window.iter().map(StepRef::Window))
    }

    /// The sources in order (their index is `Event::source`): the one `source`, or the named
    /// `sources` in name order.
    pub fn source_list(&self) -> Vec<(&str, &SourceSpec)> {
        match &self.source {
            Some(s) => vec![("source", s)],
            None => self.sources.iter().map(|(n, s)| (n.as_str(), s)).collect(),
        }
    }

    /// The index of the source a join side names, if it names one.
    fn source_named(&self, side: &str) -> Option<u16> {
        if self.source.is_some() {
            return None;
        }
        self.sources.keys().position(|n| n == side.trim()).map(|i| i as u16)
    }

    /// One source, or several that can be read as one partitioned input.
    fn check_sources(&self, text: &str) -> Result<(), SpecError> {
        let err = |needle: &str, message: String| SpecError { line: line_of(text, needle), message };
        match (&self.source, self.sources.len()) {
            (Some(_), 0) => return Ok(()),
            (Some(_), _) => return Err(err("sources:", "use source or sources, not both".into())),
            (None, 0) => return Err(err("name:", "the spec needs a source (or sources)".into())),
            (None, n) if n > 32_768 => return Err(err("sources:", format!("{n} sources: at most 32768"))),
            (None, _) => {}
        }
        let list = self.source_list();
        let (first_name, first) = list[0];
        for &(name, s) in &list[1..] {
            let why = match (&first.kind, &s.kind) {
                (SourceKind::Kafka(a), SourceKind::Kafka(b)) if a.brokers != b.brokers => Some(format!(
                    "source {name} is on {} and source {first_name} on {}: sources of different clusters cannot be                      co-partitioned (one consumer group reads them, and their events meet in repartition topics of                      one cluster)",
                    b.brokers, a.brokers
                )),
                (SourceKind::Kafka(a), SourceKind::Kafka(b)) if a.group != b.group => Some(format!(
                    "sources {first_name} and {name} name different consumer groups: one group reads every source"
                )),
                (SourceKind::Kafka(_), SourceKind::Kafka(_)) | (SourceKind::Jsonl(_), SourceKind::Jsonl(_)) => None,
                (SourceKind::Nexmark(_), _) | (_, SourceKind::Nexmark(_)) => {
                    Some("the nexmark generator is one source: its events are of every kind already".into())
                }
                _ => Some(format!(
                    "sources {first_name} and {name} cannot be co-partitioned: one is a topic, the other a file (read                      all sources from topics of one cluster, or all from files)"
                )),
            };
            if let Some(why) = why {
                return Err(err(name, why));
            }
        }
        Ok(())
    }

    /// Validates the whole spec and compiles its expressions and windows into a pipeline.
    pub fn compile(self, text: &str) -> Result<Compiled, SpecError> {
        let err = |needle: &str, message: String| SpecError { line: line_of(text, needle), message };
        self.check_sources(text)?;
        if self.steps.iter().any(|s| matches!(s, StepSpec::Window(_))) && self.window.is_some() {
            return Err(err("window:", "put the window in steps or at the top level, not both".into()));
        }
        let pipeline = self.build_pipeline(text)?;
        let sink = &self.sink;
        let kinds =
            [sink.sqlite.is_some(), sink.postgres.is_some(), sink.jsonl.is_some(), sink.kafka.is_some(), sink.stdout];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(err("sink:", "sink needs exactly one of sqlite, postgres, jsonl, kafka, stdout".into()));
        }
        if (sink.sqlite.is_some() || sink.postgres.is_some()) && !sink.rows && !pipeline.emits_results() {
            return Err(err(
                "sink:",
                "database sinks store window results: end the pipeline with an aggregating window".into(),
            ));
        }
        let brokers = self.kafka_brokers();
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
        if let Some(p) = self.repartition.partitions {
            if !(1..=10_000).contains(&p) {
                return Err(err("partitions:", format!("repartition partitions {p} must be 1..=10000")));
            }
        }
        let interval = &self.checkpoint.interval;
        if parse_duration_ms(interval).is_none_or(|ms| ms <= 0) {
            return Err(err("interval:", format!("checkpoint interval {interval:?} is not a positive duration")));
        }
        let stages = pipeline.stages();
        let result_names = pipeline.result_names();
        Ok(Compiled { spec: self, text: text.to_owned(), stages, result_names })
    }

    /// The Kafka source's brokers, if the source is Kafka.
    fn kafka_brokers(&self) -> Option<&str> {
        self.source_list().into_iter().find_map(|(_, s)| match &s.kind {
            SourceKind::Kafka(k) => Some(k.brokers.as_str()),
            _ => None,
        })
    }

    /// Brokers for a sink or dead-letter topic: its own, else the Kafka source's (validation
    /// makes sure one exists).
    fn brokers<'a>(&'a self, own: Option<&'a str>) -> &'a str {
        own.or(self.kafka_brokers()).unwrap_or_default()
    }

    /// Compiles expressions and windows into a pipeline, with a shuffle wherever a stateful
    /// step could otherwise see a key spread over several partitions.
    fn build_pipeline(&self, text: &str) -> Result<Pipeline, SpecError> {
        let err = |needle: &str, message: String| SpecError { line: line_of(text, needle), message };
        let dur =
            |s: &str| parse_duration_ms(s).ok_or_else(|| err(s, format!("{s:?} is not a duration (e.g. 30s, 5m)")));
        let mut b: PipelineBuilder = Pipeline::builder();
        let mut out_of_orderness = self.out_of_orderness.as_deref().map(dur).transpose()?;
        if let Some(i) = &self.idle_timeout {
            b = b.idle_timeout(dur(i)?);
        }
        // Whether all events of a key are in one partition at this point of the chain.
        let sources = self.source_list();
        let mut partitioned = match sources[..] {
            [(_, SourceSpec { kind: SourceKind::Kafka(k), .. })] => k.partitioned_by_key,
            // Several topics: a task reads one partition of one of them, so a key's events of
            // different sources are in different tasks until shuffled. (In one process
            // shuffles cost nothing.)
            _ => false,
        };
        // The fields of the events at this point, when a step made them known.
        let mut known: Option<Vec<String>> = None;
        for step in self.all_steps() {
            if let StepRef::Step(StepSpec::Join(j)) = step {
                // Each side keyed by its join key (events of neither side are dropped), then
                // shuffled by it, then joined.
                let named = (self.source_named(&j.left), self.source_named(&j.right));
                let (b2, classify) = join_sides(b, text, j, named, &known)?;
                b = b2.shuffle();
                let kind = match (&j.window, &j.interval, j.table || j.unbounded) {
                    (Some(w), None, false) => JoinKind::Window { size_ms: dur(w)? },
                    (None, None, true) if j.unbounded && !j.table => {
                        JoinKind::Interval { lower_ms: i64::MIN / 4, upper_ms: i64::MAX / 4 }
                    }
                    (None, Some(i), false) => {
                        let signed = |s: &str| match s.trim().strip_prefix('-') {
                            Some(rest) => dur(rest).map(|v| -v),
                            None => dur(s),
                        };
                        let upper_ms = match (&i.upper, &i.until) {
                            (Some(u), None) => signed(u)?,
                            (None, Some(_)) => i64::MAX / 4,
                            _ => {
                                return Err(err(
                                    "interval:",
                                    "a join interval needs exactly one of upper, until".into(),
                                ))
                            }
                        };
                        JoinKind::Interval { lower_ms: signed(&i.lower)?, upper_ms }
                    }
                    (None, None, true) if j.table && !j.unbounded => JoinKind::Table,
                    _ => {
                        return Err(err(
                            "join:",
                            "a join needs exactly one of window, interval, table: true, unbounded: true".into(),
                        ))
                    }
                };
                let allowed_lateness_ms = j.allowed_lateness.as_deref().map(dur).transpose()?.unwrap_or(0);
                let until = match j.interval.as_ref().and_then(|i| i.until.as_ref()) {
                    Some(src) => {
                        let e = compile_checked(text, "join interval until", src, Expect::Any, &known)?;
                        let src = src.clone();
                        Some(Box::new(move |ev: &Event| match e.eval_time(ev)? {
                            Some(t) => Ok(t),
                            None => Err(format!("join interval until {src:?} is not a time")),
                        }) as weir_stream::keyed_join::Until)
                    }
                    None => None,
                };
                b = b.join(JoinSpec { kind, classify, allowed_lateness_ms, max_state: j.max_state, until });
                partitioned = true;
                let mut out = vec!["key".to_owned(), "left".to_owned(), "right".to_owned()];
                if matches!(kind, JoinKind::Window { .. }) {
                    out.extend(["window_start".to_owned(), "window_end".to_owned()]);
                }
                known = Some(out);
                continue;
            }
            let stateful = matches!(step, StepRef::Window(_) | StepRef::Step(StepSpec::Dedup(_)));
            if stateful && !partitioned {
                b = b.shuffle();
                partitioned = true;
            }
            b = match step {
                StepRef::Step(StepSpec::Filter(src)) => {
                    let e = compile_checked(text, "filter", src, Expect::Bool, &known)?;
                    // A failure (missing field, wrong type) dead-letters the event.
                    b.try_filter(move |ev| e.eval_bool(ev, "filter"))
                }
                StepRef::Step(StepSpec::Map(src)) => {
                    let e = compile_checked(text, "map", src, Expect::Any, &known)?;
                    known = crate::expr_check::map_literal_fields(src);
                    b.try_map(move |mut ev| match e.eval_replacing(&mut ev) {
                        Ok(v) => {
                            ev.value = v;
                            Ok(ev)
                        }
                        Err(detail) => Err((ev, detail)),
                    })
                }
                StepRef::Step(StepSpec::FlatMap(src)) => {
                    let e = compile_checked(text, "flat_map", src, Expect::List, &known)?;
                    known = None;
                    b.try_flat_map(move |ev, out| match e.eval(&ev) {
                        Ok(serde_json::Value::Array(items)) => {
                            out.extend(items.into_iter().map(|value| Event {
                                value,
                                key: ev.key.clone(),
                                raw: None,
                                ..ev
                            }));
                            Ok(())
                        }
                        Ok(other) => Err((ev, format!("flat_map returned {other}, not a list"))),
                        Err(detail) => Err((ev, detail)),
                    })
                }
                StepRef::Step(StepSpec::KeyBy(src)) => {
                    let e = compile_checked(text, "key_by", src, Expect::Any, &known)?;
                    partitioned = false;
                    b.try_key_by(move |ev| e.eval_key(ev))
                }
                StepRef::Step(StepSpec::Dedup(DedupSpec { horizon, max_keys })) => {
                    let h = parse_duration_ms(horizon)
                        .ok_or_else(|| err(horizon, format!("dedup horizon {horizon:?} is not a duration")))?;
                    b.dedup(h, *max_keys)
                }
                StepRef::Step(StepSpec::Window(_) | StepSpec::Join(_)) => {
                    unreachable!("windows are StepRef::Window; joins are handled above")
                }
                StepRef::Window(w) => {
                    if w.window == Window::Global && !self.bounded() {
                        return Err(err(
                            "global",
                            "a global window closes only at the end of a bounded input (a file or the generator); over \
                             a topic it would never emit: use a tumbling or session window"
                                .into(),
                        ));
                    }
                    if let Some(f) = &w.end_field {
                        check_field(text, "the until window", f, &known)?;
                    }
                    if let Some(o) = w.out_of_orderness_ms {
                        out_of_orderness = Some(o);
                    }
                    match &w.output {
                        WindowOutput::Aggregates(aggs) => {
                            for (_, _, f) in aggs {
                                if let Some(f) = f {
                                    check_field(text, "the window's aggregate", f, &known)?;
                                }
                            }
                            let mut out: Vec<String> =
                                ["key", "window_start", "window_end", "count"].map(str::to_owned).into();
                            out.extend(aggs.iter().map(|(n, _, _)| n.clone()));
                            known = Some(out);
                            let (name, aggregate, field) = aggs[0].clone();
                            let extra = aggs[1..]
                                .iter()
                                .map(|(name, aggregate, field)| NamedAggregate {
                                    name: name.clone(),
                                    aggregate: *aggregate,
                                    field: field.clone(),
                                })
                                .collect();
                            b.window(WindowSpec {
                                window: w.window,
                                aggregate,
                                field,
                                allowed_lateness_ms: w.allowed_lateness_ms,
                                early_updates: w.early_updates,
                                max_open_windows: w.max_open_windows,
                                name,
                                extra,
                                end_field: w.end_field.clone(),
                            })
                        }
                        WindowOutput::TopN { n, by, descending } => {
                            check_field(text, "top_n", by, &known)?;
                            if let Some(k) = &mut known {
                                k.extend(["window_start", "window_end", "rank"].map(str::to_owned));
                            }
                            b.top_n(TopNSpec {
                                window: w.window,
                                by: by.clone(),
                                n: *n,
                                descending: *descending,
                                allowed_lateness_ms: w.allowed_lateness_ms,
                                max_rows: w.max_open_windows,
                            })
                        }
                    }
                }
            };
        }
        if let Some(o) = out_of_orderness {
            b = b.out_of_orderness(o);
        }
        b.build().map_err(|e| err("window", e.to_string()))
    }
}

/// A join side: the events of one source (`left: orders`), or those a predicate picks.
#[derive(Clone)]
enum SideSel {
    Source(u16),
    Predicate(Expr),
}

impl SideSel {
    fn compile(
        text: &str,
        what: &str,
        src: &str,
        named: Option<u16>,
        known: &Option<Vec<String>>,
    ) -> Result<Self, SpecError> {
        match named {
            Some(i) => Ok(SideSel::Source(i)),
            None => compile_checked(text, what, src, Expect::Bool, known).map(SideSel::Predicate),
        }
    }

    fn picks(&self, ev: &Event) -> Result<bool, String> {
        match self {
            SideSel::Source(i) => Ok(ev.source == *i),
            SideSel::Predicate(e) => e.eval_bool(ev, &format!("join side {:?}", e.source())),
        }
    }
}

/// The key step of a join (each side keyed by its own key expression; events of neither side
/// dropped) and the classifier the join uses. A null event (a Kafka tombstone) of a table
/// join's table source keeps its record key: it deletes that key's row.
fn join_sides(
    b: PipelineBuilder,
    text: &str,
    j: &JoinYaml,
    named: (Option<u16>, Option<u16>),
    known: &Option<Vec<String>>,
) -> Result<(PipelineBuilder, weir_stream::keyed_join::Classify), SpecError> {
    let left = SideSel::compile(text, "join left", &j.left, named.0, known)?;
    let right = SideSel::compile(text, "join right", &j.right, named.1, known)?;
    let left_key = compile_checked(text, "join left_key", &j.left_key, Expect::Any, known)?;
    let right_key = compile_checked(text, "join right_key", &j.right_key, Expect::Any, known)?;
    let table = j.table;
    let side = move |l: &SideSel, r: &SideSel, ev: &Event| -> Result<Option<Side>, String> {
        if table && ev.value.is_null() {
            // Only a table source's tombstones mean something: a predicate cannot say whose a
            // null value is.
            return match (l, r) {
                (SideSel::Source(li), _) if *li == ev.source => {
                    Err("a null value (tombstone) on the stream (left) side of a table join joins nothing".into())
                }
                (_, SideSel::Source(ri)) if *ri == ev.source => Ok(Some(Side::Right)),
                (_, SideSel::Predicate(_)) => Err("a null value (tombstone) reached a table join whose table side is \
                                                   a predicate: name the table's source (right: <source name>) so \
                                                   tombstones delete its rows"
                    .into()),
                _ => Ok(None),
            };
        }
        Ok(if l.picks(ev)? {
            Some(Side::Left)
        } else if r.picks(ev)? {
            Some(Side::Right)
        } else {
            None
        })
    };
    let (l2, r2) = (left.clone(), right.clone());
    let b = b.try_flat_map(move |mut ev, out| {
        let key = match side(&left, &right, &ev) {
            Ok(Some(_)) if ev.value.is_null() => {
                // A tombstone: its record key is the row's key.
                out.push(ev);
                return Ok(());
            }
            Ok(Some(Side::Left)) => left_key.eval(&ev),
            Ok(Some(Side::Right)) => right_key.eval(&ev),
            Ok(None) => return Ok(()),
            Err(detail) => return Err((ev, detail)),
        };
        match key {
            Ok(k) => {
                ev.key = key_text(&k);
                out.push(ev);
                Ok(())
            }
            Err(detail) => Err((ev, detail)),
        }
    });
    Ok((b, Box::new(move |ev: &Event| side(&l2, &r2, ev))))
}

enum StepRef<'a> {
    Step(&'a StepSpec),
    Window(&'a WindowYaml),
}

/// The variables expressions can read.
const VARS: [&str; 3] = ["event", "key", "ts"];

/// Compiles an expression and checks it statically: identifiers it may read, the type of its
/// result where that is known, and (when the fields of the events reaching it are known, after
/// a map of a literal or a window) that every `event.<field>` it reads exists.
fn compile_checked(
    text: &str,
    what: &str,
    src: &str,
    expect: Expect,
    fields: &Option<Vec<String>>,
) -> Result<Expr, SpecError> {
    let fail = |m: String| SpecError { line: line_of(text, src), message: format!("{what} {src:?}: {m}") };
    let e = Expr::compile(src).map_err(fail)?;
    crate::expr_check::check(src, &VARS, expect).map_err(fail)?;
    if let Some(known) = fields {
        if let Some(missing) = crate::expr_check::event_fields_read(src).into_iter().find(|f| !known.contains(f)) {
            return Err(fail(format!(
                "reads event.{missing}, but the events here have only the fields {} (an earlier map or window \
                 made them)",
                known.join(", ")
            )));
        }
    }
    Ok(e)
}

/// `field` must be among the known fields of the events reaching a window.
fn check_field(text: &str, what: &str, field: &str, fields: &Option<Vec<String>>) -> Result<(), SpecError> {
    match fields {
        Some(known) if !known.iter().any(|f| f == field) => Err(SpecError {
            line: line_of(text, field),
            message: format!(
                "{what} reads field {field:?}, but the events here have only the fields {} (an earlier map or \
                 window made them)",
                known.join(", ")
            ),
        }),
        _ => Ok(()),
    }
}

/// Parses and compiles in one step.
pub fn load(text: &str) -> Result<Compiled, SpecError> {
    Spec::parse(text)?.compile(text)
}

fn io_err(what: &str, e: &dyn std::fmt::Display) -> SpecError {
    SpecError { line: None, message: format!("{what}: {e}") }
}

/// Opens the spec's sink; relative paths are resolved against `base`.
pub fn open_sink(spec: &Spec, base: &std::path::Path, names: &[String]) -> Result<Box<dyn Sink>, SpecError> {
    let dir = base.join(spec.checkpoint.dir.as_deref().unwrap_or(".weir-checkpoints"));
    // Over Kafka, checkpoints go where every instance can read them (a topic), unless the
    // spec names a directory.
    let checkpoints = || -> Result<Box<dyn CheckpointStore>, SpecError> {
        match (spec.kafka_brokers(), &spec.checkpoint.dir) {
            (Some(brokers), None) => {
                let topic = format!("{}-checkpoints", spec.name);
                Ok(Box::new(CheckpointTopic::open(brokers, &topic).map_err(|e| io_err("checkpoints", &e))?))
            }
            _ => Ok(Box::new(CheckpointDir::open(&dir).map_err(|e| io_err("checkpoints", &e))?)),
        }
    };
    let table = spec.sink.table.as_deref().unwrap_or("results");
    let s = &spec.sink;
    // Single-aggregate results keep their `value` form.
    let json_names = if names == ["value"] { Vec::new() } else { names.to_vec() };
    Ok(if let (true, Some(db)) = (s.rows, &s.sqlite) {
        Box::new(
            crate::rows::SqliteRows::open(&base.join(db), table, &s.row_columns)
                .map_err(|e| io_err("sqlite sink", &e))?,
        )
    } else if let (true, Some(conninfo)) = (s.rows, &s.postgres) {
        Box::new(
            crate::rows::PostgresRows::open(conninfo, table, &s.row_columns)
                .map_err(|e| io_err("postgres sink", &e))?,
        )
    } else if let Some(db) = &s.sqlite {
        Box::new(
            crate::sqlite::SqliteSink::open_with(&base.join(db), table, names)
                .map_err(|e| io_err("sqlite sink", &e))?,
        )
    } else if let Some(conninfo) = &s.postgres {
        Box::new(
            crate::postgres::PostgresSink::open_with(conninfo, table, names)
                .map_err(|e| io_err("postgres sink", &e))?,
        )
    } else if let Some(k) = &s.kafka {
        let brokers = spec.brokers(k.brokers.as_deref());
        let mut sink =
            crate::kafka::KafkaSink::new(brokers, &k.topic, checkpoints()?).map_err(|e| io_err("kafka sink", &e))?;
        sink.names = json_names;
        Box::new(sink)
    } else if let Some(p) = &s.jsonl {
        // A JSON Lines source is read whole on every run: its output file starts empty.
        let truncate = spec.bounded();
        let mut sink =
            JsonlSink::file(&base.join(p), checkpoints()?, truncate).map_err(|e| io_err("jsonl sink", &e))?;
        sink.names = json_names;
        sink.rows = s.rows;
        Box::new(sink)
    } else {
        let mut sink = JsonlSink::stdout(checkpoints()?);
        sink.names = json_names;
        sink.rows = s.rows;
        Box::new(sink)
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
    DeadLetterOut::file(&path, spec.bounded()).map_err(|e| io_err("dead letters", &e))
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

impl Spec {
    /// A file or generator: read whole on every run.
    pub fn bounded(&self) -> bool {
        !self.source_list().iter().any(|(_, s)| matches!(s.kind, SourceKind::Kafka(_)))
    }
}

/// Runs a compiled spec: a bounded source to its end (closing every window), a Kafka source
/// until stopped (or to its end with `stop_at_end`). Relative paths are resolved against
/// `base`.
pub fn run(compiled: Compiled, base: &std::path::Path, opts: &RunOptions) -> Result<RunStats, SpecError> {
    let names = compiled.result_names.clone().unwrap_or_else(|| vec!["value".into()]);
    for (_, s) in compiled.spec.source_list() {
        if let SourceKind::Kafka(k) = &s.kind {
            // Before the sink (and its checkpoint topic) is created.
            crate::kafka::check_source_topic(&k.brokers, &k.topic, &k.properties).map_err(|e| io_err("source", &e))?;
        }
    }
    let mut sink = open_sink(&compiled.spec, base, &names)?;
    let mut dead = open_dead_letters(&compiled.spec, base)?;
    let spec = &compiled.spec;
    let cfg = RunConfig {
        name: spec.name.clone(),
        checkpoint_interval: std::time::Duration::from_millis(
            parse_duration_ms(&spec.checkpoint.interval).unwrap_or(5000).max(1) as u64,
        ),
        policy: spec.on_sink_error,
        stop_at_end: opts.stop_at_end,
        stop: opts.stop.clone(),
        max_pending: 10_000,
    };
    let make = || compiled.new_pipeline();
    let run = |source: &mut dyn Source, sink: &mut dyn Sink, dead: &mut DeadLetterOut| {
        crate::runner::run(&make, compiled.stages, source, sink, dead, &cfg).map_err(|e| io_err("pipeline", &e))
    };
    let list = spec.source_list();
    let formats = compiled.formats();
    let stats = match &list[0].1.kind {
        SourceKind::Kafka(k) => {
            let mut properties = BTreeMap::new();
            let mut topics = Vec::with_capacity(list.len());
            for ((_, s), format) in list.iter().zip(formats) {
                if let SourceKind::Kafka(k) = &s.kind {
                    properties.extend(k.properties.iter().map(|(a, b)| (a.clone(), b.clone())));
                    topics.push(SourceTopic { topic: k.topic.clone(), format });
                }
            }
            let kcfg = KafkaSourceConfig {
                brokers: k.brokers.clone(),
                sources: topics,
                group: k.group.clone().unwrap_or_else(|| spec.name.clone()),
                properties,
                name: spec.name.clone(),
                stages: compiled.stages,
                repartition_partitions: spec.repartition.partitions,
                from: opts.from,
                stop_at_end: opts.stop_at_end,
            };
            let mut source = KafkaSource::open(&kcfg, sink.as_mut()).map_err(|e| io_err("source", &e))?;
            run(&mut source, sink.as_mut(), &mut dead)?
        }
        SourceKind::Jsonl(path) if list.len() == 1 => {
            let input = std::fs::File::open(base.join(path)).map_err(|e| io_err(path, &e))?;
            let reader = std::io::BufReader::with_capacity(1 << 16, input);
            let mut source = JsonlSource::new(reader, path, compiled.format());
            run(&mut source, sink.as_mut(), &mut dead)?
        }
        SourceKind::Jsonl(_) => {
            let mut inputs = Vec::with_capacity(list.len());
            let mut names = Vec::with_capacity(list.len());
            for (i, ((_, s), format)) in list.iter().zip(formats).enumerate() {
                let SourceKind::Jsonl(path) = &s.kind else { continue };
                let input = std::fs::File::open(base.join(path)).map_err(|e| io_err(path, &e))?;
                let reader = std::io::BufReader::with_capacity(1 << 16, input);
                inputs.push(JsonlSource::new(reader, path, format).with_index(i as u16));
                names.push(path.as_str());
            }
            let mut source = crate::source::MergedSource::new(inputs, &names.join("+"));
            run(&mut source, sink.as_mut(), &mut dead)?
        }
        SourceKind::Nexmark(n) => {
            let mut source = NexmarkSource::new(n.events, n.rate, compiled.format());
            run(&mut source, sink.as_mut(), &mut dead)?
        }
    };
    Ok(stats)
}
