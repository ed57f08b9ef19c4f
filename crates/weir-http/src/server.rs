//! Listener, limits and graceful shutdown.

use crate::api;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use weir_broker::Broker;

/// Appends more metrics to /metrics (the Kafka listener's, the storage engine's).
pub type MetricsSource = fn(&mut weir_metrics::Text);

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body (413 beyond).
    pub body_bytes_max: usize,
    /// A client must send its request headers within this (slowloris defence); it also
    /// bounds how long an idle keep-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// Reading the body and producing the response head must finish within this.
    pub request_timeout: Duration,
    /// Longest long-poll `wait` honoured on reads.
    pub read_wait_max: Duration,
    /// Events buffered per SSE subscriber; a subscriber that stays this far behind for
    /// `sse_stall_timeout` is dropped with a `dropped` event.
    pub sse_buffer: usize,
    pub sse_stall_timeout: Duration,
    pub connections_max: usize,
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9644)),
            body_bytes_max: 8 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            read_wait_max: Duration::from_secs(30),
            sse_buffer: 256,
            sse_stall_timeout: Duration::from_secs(10),
            connections_max: 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// State shared by the handlers.
pub(crate) struct AppState {
    pub broker: Arc<Broker>,
    pub config: HttpConfig,
    pub appended: watch::Sender<u64>,
    pub ready: Arc<AtomicBool>,
    pub shutting_down: AtomicBool,
    pub metrics: Vec<MetricsSource>,
    /// Round-robin partition choice for records without key or partition.
    pub next_partition: AtomicU64,
}

impl AppState {
    pub fn notify_appended(&self) {
        self.appended.send_modify(|v| *v = v.wrapping_add(1));
    }
}

pub struct HttpServer {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl HttpServer {
    /// Binds the listener. `appended` is the broker-wide append signal shared with the Kafka
    /// listener; `ready` is set by the caller once every listener is up.
    pub async fn bind(
        config: HttpConfig,
        broker: Arc<Broker>,
        appended: watch::Sender<u64>,
        ready: Arc<AtomicBool>,
        metrics: Vec<MetricsSource>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self::from_listener(listener, config, broker, appended, ready, metrics))
    }

    /// Like `bind` on a listener bound beforehand (before the data directory is opened).
    pub fn from_listener(
        listener: TcpListener,
        config: HttpConfig,
        broker: Arc<Broker>,
        appended: watch::Sender<u64>,
        ready: Arc<AtomicBool>,
        metrics: Vec<MetricsSource>,
    ) -> Self {
        let state = Arc::new(AppState {
            broker,
            config,
            appended,
            ready,
            shutting_down: AtomicBool::new(false),
            metrics,
            next_partition: AtomicU64::new(0),
        });
        Self { listener, state }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let HttpServer { listener, state } = self;
        let router = api::router(state.clone()).layer(axum::middleware::from_fn_with_state(state.clone(), guard));
        let connections = Arc::new(tokio::sync::Semaphore::new(state.config.connections_max));
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(addr = %listener.local_addr()?, "http listener ready");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "http accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "http connection limit reached; refusing");
                        continue;
                    };
                    let service = TowerToHyperService::new(router.clone());
                    let header_timeout = state.config.header_read_timeout;
                    tasks.spawn(async move {
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(header_timeout)
                            .serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "http connection ended");
                        }
                        drop(permit);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        state.shutting_down.store(true, Ordering::SeqCst);
        drop(listener);
        let grace = state.config.shutdown_grace;
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
            tasks.abort_all();
        }
        Ok(())
    }
}

/// Every request: 503 while shutting down, a deadline on reading the body and starting the
/// response, every error body as JSON, and per-route metrics.
async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let stats = crate::metrics::route(route.as_deref());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let response = if state.shutting_down.load(Ordering::Relaxed) {
        crate::error::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
            .into_response()
    } else {
        match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => {
                crate::error::ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the request took too long")
                    .into_response()
            }
        }
    };
    let response = if response.status().as_u16() >= 400 { json_error(response).await } else { response };
    stats.latency.observe(started.elapsed());
    stats.record(method.as_str(), response.status().as_u16());
    response
}

/// Largest plain-text error body carried over into a JSON error's message.
const ERROR_TEXT_BYTES_MAX: usize = 4096;

/// Errors axum answers itself (an extractor's plain-text rejection, an unknown path's empty
/// 404, a wrong method's empty 405) become `{"error", "message"}` like the handlers' own.
async fn json_error(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, ERROR_TEXT_BYTES_MAX).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let status = parts.status;
    let (code, default) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route; GET /openapi.json lists them"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take that method"),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported content type"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("bad_request", "bad request"),
    };
    let message = if text.is_empty() { default.to_owned() } else { text };
    let mut out = crate::error::ApiError::new(status, code, message).into_response();
    // Keep what axum said besides the body (Allow on a 405).
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
