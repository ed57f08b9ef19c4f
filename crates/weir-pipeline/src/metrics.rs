//! Process-wide pipeline metrics (one atomic add per observation), rendered as Prometheus text
//! by `weir pipeline run --metrics-listen`.

use weir_metrics::{Counter, Gauge, Histogram, Text};
use weir_stream::event::DeadLetterReason;

/// Records read from the source (decodable or not).
pub static EVENTS: Counter = Counter::new();
/// Window results and pass-through events handed to the sink.
pub static OUTPUTS: Counter = Counter::new();
/// Dead letters by reason: late, bad_field, undecodable, expression, sink.
pub static DEAD_LATE: Counter = Counter::new();
pub static DEAD_BAD_FIELD: Counter = Counter::new();
pub static DEAD_UNDECODABLE: Counter = Counter::new();
pub static DEAD_EXPRESSION: Counter = Counter::new();
pub static DEAD_SINK: Counter = Counter::new();
/// Events dropped by a dedup step.
pub static DUPLICATES: Counter = Counter::new();
/// Checkpoints completed (dead letters flushed, sink written, offsets committed) and their time.
pub static CHECKPOINTS: Counter = Counter::new();
pub static CHECKPOINT_SECONDS: Histogram = Histogram::new();
/// Failed sink writes (each retry or fallback counts once).
pub static SINK_FAILURES: Counter = Counter::new();
/// Source partitions this instance owns.
pub static PARTITIONS: Gauge = Gauge::new();
/// Open windows over all tasks, as of the last checkpoint.
pub static OPEN_WINDOWS: Gauge = Gauge::new();

pub(crate) fn dead_letter(reason: &DeadLetterReason) {
    match reason {
        DeadLetterReason::Late { .. } => DEAD_LATE.inc(),
        DeadLetterReason::BadField { .. } => DEAD_BAD_FIELD.inc(),
        DeadLetterReason::Undecodable { .. } => DEAD_UNDECODABLE.inc(),
        DeadLetterReason::Expression { .. } => DEAD_EXPRESSION.inc(),
    }
}

pub fn render() -> String {
    let mut t = Text::new();
    for (name, help, c) in [
        ("weir_pipeline_events_total", "Records read from the source", &EVENTS),
        ("weir_pipeline_outputs_total", "Window results and events handed to the sink", &OUTPUTS),
        ("weir_pipeline_duplicates_total", "Events dropped by dedup", &DUPLICATES),
        ("weir_pipeline_checkpoints_total", "Checkpoints completed", &CHECKPOINTS),
        ("weir_pipeline_sink_failures_total", "Failed sink writes", &SINK_FAILURES),
    ] {
        t.family(name, "counter", help);
        t.sample(name, "", c.get() as f64);
    }
    t.family("weir_pipeline_dead_letters_total", "counter", "Events and results sent to the dead-letter output");
    for (reason, c) in [
        ("late", &DEAD_LATE),
        ("bad_field", &DEAD_BAD_FIELD),
        ("undecodable", &DEAD_UNDECODABLE),
        ("expression", &DEAD_EXPRESSION),
        ("sink", &DEAD_SINK),
    ] {
        t.sample("weir_pipeline_dead_letters_total", &weir_metrics::labels(&[("reason", reason)]), c.get() as f64);
    }
    t.family("weir_pipeline_checkpoint_seconds", "histogram", "Time to flush, write and commit a checkpoint");
    t.histogram("weir_pipeline_checkpoint_seconds", "", &CHECKPOINT_SECONDS);
    for (name, help, g) in [
        ("weir_pipeline_partitions", "Source partitions owned", &PARTITIONS),
        ("weir_pipeline_open_windows", "Open windows over all tasks", &OPEN_WINDOWS),
    ] {
        t.family(name, "gauge", help);
        t.sample(name, "", g.get() as f64);
    }
    t.finish()
}
