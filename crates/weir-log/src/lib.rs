//! weir-log: one partition's log on local disk.
//!
//! The unit of storage is a Kafka RecordBatch v2, kept byte-for-byte as the client sent it
//! (the log only assigns the base offset, which lies outside the CRC). Segments are named by
//! their 20-digit base offset and come with a sparse offset index and a time index. Disk and
//! time are reached only through [`Storage`] and [`Clock`], so tests inject crashes, full
//! disks and moving clocks. The byte layout of every file is in docs/log-format.md.
//!
//! Architecture invariant: this crate knows batch headers and records, never requests,
//! sockets, async runtimes or topic names.

pub mod batch;
mod builder;
pub mod checkpoint;
mod clock;
pub mod codec;
mod compaction;
mod config;
mod error;
pub mod fault;
pub mod fuzzing;
pub mod index;
mod log;
pub mod metrics;
mod pool;
pub mod record;
mod recovery;
mod retention;
mod segment;
mod storage;
pub mod unpoisoned;

pub use batch::{BatchHeader, ValidatedBatch};
pub use builder::BatchBuilder;
pub use clock::{Clock, ManualClock, SystemClock};
pub use compaction::CompactionStats;
pub use config::{CleanupPolicy, Durability, LogConfig, SEGMENT_BYTES_MAX};
pub use error::{BatchError, LogError};
pub use log::{AppendInfo, Log, LogStats, ReadInfo, SegmentInfo};
pub use pool::{PooledStorage, OPEN_FILES_MIN};
pub use retention::RetentionStats;
pub use storage::{
    read_whole, run_parallel, sync_dirs, write_atomic, DiskSpace, FsStorage, Storage, StorageFile, SYNC_THREADS_MAX,
};
