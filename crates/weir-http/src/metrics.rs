//! HTTP request metrics by route (the matched pattern, never the raw path), method and status.

use weir_metrics::{labels, Counter, Histogram, Text};

pub(crate) struct RouteStats {
    pub errors: Counter,
    pub latency: Histogram,
    /// By method (`METHODS` order) and status (`STATUSES` order), each with an "other" slot.
    by_method_status: [[Counter; STATUSES.len() + 1]; METHODS.len() + 1],
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
const METHODS: [&str; 5] = ["GET", "POST", "PATCH", "DELETE", "HEAD"];
/// Every status the API answers with; anything else is counted as "other".
const STATUSES: [u16; 15] = [200, 201, 204, 400, 404, 405, 408, 409, 413, 415, 416, 422, 500, 503, 504];

pub(crate) static ROUTE_STATS: [RouteStats; ROUTES.len() + 1] = [const {
    RouteStats {
        errors: Counter::new(),
        latency: Histogram::new(),
        by_method_status: [const { [const { Counter::new() }; STATUSES.len() + 1] }; METHODS.len() + 1],
    }
}; ROUTES.len() + 1];

pub(crate) fn route(pattern: Option<&str>) -> &'static RouteStats {
    let i = pattern.and_then(|p| ROUTES.iter().position(|r| *r == p)).unwrap_or(OTHER);
    &ROUTE_STATS[i]
}

impl RouteStats {
    /// Counts one answered request (no allocation, no lock).
    pub fn record(&self, method: &str, status: u16) {
        let m = METHODS.iter().position(|x| *x == method).unwrap_or(METHODS.len());
        let s = STATUSES.iter().position(|x| *x == status).unwrap_or(STATUSES.len());
        self.by_method_status[m][s].inc();
        if status >= 400 {
            self.errors.inc();
        }
    }

    #[cfg(test)]
    fn requests(&self) -> u64 {
        self.by_method_status.iter().flatten().map(Counter::get).sum()
    }
}

pub(crate) fn render(t: &mut Text) {
    let names = ROUTES.iter().copied().chain(["other"]);
    let all: Vec<(&str, &RouteStats)> = names.zip(ROUTE_STATS.iter()).collect();
    // Only the (method, status) pairs seen so far: 12 routes x 6 x 16 zeros would drown the page.
    t.family("weir_http_requests_total", "counter", "HTTP requests, by route (matched pattern), method and status");
    for (r, s) in &all {
        for (m, row) in METHODS.iter().copied().chain(["other"]).zip(&s.by_method_status) {
            for (i, c) in row.iter().enumerate() {
                let n = c.get();
                if n == 0 {
                    continue;
                }
                let status = STATUSES.get(i).map_or_else(|| "other".to_owned(), u16::to_string);
                let l = labels(&[("route", r), ("method", m), ("status", &status)]);
                t.sample("weir_http_requests_total", &l, n as f64);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_method_and_status_with_other_slots() {
        let s = route(Some("/groups/{group}"));
        let before = s.requests();
        s.record("GET", 200);
        s.record("PUT", 418);
        assert_eq!(s.requests(), before + 2);
        let mut t = Text::new();
        render(&mut t);
        let text = t.finish();
        assert!(
            text.contains(r#"weir_http_requests_total{route="/groups/{group}",method="GET",status="200"}"#),
            "{text}"
        );
        assert!(text.contains(r#"weir_http_requests_total{route="/groups/{group}",method="other",status="other"}"#));
    }
}
