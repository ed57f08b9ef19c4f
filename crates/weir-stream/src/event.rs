//! Events flowing through a pipeline, and the records a pipeline emits.

use serde_json::Value;

/// One input event: a JSON value with its key, event time and source position.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub key: Option<String>,
    pub value: Value,
    /// Event time, ms since the epoch.
    pub timestamp_ms: i64,
    /// Source partition (watermarks are tracked per partition) and offset.
    pub partition: i32,
    pub offset: i64,
    /// Which of the pipeline's sources the event came from (0 when it has one); a join side
    /// can be "the events of source N".
    #[serde(default, skip_serializing_if = "is_zero")]
    pub source: u16,
    /// The JSON text `value` was decoded from, while the value is unchanged since (the engine
    /// drops it after a map or flat_map). Sinks and dead letters write it as it came instead of
    /// re-encoding the value, and a source may then decode only the fields its pipeline reads
    /// (`value` holds those). Not part of checkpoints.
    #[serde(skip)]
    pub raw: Option<std::sync::Arc<str>>,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

impl Event {
    pub fn new(key: Option<&str>, value: Value, timestamp_ms: i64) -> Self {
        Self { key: key.map(str::to_owned), value, timestamp_ms, partition: 0, offset: -1, source: 0, raw: None }
    }

    /// The value as JSON text: the text it came as when the event still has it.
    pub fn value_text(&self) -> std::borrow::Cow<'_, str> {
        match &self.raw {
            Some(raw) => std::borrow::Cow::Borrowed(raw),
            None => std::borrow::Cow::Owned(self.value.to_string()),
        }
    }

    /// The whole value: decoded again from its text when the event has it (the value may hold
    /// only the fields the pipeline reads). For the rare paths that need it (dead letters).
    pub fn full_value(&self) -> std::borrow::Cow<'_, Value> {
        match self.raw.as_deref().map(serde_json::from_str) {
            Some(Ok(v)) => std::borrow::Cow::Owned(v),
            _ => std::borrow::Cow::Borrowed(&self.value),
        }
    }

    /// The event with its value's text forgotten (the value was changed).
    pub fn without_raw(mut self) -> Self {
        self.raw = None;
        self
    }

    pub fn on_partition(mut self, partition: i32, offset: i64) -> Self {
        self.partition = partition;
        self.offset = offset;
        self
    }
}

/// The key held in a JSON field: a string as it is, any other non-null value as its JSON text.
pub fn key_from_field(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(|k| k.as_str().map(str::to_owned).or_else(|| (!k.is_null()).then(|| k.to_string())))
}

/// Why an event went to the dead-letter output instead of being processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Event time behind the watermark by more than the allowed lateness.
    Late { watermark_ms: i64, allowed_lateness_ms: i64 },
    /// A field an operator needs is missing or of the wrong type.
    BadField { field: String, detail: String },
    /// The input could not be decoded into an event at all.
    Undecodable { detail: String },
    /// A filter, map or key expression failed on this event.
    Expression { detail: String },
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadLetterReason::Late { watermark_ms, allowed_lateness_ms } => {
                write!(f, "late: behind watermark {watermark_ms} by more than {allowed_lateness_ms} ms")
            }
            DeadLetterReason::BadField { field, detail } => write!(f, "field {field}: {detail}"),
            DeadLetterReason::Undecodable { detail } => write!(f, "undecodable: {detail}"),
            DeadLetterReason::Expression { detail } => write!(f, "expression failed: {detail}"),
        }
    }
}

/// An event that was not processed, with the reason. Never silently dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub event: Event,
    pub reason: DeadLetterReason,
}

/// A closed (or early-updated) window's result for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    pub key: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub value: f64,
    /// The extra aggregates' results, in spec order (`WindowSpec::extra`).
    pub extra: Vec<f64>,
    /// Events aggregated.
    pub count: u64,
    pub kind: ResultKind,
}

/// What a window result says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// An early update: the window is not closed yet.
    Early,
    /// The window's final result.
    Final,
    /// Withdraws the early update sent for (key, window start): a session window whose start
    /// moved (an earlier event merged into it) or that merged into another session. Sinks
    /// delete that row if it is not final; value and count are 0.
    Retraction,
}

impl WindowResult {
    /// Withdraws the early update sent for (key, start).
    pub fn retraction(key: &str, start_ms: i64, end_ms: i64) -> Self {
        Self {
            key: key.to_owned(),
            window_start_ms: start_ms,
            window_end_ms: end_ms,
            value: 0.0,
            extra: Vec::new(),
            count: 0,
            kind: ResultKind::Retraction,
        }
    }

    pub fn is_final(&self) -> bool {
        self.kind == ResultKind::Final
    }

    pub fn is_retraction(&self) -> bool {
        self.kind == ResultKind::Retraction
    }
}

impl WindowResult {
    /// The result as an event for the next stage: `{key, window_start, window_end, <names>…,
    /// count}` with the window's key, at time `window_end - 1` (the last instant in the window).
    pub fn to_event<'a>(&self, mut names: impl Iterator<Item = &'a str>, partition: i32, offset: i64) -> Event {
        let mut m = serde_json::Map::new();
        m.insert("key".into(), Value::String(self.key.clone()));
        m.insert("window_start".into(), self.window_start_ms.into());
        m.insert("window_end".into(), self.window_end_ms.into());
        // Before the aggregates, so an aggregate the spec names `count` wins.
        m.insert("count".into(), self.count.into());
        for v in std::iter::once(self.value).chain(self.extra.iter().copied()) {
            let Some(name) = names.next() else { break };
            m.insert(name.to_owned(), number(v));
        }
        Event {
            key: Some(self.key.clone()),
            value: Value::Object(m),
            timestamp_ms: self.window_end_ms - 1,
            partition,
            offset,
            source: 0,
            raw: None,
        }
    }
}

/// A number as JSON: integral values as integers (a count or a sum of integers stays `3`, not
/// `3.0`), NaN (an empty min/max/avg) as null.
pub fn number(v: f64) -> Value {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}
