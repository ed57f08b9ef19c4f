//! Topics: name rules, stable ids, persisted metadata and their partitions.

use crate::config::TopicOverrides;
use crate::error::BrokerError;
use crate::partition::Partition;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use weir_log::unpoisoned::UnpoisonedRwLock;

pub const TOPIC_NAME_LEN_MAX: usize = 249;
pub const META_FILE: &str = "topic.json";

/// Kafka's topic-name rules: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    let bad = |reason| Err(BrokerError::InvalidTopic { name: name.to_owned(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// What topic.json holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct TopicMeta {
    /// Topic UUID, 32 hex digits.
    pub id: String,
    pub partitions: i32,
    pub configs: TopicOverrides,
}

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    /// Stable topic UUID (Metadata v10+), fixed at creation.
    pub id: [u8; 16],
    pub(crate) dir: PathBuf,
    pub(crate) overrides: RwLock<TopicOverrides>,
    pub(crate) partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read_unpoisoned().clone()
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let parts = self.partitions.read_unpoisoned();
        usize::try_from(index).ok().and_then(|i| parts.get(i).cloned())
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions.read_unpoisoned().len() as i32
    }

    pub fn overrides(&self) -> TopicOverrides {
        self.overrides.read_unpoisoned().clone()
    }

    pub(crate) fn partition_dir(dir: &Path, index: i32) -> PathBuf {
        dir.join(index.to_string())
    }

    pub(crate) fn meta(&self) -> TopicMeta {
        TopicMeta { id: hex(&self.id), partitions: self.partition_count(), configs: self.overrides() }
    }
}

pub fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_hex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A random (version 4) UUID.
pub(crate) fn random_uuid() -> [u8; 16] {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}
