//! Entry points for fuzzing: batch validation and segment recovery on arbitrary bytes.

use crate::fault::MemStorage;
use crate::{Log, LogConfig, ManualClock, ValidatedBatch};
use std::path::Path;
use std::sync::Arc;

/// Validates `bytes` as a producer batch and, when valid, decodes all its records.
pub fn validate_batch(bytes: &[u8]) {
    if let Ok(b) = ValidatedBatch::new(bytes, 1 << 20) {
        let _ = crate::codec::for_each_record(bytes, b.header(), |_| {});
    }
}

/// Opens a log whose only segment holds `bytes` (with or without a checkpoint claiming it
/// durable), then reads everything it recovered. Recovery must never panic and never serve
/// an invalid batch.
pub fn recover_segment(bytes: &[u8], trusted: bool) {
    let storage = Arc::new(MemStorage::new());
    let dir = Path::new("/fuzz");
    let write = |name: &str, data: &[u8]| {
        if let Ok(f) = crate::Storage::open(&*storage, &dir.join(name), true) {
            let _ = f.write_all_at(data, 0);
            let _ = f.sync_data();
        }
    };
    write("00000000000000000000.log", bytes);
    // A second segment makes the first one "closed"; the checkpoint then trusts it.
    write("00000000000000001000.log", &[]);
    if trusted {
        let cp = crate::checkpoint::Checkpoint { recovery_point: 1000, log_start_offset: 0 };
        write(crate::checkpoint::FILE_NAME, &cp.encode());
    }
    let config = LogConfig { segment_ms: None, retention_ms: None, ..LogConfig::default() };
    let Ok(log) = Log::open(dir, config, storage, Arc::new(ManualClock::new(0))) else { return };
    let mut offset = log.log_start_offset();
    let mut buf = bytes::BytesMut::new();
    while offset < log.log_end_offset() {
        buf.clear();
        match log.read(offset, 1 << 16, &mut buf) {
            Ok(info) if info.bytes > 0 => {
                let mut pos = 0;
                while pos < buf.len() {
                    let h = crate::batch::validate_stored(&buf[pos..]).expect("the log served an invalid batch");
                    offset = h.last_offset() as u64 + 1;
                    pos += h.total_len();
                }
            }
            _ => break,
        }
    }
}
