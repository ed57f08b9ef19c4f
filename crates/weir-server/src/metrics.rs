//! Kafka-listener metrics: per-API request counts, errors and latency; connections; bytes.

use kafka_protocol::messages::ApiKey;
use weir_metrics::{labels, Counter, Gauge, Histogram, Text};

/// Room for every API key Kafka defines (they are small integers).
const API_KEYS: usize = 96;

pub(crate) struct ApiStats {
    pub requests: Counter,
    pub errors: Counter,
    pub latency: Histogram,
}

impl ApiStats {
    const fn new() -> Self {
        Self { requests: Counter::new(), errors: Counter::new(), latency: Histogram::new() }
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
        "Kafka requests answered with an error code or a closed connection, by API",
    );
    for (k, s) in &keys {
        t.sample("weir_kafka_request_errors_total", &labels(&[("api", &format!("{k:?}"))]), s.errors.get() as f64);
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
