//! weir-stream: the stream engine. Stages of operators — filter, map, flat_map, key_by, dedup,
//! windowed aggregation (tumbling, sliding, session; several aggregates and top-N per window),
//! joins — driven by events and event-time watermarks, with allowed lateness and dead letters
//! for late or malformed events (never silently dropped), and checkpointable state.
//! `TestDriver` runs a pipeline with controlled event and processing times.
//!
//! Architecture invariant: knows nothing of sources, sinks, Kafka clients, databases or YAML.
//! Front ends (YAML, SQL) compile to its stages; weir-pipeline runs them.

pub mod aggregate;
mod dedup;
pub mod driver;
pub mod duration;
pub mod event;
pub mod join;
pub mod keyed_join;
pub mod pipeline;
pub mod topn;
pub mod watermark;
pub mod window;
mod windowed;

pub use aggregate::{Aggregate, UserAggregate};
pub use driver::TestDriver;
pub use event::{DeadLetter, DeadLetterReason, Event, ResultKind, WindowResult};
pub use join::{Joined, Side, WindowJoin};
pub use keyed_join::{JoinKind, JoinSpec};
pub use pipeline::{Checkpoint, Outputs, Pipeline, PipelineBuilder};
pub use topn::TopNSpec;
pub use window::Window;
pub use windowed::{NamedAggregate, WindowSpec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    #[error("invalid pipeline: {0}")]
    InvalidSpec(&'static str),
    #[error("state bound exceeded: {open_windows} entries, limit {max}")]
    StateTooLarge { open_windows: usize, max: usize },
}
