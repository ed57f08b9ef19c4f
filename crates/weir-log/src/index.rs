//! Sparse offset index and time index of one segment, in memory and on disk.
//!
//! `.index`: entries of 8 bytes, relative offset u32 BE then byte position u32 BE, one per
//! `index_interval_bytes` of log. `.timeindex`: entries of 12 bytes, timestamp i64 BE then
//! relative offset u32 BE, timestamps strictly increasing. Both are derived data: any
//! inconsistency makes the log rebuild them from the segment.

pub const INDEX_ENTRY_LEN: usize = 8;
pub const TIME_ENTRY_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

pub fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * INDEX_ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(&e.relative_offset.to_be_bytes());
        out.extend_from_slice(&e.position.to_be_bytes());
    }
    out
}

pub fn encode_time_index(entries: &[TimeEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TIME_ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        out.extend_from_slice(&e.relative_offset.to_be_bytes());
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes an offset index; checks shape, strict monotonicity and that every position lies
/// inside a segment of `segment_size` bytes.
pub fn decode_index(bytes: &[u8], segment_size: u64) -> Result<Vec<IndexEntry>, &'static str> {
    if !bytes.len().is_multiple_of(INDEX_ENTRY_LEN) {
        return Err("size is not a multiple of 8");
    }
    let mut out = Vec::with_capacity(bytes.len() / INDEX_ENTRY_LEN);
    for chunk in bytes.chunks_exact(INDEX_ENTRY_LEN) {
        let e = IndexEntry { relative_offset: u32_at(chunk, 0), position: u32_at(chunk, 4) };
        if u64::from(e.position) >= segment_size {
            return Err("entry points past the end of the segment");
        }
        if let Some(prev) = out.last() {
            let prev: &IndexEntry = prev;
            if e.relative_offset <= prev.relative_offset || e.position <= prev.position {
                return Err("entries are not increasing");
            }
        }
        out.push(e);
    }
    Ok(out)
}

/// Decodes a time index; checks shape and strictly increasing timestamps and offsets not
/// past `offset_span` (the segment's number of offsets).
pub fn decode_time_index(bytes: &[u8], offset_span: u64) -> Result<Vec<TimeEntry>, &'static str> {
    if !bytes.len().is_multiple_of(TIME_ENTRY_LEN) {
        return Err("size is not a multiple of 12");
    }
    let mut out: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_LEN);
    for chunk in bytes.chunks_exact(TIME_ENTRY_LEN) {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&chunk[..8]);
        let e = TimeEntry { timestamp: i64::from_be_bytes(ts), relative_offset: u32_at(chunk, 8) };
        if u64::from(e.relative_offset) >= offset_span.max(1) {
            return Err("entry points past the end of the segment");
        }
        if let Some(prev) = out.last() {
            if e.timestamp <= prev.timestamp || e.relative_offset < prev.relative_offset {
                return Err("entries are not increasing");
            }
        }
        out.push(e);
    }
    Ok(out)
}
