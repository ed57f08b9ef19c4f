//! One client connection: framing with limits, then requests handled one at a time, so
//! responses go out in request order (as Kafka brokers do: a connection is muted while
//! its request is in flight; pipelined requests wait in the socket buffer).

use crate::dispatch;
use crate::metrics;
use crate::server::Shared;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

/// Size prefix (4) + api key, version, correlation id (8).
const FRAME_BYTES_MIN: usize = 8;

pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    metrics::CONNECTIONS.inc();
    serve_inner(shared, stream, peer, shutdown).await;
    metrics::CONNECTIONS.dec();
}

async fn serve_inner(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, mut shutdown: watch::Receiver<bool>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::new();
    let cfg = &shared.config;
    loop {
        let mut size = [0u8; 4];
        // Idle: wait for the first byte of the next frame, or shutdown.
        let first = tokio::select! {
            r = timeout(cfg.idle_timeout, rd.read_exact(&mut size[..1])) => r,
            _ = shutdown.changed() => return,
        };
        match first {
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection");
                return;
            }
            Ok(Err(_)) => return, // disconnected
            Ok(Ok(_)) => {}
        }
        // From here the whole frame must arrive within the request timeout.
        let deadline = Instant::now() + cfg.request_timeout;
        match timeout_at(deadline, rd.read_exact(&mut size[1..])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "disconnected while sending a frame size");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "client too slow sending a frame size; closing");
                return;
            }
        }
        let len = i32::from_be_bytes(size);
        if len < FRAME_BYTES_MIN as i32 || len as usize > cfg.frame_bytes_max {
            tracing::warn!(%peer, frame_bytes = len, max = cfg.frame_bytes_max, "frame size out of range; closing");
            return;
        }
        let len = len as usize;
        // Bound memory across connections before allocating the frame.
        let permit = match timeout_at(deadline, shared.inflight.clone().acquire_many_owned(len as u32)).await {
            Ok(Ok(p)) => p,
            _ => {
                tracing::warn!(%peer, frame_bytes = len, "in-flight byte budget exhausted for too long; closing");
                return;
            }
        };
        buf.clear();
        buf.resize(len, 0);
        match timeout_at(deadline, rd.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                tracing::debug!(%peer, "disconnected mid-request");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, frame_bytes = len, timeout_ms = cfg.request_timeout.as_millis() as u64, "request not received in time; closing");
                return;
            }
        }
        metrics::BYTES_IN.add(len as u64 + 4);
        let frame = buf.split().freeze();
        let reply = dispatch::handle(&shared, peer, frame).await;
        match reply {
            Ok(Some(response)) => {
                metrics::BYTES_OUT.add(response.len() as u64);
                match timeout(cfg.request_timeout, wr.write_all(&response)).await {
                    Ok(Ok(())) => {}
                    // A client that exits (kcat, a pipeline, the bench) closes with requests
                    // in flight: nothing went wrong on our side.
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "client closed the connection before its response");
                        return;
                    }
                    // The socket stayed full for the whole timeout: a reader that is stuck.
                    Err(_) => {
                        tracing::warn!(%peer, timeout_ms = cfg.request_timeout.as_millis() as u64, "client did not take its response in time; closing");
                        return;
                    }
                }
            }
            Ok(None) => {}
            Err(reason) => {
                metrics::PROTOCOL_ERRORS.inc();
                tracing::warn!(%peer, %reason, "closing connection");
                return;
            }
        }
        drop(permit);
    }
}
