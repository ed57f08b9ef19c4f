//! weir-pipeline: runs weir-stream pipelines. Sources: a Kafka topic through a consumer group
//! (`kafka`, via rdkafka), JSON Lines files (`jsonl`) and the Nexmark generator (`nexmark`).
//! Sinks (`sink`): Kafka, PostgreSQL, SQLite (upsert by key, checkpoints in the same
//! transaction), JSON Lines and stdout. The YAML front end (`yaml`, CEL expressions) compiles
//! specs to weir-stream pipelines.
//!
//! Architecture invariant: depends on no broker crate — pipelines reach brokers only through
//! a Kafka client, so they run against any Kafka cluster.

pub mod cel_env;
pub mod expr_check;
pub mod fast_expr;
pub mod jsonl;
pub mod kafka;
pub mod metrics;
pub mod nexmark;
pub mod postgres;
pub mod projection;
pub mod rows;
pub mod runner;
pub mod sink;
pub mod source;
pub mod sql;
pub mod sqlite;
pub mod yaml;

/// The engine, for callers that build pipelines in Rust.
pub use weir_stream as engine;
