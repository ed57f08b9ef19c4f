//! weir-http: the HTTP/JSON API over weir-broker — topics, produce, read with long poll,
//! Server-Sent Events, consumer groups — plus `/metrics`, `/healthz`, `/readyz` and an
//! OpenAPI document generated from the route definitions.
//!
//! Architecture invariant: thin over weir-broker; no Kafka wire protocol, no storage logic.
//! It shares the broker's "something was appended" signal with the Kafka listener so long
//! polls on either side wake on appends from both.

mod api;
mod error;
mod metrics;
mod server;

pub use server::{HttpConfig, HttpServer, MetricsSource};
