//! Process-wide storage metrics. Statics so that observing costs one atomic add and needs no
//! handle; a process runs one broker.

use weir_metrics::{Counter, Gauge, Histogram, Text};

/// Latency of fdatasync on segment files.
pub static FSYNC_SECONDS: Histogram = Histogram::new();
/// Batches cut off the end of a log during recovery (torn or invalid tails).
pub static RECOVERY_TRUNCATIONS: Counter = Counter::new();
/// Corrupt batches detected on read (never served).
pub static CORRUPT_READS: Counter = Counter::new();
/// Compaction passes that rewrote at least one segment, and the records they removed.
pub static COMPACTION_RUNS: Counter = Counter::new();
pub static COMPACTION_RECORDS_REMOVED: Counter = Counter::new();
/// Segments deleted by retention or DeleteRecords.
pub static SEGMENTS_DELETED: Counter = Counter::new();

/// Descriptors held by [`crate::PooledStorage`], and how many it closed to stay within its
/// budget and reopened on access.
pub static FILES_OPEN: Gauge = Gauge::new();
pub static FILES_EVICTED: Counter = Counter::new();
pub static FILES_REOPENED: Counter = Counter::new();

pub fn render(t: &mut Text) {
    t.family("weir_log_files_open", "gauge", "Log files with an open descriptor");
    t.sample("weir_log_files_open", "", FILES_OPEN.get() as f64);
    t.family("weir_fsync_seconds", "histogram", "Latency of fdatasync on log segments");
    t.histogram("weir_fsync_seconds", "", &FSYNC_SECONDS);
    for (name, help, c) in [
        ("weir_recovery_truncations_total", "Torn or invalid log tails cut during recovery", &RECOVERY_TRUNCATIONS),
        ("weir_corrupt_reads_total", "Corrupt batches detected on read and refused", &CORRUPT_READS),
        ("weir_compaction_runs_total", "Compaction passes that rewrote segments", &COMPACTION_RUNS),
        ("weir_compaction_records_removed_total", "Records removed by compaction", &COMPACTION_RECORDS_REMOVED),
        ("weir_segments_deleted_total", "Segments deleted by retention or DeleteRecords", &SEGMENTS_DELETED),
        ("weir_log_files_evicted_total", "Descriptors closed to stay within --open-files-max", &FILES_EVICTED),
        ("weir_log_files_reopened_total", "Log files reopened after their descriptor was closed", &FILES_REOPENED),
    ] {
        t.family(name, "counter", help);
        t.sample(name, "", c.get() as f64);
    }
}
