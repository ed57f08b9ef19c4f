//! HTTP request metrics by route.

use weir_metrics::{labels, Counter, Histogram, Text};

pub(crate) struct RouteStats {
    pub requests: Counter,
    pub errors: Counter,
    pub latency: Histogram,
}

/// The route patterns, in the order of `ROUTE_STATS`.
pub(crate) const ROUTES: [&str; 11] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/topics",
    "/topics/{topic}",
    "/topics/{topic}/configs",
    "/topics/{topic}/records",
    "/topics/{topic}/subscribe",
    "/groups",
    "/groups/{group}",
];
const OTHER: usize = ROUTES.len();

pub(crate) static ROUTE_STATS: [RouteStats; ROUTES.len() + 1] =
    [const { RouteStats { requests: Counter::new(), errors: Counter::new(), latency: Histogram::new() } };
        ROUTES.len() + 1];

pub(crate) fn route(pattern: Option<&str>) -> &'static RouteStats {
    let i = pattern.and_then(|p| ROUTES.iter().position(|r| *r == p)).unwrap_or(OTHER);
    &ROUTE_STATS[i]
}

pub(crate) fn render(t: &mut Text) {
    let names = ROUTES.iter().copied().chain(["other"]);
    let all: Vec<(&str, &RouteStats)> = names.zip(ROUTE_STATS.iter()).collect();
    t.family("weir_http_requests_total", "counter", "HTTP requests, by route");
    for (r, s) in &all {
        t.sample("weir_http_requests_total", &labels(&[("route", r)]), s.requests.get() as f64);
    }
    t.family("weir_http_request_errors_total", "counter", "HTTP responses with status >= 400, by route");
    for (r, s) in &all {
        t.sample("weir_http_request_errors_total", &labels(&[("route", r)]), s.errors.get() as f64);
    }
    t.family("weir_http_request_seconds", "histogram", "HTTP request latency until the response starts, by route");
    for (r, s) in &all {
        t.histogram("weir_http_request_seconds", &labels(&[("route", r)]), &s.latency);
    }
}
