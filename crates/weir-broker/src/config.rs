//! Broker-wide settings and per-topic config overrides (Kafka topic config names).

use crate::error::BrokerError;
use std::collections::BTreeMap;
use weir_log::{CleanupPolicy, Durability, LogConfig};

/// Settings of the broker as a whole.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: std::path::PathBuf,
    pub node_id: i32,
    /// Partitions of auto-created topics and of CreateTopics with num_partitions = -1.
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    /// Storage defaults every topic starts from.
    pub log: LogConfig,
    /// How often retention and compaction run.
    pub maintenance_interval_ms: u64,
    pub group: crate::group::GroupConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: "./data".into(),
            node_id: 0,
            default_partitions: 1,
            auto_create_topics: true,
            log: LogConfig::default(),
            maintenance_interval_ms: 60_000,
            group: crate::group::GroupConfig::default(),
        }
    }
}

/// Limits of partition counts: each partition is a directory and open files.
pub const PARTITIONS_MAX: i32 = 10_000;

/// Names of the topic configs Weir understands, as Kafka spells them.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "max.message.bytes",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

/// Explicitly set topic configs (the rest come from the broker defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicOverrides(pub BTreeMap<String, String>);

fn invalid(key: &str, value: &str, reason: &'static str) -> BrokerError {
    BrokerError::InvalidConfig { key: key.to_owned(), value: value.to_owned(), reason }
}

fn parse_i64(key: &str, value: &str) -> Result<i64, BrokerError> {
    value.trim().parse::<i64>().map_err(|_| invalid(key, value, "not an integer"))
}

/// Applies one config to a log config; errors name the key and say why.
pub fn apply_config(log: &mut LogConfig, key: &str, value: &str) -> Result<(), BrokerError> {
    match key {
        "retention.ms" => {
            let v = parse_i64(key, value)?;
            log.retention_ms = if v < 0 { None } else { Some(v) };
        }
        "retention.bytes" => {
            let v = parse_i64(key, value)?;
            log.retention_bytes = if v < 0 { None } else { Some(v as u64) };
        }
        "segment.bytes" => {
            let v = parse_i64(key, value)?;
            if !(1024..=weir_log::SEGMENT_BYTES_MAX as i64).contains(&v) {
                return Err(invalid(key, value, "must be between 1024 and 2147483647"));
            }
            log.segment_bytes = v as u64;
        }
        "segment.ms" => {
            let v = parse_i64(key, value)?;
            if v < 1 {
                return Err(invalid(key, value, "must be positive"));
            }
            log.segment_ms = Some(v);
        }
        "max.message.bytes" => {
            let v = parse_i64(key, value)?;
            if !(61..=weir_log::SEGMENT_BYTES_MAX as i64).contains(&v) {
                return Err(invalid(key, value, "must be between 61 and 2147483647"));
            }
            log.max_batch_bytes = v as usize;
        }
        "delete.retention.ms" => {
            let v = parse_i64(key, value)?;
            if v < 0 {
                return Err(invalid(key, value, "must not be negative"));
            }
            log.delete_retention_ms = v;
        }
        "cleanup.policy" => {
            let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
            parts.sort_unstable();
            log.cleanup_policy = match parts.as_slice() {
                ["delete"] => CleanupPolicy::Delete,
                ["compact"] => CleanupPolicy::Compact,
                ["compact", "delete"] => CleanupPolicy::CompactDelete,
                _ => return Err(invalid(key, value, "must be delete, compact or compact,delete")),
            };
        }
        "compression.type" => {
            // Batches are stored exactly as produced; recompression is not implemented.
            if value != "producer" {
                return Err(invalid(key, value, "only 'producer' is supported: batches are stored as sent"));
            }
        }
        _ => return Err(invalid(key, value, "unknown topic config")),
    }
    Ok(())
}

/// The effective value of a config, as Kafka would print it.
pub fn describe_config(log: &LogConfig, key: &str) -> Option<String> {
    Some(match key {
        "retention.ms" => log.retention_ms.unwrap_or(-1).to_string(),
        "retention.bytes" => log.retention_bytes.map_or(-1, |v| v as i64).to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.ms" => log.segment_ms.unwrap_or(i64::MAX).to_string(),
        "max.message.bytes" => log.max_batch_bytes.to_string(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "cleanup.policy" => match log.cleanup_policy {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
        .to_owned(),
        "compression.type" => "producer".to_owned(),
        _ => return None,
    })
}

impl TopicOverrides {
    /// The log config of a topic: broker defaults plus these overrides.
    pub fn resolve(&self, defaults: &LogConfig) -> Result<LogConfig, BrokerError> {
        let mut log = *defaults;
        for (k, v) in &self.0 {
            apply_config(&mut log, k, v)?;
        }
        Ok(log)
    }
}

/// Parses a durability policy: `always`, `never` or `interval:<ms>`.
pub fn parse_durability(s: &str) -> Option<Durability> {
    match s {
        "always" => Some(Durability::Always),
        "never" => Some(Durability::Never),
        _ => s.strip_prefix("interval:").and_then(|ms| ms.parse().ok()).map(Durability::IntervalMs),
    }
}
