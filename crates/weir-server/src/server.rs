//! Accept loop, connection limit, background maintenance and graceful shutdown.

use crate::config::ServerConfig;
use crate::connection;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use weir_broker::Broker;

/// State every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub broker: Arc<Broker>,
    pub config: ServerConfig,
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Permits are bytes of request frames in flight.
    pub inflight: Arc<Semaphore>,
    /// Bumped after every successful append; Fetch long polls wait on it.
    pub appended: watch::Sender<u64>,
}

impl Shared {
    pub fn notify_appended(&self) {
        self.appended.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// A bound Kafka-protocol listener.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    pub async fn bind(config: ServerConfig, broker: Arc<Broker>) -> std::io::Result<Server> {
        Self::bind_with(config, broker, watch::channel(0).0).await
    }

    /// Like `bind`, with the broker-wide append signal shared with other front ends (HTTP),
    /// so long polls here wake on their appends and theirs on ours.
    pub async fn bind_with(
        config: ServerConfig,
        broker: Arc<Broker>,
        appended: watch::Sender<u64>,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        Self::from_listener(listener, config, broker, appended)
    }

    /// Like `bind_with` on a listener bound beforehand: `weir serve` binds both ports before
    /// it touches the data directory, so a port in use leaves nothing behind.
    pub fn from_listener(
        listener: TcpListener,
        config: ServerConfig,
        broker: Arc<Broker>,
        appended: watch::Sender<u64>,
    ) -> std::io::Result<Server> {
        if config.frame_bytes_max > config.inflight_bytes_max || config.inflight_bytes_max > u32::MAX as usize {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "frame_bytes_max must be <= inflight_bytes_max <= 4 GiB",
            ));
        }
        let local = listener.local_addr()?;
        let advertised_host = config.advertised_host.clone().unwrap_or_else(|| local.ip().to_string());
        let advertised_port = i32::from(config.advertised_port.unwrap_or(local.port()));
        // Classic and KIP-848 members may share a group (online upgrade): the coordinator
        // reads their embedded protocol with this codec.
        broker.groups().set_consumer_protocol(Arc::new(crate::consumer_protocol::KafkaConsumerProtocol));
        let shared = Arc::new(Shared {
            broker,
            inflight: Arc::new(Semaphore::new(config.inflight_bytes_max)),
            config,
            advertised_host,
            advertised_port,
            appended,
        });
        Ok(Server { listener, shared })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish (up to the grace period) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let Server { listener, shared } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = Arc::new(Semaphore::new(shared.config.connections_max));
        let mut tasks = JoinSet::new();
        let maintenance = tokio::spawn(maintenance_loop(shared.clone(), stop_rx.clone()));
        tokio::pin!(shutdown);
        tracing::info!(addr = %listener.local_addr()?, advertised = %format!("{}:{}", shared.advertised_host, shared.advertised_port), "kafka listener ready");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match connections.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let (s, rx) = (shared.clone(), stop_rx.clone());
                            tasks.spawn(async move {
                                connection::serve(s, stream, peer, rx).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            crate::metrics::CONNECTIONS_REFUSED.inc();
                            tracing::warn!(%peer, max = shared.config.connections_max, "connection limit reached; refusing");
                            drop(stream);
                        }
                    },
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        tracing::info!(connections = tasks.len(), "shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        let drained =
            tokio::time::timeout(shared.config.shutdown_grace, async { while tasks.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            tracing::warn!(left = tasks.len(), "grace period over; dropping remaining connections");
            tasks.abort_all();
        }
        let _ = maintenance.await;
        Ok(())
    }
}

/// Interval flushes and age-based rolls every second; retention, compaction and
/// checkpoints every `maintenance_interval_ms`.
async fn maintenance_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    // Group timeouts (sessions, rebalance deadlines) are applied at this granularity.
    let mut groups = tokio::time::interval(Duration::from_millis(100));
    groups.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let full_every = Duration::from_millis(shared.broker.config().maintenance_interval_ms.max(100));
    let mut full = tokio::time::interval(full_every);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let full_pass = tokio::select! {
            _ = stop.changed() => return,
            _ = groups.tick() => {
                shared.broker.groups().tick();
                continue;
            }
            _ = flush.tick() => false,
            _ = full.tick() => true,
        };
        let broker = shared.broker.clone();
        let _ =
            tokio::task::spawn_blocking(move || if full_pass { broker.run_maintenance() } else { broker.flush_due() })
                .await;
    }
}
