//! Kafka-listener metrics: per-API request counts, errors and latency; connections; bytes.

use kafka_protocol::messages::ApiKey;
use weir_metrics::{labels, Counter, Gauge, Histogram, Text};

/// Room for every API key Kafka defines (they are small integers).
const API_KEYS: usize = 96;
/// Room for Kafka error codes -1..=158 (Kafka 4.1 defines up to 133); index = code + 1.
const ERROR_CODES: usize = 160;
/// The slot for requests answered by closing the connection (no error code exists).
const CONNECTION_CLOSED: usize = ERROR_CODES;

pub(crate) struct ApiStats {
    pub requests: Counter,
    /// Per error code: how many times a response carried it (every top-level and
    /// per-item code, as Kafka's ErrorsPerSec counts them), plus one slot for closed
    /// connections.
    errors: [Counter; ERROR_CODES + 1],
    pub latency: Histogram,
}

impl ApiStats {
    const fn new() -> Self {
        Self {
            requests: Counter::new(),
            errors: [const { Counter::new() }; ERROR_CODES + 1],
            latency: Histogram::new(),
        }
    }

    /// Counts one occurrence of a non-zero error code.
    pub fn error(&self, code: i16) {
        if let Some(c) = usize::try_from(i32::from(code) + 1).ok().and_then(|i| self.errors.get(i.min(ERROR_CODES - 1)))
        {
            c.inc();
        }
    }

    pub fn connection_closed(&self) {
        self.errors[CONNECTION_CLOSED].inc();
    }
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), as Errors.java spells it.
pub(crate) fn error_name(code: i16) -> String {
    use kafka_protocol::error::ResponseError;
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_{c}"),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

pub(crate) static APIS: [ApiStats; API_KEYS] = [const { ApiStats::new() }; API_KEYS];
pub(crate) static CONNECTIONS: Gauge = Gauge::new();
pub(crate) static CONNECTIONS_REFUSED: Counter = Counter::new();
pub(crate) static BYTES_IN: Counter = Counter::new();
pub(crate) static BYTES_OUT: Counter = Counter::new();
/// Connections closed because of malformed, oversized or unsupported requests.
pub(crate) static PROTOCOL_ERRORS: Counter = Counter::new();

pub(crate) fn api(key: i16) -> Option<&'static ApiStats> {
    usize::try_from(key).ok().and_then(|k| APIS.get(k))
}

/// Appends the Kafka listener's metrics.
pub fn render(t: &mut Text) {
    let keys: Vec<(ApiKey, &ApiStats)> =
        crate::versions::SUPPORTED.iter().filter_map(|&(k, _, _)| api(k as i16).map(|s| (k, s))).collect();
    t.family("weir_kafka_requests_total", "counter", "Kafka requests handled, by API");
    for (k, s) in &keys {
        t.sample("weir_kafka_requests_total", &labels(&[("api", &format!("{k:?}"))]), s.requests.get() as f64);
    }
    t.family(
        "weir_kafka_request_errors_total",
        "counter",
        "Error codes in Kafka responses (each top-level and per-partition code), by API and Kafka error name; \
         error=\"CONNECTION_CLOSED\" counts requests answered by closing the connection",
    );
    for (k, s) in &keys {
        for (i, c) in s.errors.iter().enumerate() {
            let n = c.get();
            if n == 0 {
                continue;
            }
            let error = if i == CONNECTION_CLOSED { "CONNECTION_CLOSED".to_owned() } else { error_name(i as i16 - 1) };
            t.sample(
                "weir_kafka_request_errors_total",
                &labels(&[("api", &format!("{k:?}")), ("error", &error)]),
                n as f64,
            );
        }
    }
    t.family("weir_kafka_request_seconds", "histogram", "Kafka request handling latency, by API");
    for (k, s) in &keys {
        t.histogram("weir_kafka_request_seconds", &labels(&[("api", &format!("{k:?}"))]), &s.latency);
    }
    t.family("weir_kafka_connections", "gauge", "Open Kafka client connections");
    t.sample("weir_kafka_connections", "", CONNECTIONS.get() as f64);
    for (name, help, c) in [
        ("weir_kafka_connections_refused_total", "Connections refused at the connection limit", &CONNECTIONS_REFUSED),
        ("weir_kafka_bytes_in_total", "Request bytes received", &BYTES_IN),
        ("weir_kafka_bytes_out_total", "Response bytes sent", &BYTES_OUT),
        (
            "weir_kafka_protocol_errors_total",
            "Connections closed for malformed or unsupported requests",
            &PROTOCOL_ERRORS,
        ),
    ] {
        t.family(name, "counter", help);
        t.sample(name, "", c.get() as f64);
    }
}
