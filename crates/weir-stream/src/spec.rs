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

use crate::aggregate::Aggregate;
use crate::event::Event;
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::window::Window;
use crate::windowed::WindowSpec;
use serde::Deserialize;
use std::sync::Arc;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A JSON Lines file.
    pub jsonl: String,
    #[serde(default = "default_time_field")]
    pub time_field: String,
    #[serde(default = "default_key_field")]
    pub key_field: String,
}

fn default_time_field() -> String {
    "timestamp".into()
}
fn default_key_field() -> String {
    "key".into()
}

/// One step: exactly one of its fields is set (`- filter: "..."`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub filter: Option<String>,
    pub map: Option<String>,
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
    pub table: Option<String>,
    pub jsonl: Option<String>,
    #[serde(default)]
    pub stdout: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    pub jsonl: String,
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
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("event", cel::to_value(&ev.value).map_err(|e| e.to_string())?);
        ctx.add_variable_from_value("key", cel::to_value(&ev.key).map_err(|e| e.to_string())?);
        ctx.add_variable_from_value("ts", cel::Value::Int(ev.timestamp_ms));
        let v = self.program.execute(&ctx).map_err(|e| e.to_string())?;
        v.json().map_err(|e| e.to_string())
    }
}

/// A validated spec: the pipeline plus where to read and write.
pub struct Compiled {
    pub spec: Spec,
    pub pipeline: Pipeline,
}

impl Spec {
    /// Parses and validates YAML text; every error names its line.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        serde_norway::from_str(text)
            .map_err(|e| SpecError { line: e.location().map(|l| l.line()), message: e.to_string() })
    }

    /// Compiles expressions and windows into a pipeline.
    pub fn compile(self, text: &str) -> Result<Compiled, SpecError> {
        let err = |needle: &str, message: String| SpecError { line: line_of(text, needle), message };
        let mut b: PipelineBuilder = Pipeline::builder();
        for step in &self.steps {
            let set = [step.filter.is_some(), step.map.is_some(), step.key_by.is_some(), step.dedup.is_some()];
            if set.iter().filter(|x| **x).count() != 1 {
                return Err(err("steps:", "each step needs exactly one of filter, map, key_by, dedup".into()));
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
        if self.sink.sqlite.is_none() && self.sink.jsonl.is_none() && !self.sink.stdout {
            return Err(err("sink:", "sink needs sqlite, jsonl or stdout".into()));
        }
        if self.sink.sqlite.is_some() && self.window.is_none() {
            return Err(err("sqlite:", "the sqlite sink stores window results: add a window".into()));
        }
        let pipeline = b.build().map_err(|e| err("window:", e.to_string()))?;
        Ok(Compiled { spec: self, pipeline })
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
}

/// Runs a compiled spec over its (bounded) JSON Lines source; relative paths are resolved
/// against `base`. Window results go to the sink, dead letters to their file (or stderr).
pub fn run(compiled: Compiled, base: &std::path::Path) -> Result<RunStats, SpecError> {
    use crate::jsonl::{write_dead_letter, write_result, JsonlFormat};
    use std::io::Write;
    let Compiled { spec, pipeline } = compiled;
    let io = |what: &str, e: &dyn std::fmt::Display| SpecError { line: None, message: format!("{what}: {e}") };
    let path = |p: &str| base.join(p);
    let format = JsonlFormat { time_field: spec.source.time_field.clone(), key_field: spec.source.key_field.clone() };
    let input = std::fs::File::open(path(&spec.source.jsonl)).map_err(|e| io(&spec.source.jsonl, &e))?;
    let mut driver = crate::TestDriver::new(pipeline);
    let mut stats = RunStats::default();
    let mut dead = Vec::new();
    for parsed in format.read_all(std::io::BufReader::new(input)).map_err(|e| io("reading the source", &e))? {
        stats.events += 1;
        match parsed {
            Ok(ev) => driver.push(ev).map_err(|e| io("pipeline", &e))?,
            Err(d) => dead.push(*d),
        }
    }
    // A bounded input is complete: close every window.
    driver.advance_watermark(i64::MAX / 2);
    let results = driver.final_results();
    stats.results = results.len() as u64;
    stats.duplicates = driver.duplicates();
    if let Some(db) = &spec.sink.sqlite {
        let table = spec.sink.table.as_deref().unwrap_or("results");
        let mut sink = crate::sqlite::SqliteSink::open(&path(db), table).map_err(|e| io("sqlite sink", &e))?;
        sink.write(&results).map_err(|e| io("sqlite sink", &e))?;
    }
    let write_all = |out: &mut dyn Write| -> std::io::Result<()> {
        for r in &results {
            write_result(&mut *out, r)?;
        }
        for ev in driver.events() {
            writeln!(out, "{}", serde_json::json!({"key": ev.key, "timestamp": ev.timestamp_ms, "value": ev.value}))?;
        }
        out.flush()
    };
    if let Some(p) = &spec.sink.jsonl {
        let mut f = std::fs::File::create(path(p)).map_err(|e| io(p, &e))?;
        write_all(&mut f).map_err(|e| io(p, &e))?;
    }
    if spec.sink.stdout {
        write_all(&mut std::io::stdout().lock()).map_err(|e| io("stdout", &e))?;
    }
    dead.extend(driver.dead_letters().iter().cloned());
    stats.dead_letters = dead.len() as u64;
    let mut out: Box<dyn Write> = match &spec.dead_letters {
        Some(d) => Box::new(std::fs::File::create(path(&d.jsonl)).map_err(|e| io(&d.jsonl, &e))?),
        None => Box::new(std::io::stderr()),
    };
    for d in &dead {
        write_dead_letter(&mut out, d).map_err(|e| io("dead letters", &e))?;
    }
    Ok(stats)
}
