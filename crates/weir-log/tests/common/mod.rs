#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]
use bytes::BytesMut;
use std::sync::Arc;
use weir_log::record::Records;
use weir_log::{BatchBuilder, BatchHeader, Clock, Log, LogConfig, ManualClock, Storage, ValidatedBatch};

/// A record as the tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

pub fn batch_of(records: &[(i64, Option<&[u8]>, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (ts, k, v) in records {
        b.push(*ts, *k, *v);
    }
    b.build()
}

/// A batch of `n` records of `size` bytes each, values tagged with `tag`.
pub fn simple_batch(n: usize, size: usize, ts: i64, tag: u64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        let mut v = format!("{tag}-{i}-").into_bytes();
        v.resize(size.max(v.len()), b'x');
        b.push(ts, Some(format!("k{i}").as_bytes()), Some(&v));
    }
    b.build()
}

pub fn append(log: &Log, bytes: &[u8]) -> weir_log::AppendInfo {
    let v = ValidatedBatch::new(bytes, usize::MAX).expect("valid batch");
    log.append(&[v]).expect("append")
}

/// Reads every record from the log start to the high watermark.
pub fn read_all(log: &Log) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut buf = BytesMut::new();
    loop {
        buf.clear();
        let info = log.read(offset, 64 * 1024, &mut buf).expect("read");
        if info.bytes == 0 {
            if offset >= info.high_watermark {
                break;
            }
            panic!("no progress at offset {offset}");
        }
        let mut pos = 0;
        while pos < buf.len() {
            let h = BatchHeader::parse(&buf[pos..]).expect("header");
            let bytes = &buf[pos..pos + h.total_len()];
            for r in Records::new(bytes, &h) {
                let r = r.expect("record");
                let off = h.base_offset as u64 + r.offset_delta as u64;
                if off >= offset {
                    out.push(Rec {
                        offset: off,
                        timestamp: h.base_timestamp + r.timestamp_delta,
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.map(<[u8]>::to_vec),
                    });
                }
            }
            offset = offset.max(h.last_offset() as u64 + 1);
            pos += h.total_len();
        }
    }
    out
}

pub fn open(dir: &std::path::Path, config: LogConfig, storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Log {
    Log::open(dir, config, storage, clock).expect("open")
}

pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(1_700_000_000_000))
}

pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}
