//! Records inside an uncompressed batch: zigzag varints, keys, values, timestamps.
//! Needed by compaction (keys) and timestamp lookup; produce and fetch never decode records.

use crate::batch::{BatchHeader, HEADER_LEN};
use crate::error::BatchError;

/// Decodes a zigzag varint (up to 64 bits) at `*pos`, advancing it.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// Decodes a zigzag varint that must fit in 32 bits.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let v = read_varlong(buf, pos)?;
    i32::try_from(v).ok()
}

/// Appends a zigzag varint.
pub fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One record, borrowing from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// None for a null key.
    pub key: Option<&'a [u8]>,
    /// None for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// The whole encoded record including its length prefix, to copy it unchanged.
    pub encoded: &'a [u8],
    /// The encoded headers section (count, then key/value pairs).
    headers: &'a [u8],
}

impl<'a> Record<'a> {
    /// The record's headers as (key, value); stops at the first malformed header.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let buf = self.headers;
        let mut pos = 0usize;
        let count = read_varint(buf, &mut pos).unwrap_or(0).max(0);
        (0..count).map_while(move |_| {
            let k = read_bytes(buf, &mut pos)??;
            let v = read_bytes(buf, &mut pos)?;
            Some((k, v))
        })
    }
}

/// Iterates the records of an uncompressed batch (`batch` = the whole batch bytes).
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    left: i32,
    /// Where the records section starts in `buf` (for error positions).
    start: usize,
}

impl<'a> Records<'a> {
    pub fn new(batch: &'a [u8], header: &BatchHeader) -> Self {
        let end = header.total_len().min(batch.len());
        Self { buf: &batch[..end], pos: HEADER_LEN, left: header.records_count, start: HEADER_LEN }
    }

    /// Iterates `count` records laid out back to back in `records` (a decompressed section).
    pub fn over(records: &'a [u8], count: i32) -> Self {
        Self { buf: records, pos: 0, left: count, start: 0 }
    }

    fn next_record(&mut self) -> Result<Record<'a>, BatchError> {
        let start = self.pos;
        let bad = BatchError::BadRecord { position: start - self.start };
        let mut p = self.pos;
        let len = read_varint(self.buf, &mut p).ok_or(bad.clone())?;
        let body_start = p;
        let end = usize::try_from(len).ok().and_then(|l| body_start.checked_add(l)).ok_or(bad.clone())?;
        if end > self.buf.len() {
            return Err(bad);
        }
        let body = &self.buf[..end];
        p += 1; // attributes
        let timestamp_delta = read_varlong(body, &mut p).ok_or(bad.clone())?;
        let offset_delta = read_varint(body, &mut p).ok_or(bad.clone())?;
        let key = read_bytes(body, &mut p).ok_or(bad.clone())?;
        let value = read_bytes(body, &mut p).ok_or(bad.clone())?;
        self.pos = end;
        Ok(Record { offset_delta, timestamp_delta, key, value, encoded: &self.buf[start..end], headers: &body[p..] })
    }
}

fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        return Some(None);
    }
    let end = pos.checked_add(len as usize)?;
    let s = buf.get(*pos..end)?;
    *pos = end;
    Some(Some(s))
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        let r = self.next_record();
        if r.is_err() {
            self.left = 0;
        }
        Some(r)
    }
}

/// Encodes one record (used by tests, benches and the HTTP produce path).
pub fn encode_record(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&[u8], Option<&[u8]>)],
) {
    let mut body = Vec::with_capacity(16 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
    body.push(0);
    write_varlong(&mut body, timestamp_delta);
    write_varlong(&mut body, i64::from(offset_delta));
    write_opt_bytes(&mut body, key);
    write_opt_bytes(&mut body, value);
    write_varlong(&mut body, headers.len() as i64);
    for (k, v) in headers {
        write_opt_bytes(&mut body, Some(k));
        write_opt_bytes(&mut body, *v);
    }
    write_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

fn write_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => write_varlong(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}
