//! Listener settings and limits.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Host clients are told to connect to (Metadata); defaults to the listen address.
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to; defaults to the bound port.
    pub advertised_port: Option<u16>,
    /// Largest request frame accepted; checked before anything is allocated.
    pub frame_bytes_max: usize,
    /// Bytes of request frames being handled at once across all connections: bounds the
    /// memory clients can pin by streaming large frames.
    pub inflight_bytes_max: usize,
    pub connections_max: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Once a frame starts, all of it must arrive within this; responses too must be taken
    /// by the client within it (slow clients are disconnected).
    pub request_timeout: Duration,
    /// Upper bound on a Fetch long poll, whatever the client asks.
    pub fetch_wait_max: Duration,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: None,
            advertised_port: None,
            frame_bytes_max: 100 * 1024 * 1024,
            inflight_bytes_max: 512 * 1024 * 1024,
            connections_max: 10_000,
            idle_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
            fetch_wait_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
