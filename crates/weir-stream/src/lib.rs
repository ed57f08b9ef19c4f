//! weir-stream: stream processing over Kafka-protocol logs — filter, map, flat_map, key_by,
//! dedup, and windowed aggregation (tumbling, sliding, session) in event time, with
//! per-partition watermarks, allowed lateness and a dead-letter output for late or
//! malformed events (never silently dropped). `TestDriver` runs a pipeline with controlled
//! event and processing times.
//!
//! Sources: a Kafka topic through a consumer group (`kafka`, via rdkafka), JSON Lines files
//! (`jsonl`) and the Nexmark generator (`nexmark`). Sinks (`sink`): Kafka, PostgreSQL, SQLite
//! (upsert by key, checkpoints in the same transaction), JSON Lines and stdout. YAML specs with
//! CEL expressions (`spec`).
//!
//! Architecture invariant: depends on no broker crate — pipelines reach brokers only through
//! a Kafka client, so they run against any Kafka cluster.

pub mod aggregate;
mod dedup;
pub mod driver;
pub mod event;
pub mod join;
pub mod jsonl;
pub mod kafka;
pub mod metrics;
pub mod nexmark;
pub mod pipeline;
pub mod postgres;
pub mod sink;
pub mod spec;
pub mod sqlite;
pub mod watermark;
pub mod window;
mod windowed;

pub use aggregate::{Aggregate, UserAggregate};
pub use driver::TestDriver;
pub use event::{DeadLetter, DeadLetterReason, Event, WindowResult};
pub use join::{Joined, Side, WindowJoin};
pub use pipeline::{Checkpoint, Outputs, Pipeline, PipelineBuilder};
pub use window::Window;
pub use windowed::WindowSpec;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    #[error("invalid pipeline: {0}")]
    InvalidSpec(&'static str),
    #[error("state bound exceeded: {open_windows} entries, limit {max}")]
    StateTooLarge { open_windows: usize, max: usize },
}
