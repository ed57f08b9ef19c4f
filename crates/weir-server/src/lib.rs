//! weir-server: the Kafka wire protocol over weir-broker. Framing with limits checked before
//! allocating, request decode/encode with the `kafka-protocol` crate, dispatch to handlers,
//! error-code mapping, graceful shutdown.
//!
//! Architecture invariant: no storage logic here (weir-broker owns it); no HTTP.

mod api;
mod config;
mod connection;
mod consumer_protocol;
mod dispatch;
pub mod errors;
pub mod fuzzing;
pub mod metrics;
mod server;
pub mod versions;

pub use config::ServerConfig;
pub use server::Server;
