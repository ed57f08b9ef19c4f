//! Records of the internal `__consumer_offsets` topic (compacted), as documented in
//! docs/log-format.md. Keys and values are small big-endian binary structs with a version.

use bytes::{Buf, BufMut};

pub const TOPIC: &str = "__consumer_offsets";
const KEY_OFFSET: u8 = 0;
const KEY_GROUP: u8 = 1;
const VALUE_VERSION: u8 = 0;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

/// What one record of the offsets topic says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<Committed>,
    },
    /// Group metadata: the generation, so ids never go back after a restart; None deletes.
    Group {
        group: String,
        value: Option<(i32, String)>,
    },
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn get_str(buf: &mut &[u8]) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = buf.get_u16() as usize;
    if buf.remaining() < len {
        return None;
    }
    let s = std::str::from_utf8(&buf[..len]).ok()?.to_owned();
    buf.advance(len);
    Some(s)
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = vec![KEY_OFFSET];
    put_str(&mut k, group);
    put_str(&mut k, topic);
    k.put_i32(partition);
    k
}

pub fn group_key(group: &str) -> Vec<u8> {
    let mut k = vec![KEY_GROUP];
    put_str(&mut k, group);
    k
}

pub fn offset_value(c: &Committed) -> Vec<u8> {
    let mut v = vec![VALUE_VERSION];
    v.put_i64(c.offset);
    v.put_i32(c.leader_epoch);
    v.put_i64(c.commit_timestamp);
    match &c.metadata {
        None => v.put_u16(u16::MAX),
        Some(m) => put_str(&mut v, m),
    }
    v
}

pub fn group_value(generation: i32, protocol_type: &str) -> Vec<u8> {
    let mut v = vec![VALUE_VERSION];
    v.put_i32(generation);
    put_str(&mut v, protocol_type);
    v
}

/// Decodes one record; None for anything malformed (logged by the caller).
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<StoreRecord> {
    let mut k = key;
    if k.is_empty() {
        return None;
    }
    let kind = k.get_u8();
    match kind {
        KEY_OFFSET => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            if k.remaining() != 4 {
                return None;
            }
            let partition = k.get_i32();
            let value = match value {
                None => None,
                Some(mut v) => {
                    if v.remaining() < 1 + 8 + 4 + 8 + 2 || v.get_u8() != VALUE_VERSION {
                        return None;
                    }
                    let offset = v.get_i64();
                    let leader_epoch = v.get_i32();
                    let commit_timestamp = v.get_i64();
                    let metadata = if v.chunk().starts_with(&[0xff, 0xff]) { None } else { Some(get_str(&mut v)?) };
                    Some(Committed { offset, leader_epoch, metadata, commit_timestamp })
                }
            };
            Some(StoreRecord::Offset { group, topic, partition, value })
        }
        KEY_GROUP => {
            let group = get_str(&mut k)?;
            let value = match value {
                None => None,
                Some(mut v) => {
                    if v.remaining() < 1 + 4 || v.get_u8() != VALUE_VERSION {
                        return None;
                    }
                    let generation = v.get_i32();
                    Some((generation, get_str(&mut v)?))
                }
            };
            Some(StoreRecord::Group { group, value })
        }
        _ => None,
    }
}
