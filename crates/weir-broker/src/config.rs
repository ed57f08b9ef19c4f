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

/// How a topic stamps record times (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps are kept (checked against the before/after bounds).
    #[default]
    CreateTime,
    /// The broker overwrites each batch's maxTimestamp with the append time and sets the
    /// log-append-time attribute; consumers see that time for every record.
    LogAppendTime,
}

/// What the produce path enforces for a topic, beyond storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducePolicy {
    pub timestamp_type: TimestampType,
    /// CreateTime batches whose first timestamp is older than now minus this are refused
    /// (`message.timestamp.before.max.ms`; i64::MAX: no bound).
    pub timestamp_before_max_ms: i64,
    /// CreateTime batches whose maxTimestamp is later than now plus this are refused
    /// (`message.timestamp.after.max.ms`).
    pub timestamp_after_max_ms: i64,
    /// acks=all needs this many in-sync replicas; one node has one, so more refuses
    /// acks=all produce with NOT_ENOUGH_REPLICAS exactly as Kafka does.
    pub min_insync_replicas: i32,
}

impl Default for ProducePolicy {
    fn default() -> Self {
        Self {
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            min_insync_replicas: 1,
        }
    }
}

/// A topic's effective configuration: broker defaults plus its overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub log: LogConfig,
    pub produce: ProducePolicy,
    /// Explicit values of configs that are accepted and shown but change nothing on one
    /// node (see `CONFIGS`); the rest show their default.
    accepted: BTreeMap<&'static str, String>,
    flush_messages: i64,
    flush_ms: i64,
    timestamp_difference_max_ms: i64,
    before_set: bool,
    after_set: bool,
}

impl TopicConfig {
    /// The configuration of a topic without overrides.
    pub fn defaults(log: &LogConfig) -> Self {
        Self {
            log: *log,
            produce: ProducePolicy::default(),
            accepted: BTreeMap::new(),
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            timestamp_difference_max_ms: i64::MAX,
            before_set: false,
            after_set: false,
        }
    }

    /// Rules that combine several keys, applied once every key is in.
    fn finish(&mut self) {
        // flush.messages=1 syncs before every acknowledgement; flush.ms an interval. Unset,
        // the broker's durability policy applies.
        if self.flush_messages <= 1 {
            self.log.durability = Durability::Always;
        } else if self.flush_ms != i64::MAX {
            self.log.durability = Durability::IntervalMs(self.flush_ms.max(1) as u64);
        }
        // The deprecated difference bound applies where the new ones are not set (KIP-937).
        if !self.before_set {
            self.produce.timestamp_before_max_ms = self.timestamp_difference_max_ms;
        }
        if !self.after_set {
            self.produce.timestamp_after_max_ms = self.timestamp_difference_max_ms;
        }
    }
}

/// The value type of a config, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

/// What a config does on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Implemented: changes storage or produce behaviour.
    Applied,
    /// Validated, stored and shown; means nothing more on a single node without tiered
    /// storage (replication, throttles, preallocation, recompression levels, …).
    Accepted,
}

/// One topic config: Kafka's name, type, default as Kafka prints it, what it does here.
struct Config {
    name: &'static str,
    kind: ConfigKind,
    default: &'static str,
    effect: Effect,
}

const fn config(name: &'static str, kind: ConfigKind, default: &'static str, effect: Effect) -> Config {
    Config { name, kind, default, effect }
}

use ConfigKind as K;
use Effect::{Accepted, Applied};

/// Every topic config of Apache Kafka 3.x/4.x (`TopicConfig`), in Kafka's order. Defaults
/// of the applied ones come from the broker's settings (`describe_config`).
const CONFIGS: &[Config] = &[
    config("cleanup.policy", K::List, "delete", Applied),
    config("compression.gzip.level", K::Int, "-1", Accepted),
    config("compression.lz4.level", K::Int, "9", Accepted),
    config("compression.type", K::String, "producer", Applied),
    config("compression.zstd.level", K::Int, "3", Accepted),
    config("delete.retention.ms", K::Long, "86400000", Applied),
    config("file.delete.delay.ms", K::Long, "60000", Accepted),
    config("flush.messages", K::Long, "9223372036854775807", Applied),
    config("flush.ms", K::Long, "9223372036854775807", Applied),
    config("follower.replication.throttled.replicas", K::List, "", Accepted),
    config("index.interval.bytes", K::Int, "4096", Applied),
    config("leader.replication.throttled.replicas", K::List, "", Accepted),
    config("local.retention.bytes", K::Long, "-2", Accepted),
    config("local.retention.ms", K::Long, "-2", Accepted),
    config("max.compaction.lag.ms", K::Long, "9223372036854775807", Accepted),
    config("max.message.bytes", K::Int, "1048588", Applied),
    config("message.downconversion.enable", K::Boolean, "true", Accepted),
    config("message.format.version", K::String, "3.0-IV1", Accepted),
    config("message.timestamp.after.max.ms", K::Long, "9223372036854775807", Applied),
    config("message.timestamp.before.max.ms", K::Long, "9223372036854775807", Applied),
    config("message.timestamp.difference.max.ms", K::Long, "9223372036854775807", Applied),
    config("message.timestamp.type", K::String, "CreateTime", Applied),
    config("min.cleanable.dirty.ratio", K::Double, "0.5", Accepted),
    config("min.compaction.lag.ms", K::Long, "0", Applied),
    config("min.insync.replicas", K::Int, "1", Applied),
    config("preallocate", K::Boolean, "false", Accepted),
    config("remote.log.copy.disable", K::Boolean, "false", Accepted),
    config("remote.log.delete.on.disable", K::Boolean, "false", Accepted),
    config("remote.storage.enable", K::Boolean, "false", Accepted),
    config("retention.bytes", K::Long, "-1", Applied),
    config("retention.ms", K::Long, "604800000", Applied),
    config("segment.bytes", K::Int, "1073741824", Applied),
    config("segment.index.bytes", K::Int, "10485760", Accepted),
    config("segment.jitter.ms", K::Long, "0", Accepted),
    config("segment.ms", K::Long, "604800000", Applied),
    config("unclean.leader.election.enable", K::Boolean, "false", Accepted),
];

/// Names of the topic configs Weir understands, as Kafka spells them (all of Kafka's).
pub const TOPIC_CONFIG_KEYS: &[&str] = &{
    let mut names = [""; CONFIGS.len()];
    let mut i = 0;
    while i < CONFIGS.len() {
        names[i] = CONFIGS[i].name;
        i += 1;
    }
    names
};

/// The value type of a known config.
pub fn config_kind(key: &str) -> Option<ConfigKind> {
    CONFIGS.iter().find(|c| c.name == key).map(|c| c.kind)
}

/// Explicitly set topic configs (the rest come from the broker defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicOverrides(pub BTreeMap<String, String>);

fn invalid(key: &str, value: &str, reason: &'static str) -> BrokerError {
    BrokerError::InvalidConfig { key: key.to_owned(), value: value.to_owned(), reason }
}

fn parse_i64(key: &str, value: &str) -> Result<i64, BrokerError> {
    value.trim().parse::<i64>().map_err(|_| invalid(key, value, "not an integer"))
}

fn parse_range(key: &str, value: &str, min: i64, max: i64, reason: &'static str) -> Result<i64, BrokerError> {
    let v = parse_i64(key, value)?;
    if !(min..=max).contains(&v) {
        return Err(invalid(key, value, reason));
    }
    Ok(v)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, BrokerError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "must be true or false")),
    }
}

/// Checks a config that is accepted without effect.
fn check_accepted(key: &str, value: &str) -> Result<(), BrokerError> {
    let long = |min| parse_range(key, value, min, i64::MAX, "out of range").map(drop);
    match key {
        "compression.gzip.level" => {
            let v = parse_i64(key, value)?;
            if v != -1 && !(1..=9).contains(&v) {
                return Err(invalid(key, value, "must be -1 or between 1 and 9"));
            }
        }
        "compression.lz4.level" => drop(parse_range(key, value, 1, 17, "must be between 1 and 17")?),
        "compression.zstd.level" => drop(parse_range(key, value, -131_072, 22, "must be between -131072 and 22")?),
        "file.delete.delay.ms" | "segment.jitter.ms" => long(0)?,
        "max.compaction.lag.ms" => long(1)?,
        "local.retention.bytes" | "local.retention.ms" => long(-2)?,
        "segment.index.bytes" => drop(parse_range(key, value, 4, i64::from(i32::MAX), "must be at least 4")?),
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => {}
            _ => return Err(invalid(key, value, "must be a number between 0 and 1")),
        },
        "remote.storage.enable" => {
            if parse_bool(key, value)? {
                return Err(invalid(key, value, "tiered storage is not available on this broker"));
            }
        }
        "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => {
            let v = value.trim();
            let entry_ok = |e: &str| {
                let mut parts = e.trim().split(':');
                let ok = |p: Option<&str>| p.is_some_and(|p| p.trim().parse::<i32>().is_ok_and(|n| n >= 0));
                ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
            };
            if !(v.is_empty() || v == "*" || v.split(',').all(entry_ok)) {
                return Err(invalid(key, value, "must be empty, '*' or partition:broker pairs"));
            }
        }
        "message.format.version" => {
            if !value.trim().chars().next().is_some_and(|c| c.is_ascii_digit()) {
                return Err(invalid(key, value, "not a Kafka version"));
            }
        }
        _ => drop(parse_bool(key, value)?),
    }
    Ok(())
}

/// Applies one config; errors name the key and say why. Unknown names are refused.
pub fn apply_config(config: &mut TopicConfig, key: &str, value: &str) -> Result<(), BrokerError> {
    let Some(known) = CONFIGS.iter().find(|c| c.name == key) else {
        return Err(invalid(key, value, "unknown topic config"));
    };
    if known.effect == Accepted {
        check_accepted(key, value)?;
        config.accepted.insert(known.name, value.trim().to_owned());
        return Ok(());
    }
    let log = &mut config.log;
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
            let v = parse_range(
                key,
                value,
                1024,
                weir_log::SEGMENT_BYTES_MAX as i64,
                "must be between 1024 and 2147483647",
            )?;
            log.segment_bytes = v as u64;
        }
        "segment.ms" => {
            let v = parse_range(key, value, 1, i64::MAX, "must be positive")?;
            log.segment_ms = Some(v);
        }
        "max.message.bytes" => {
            let v =
                parse_range(key, value, 61, weir_log::SEGMENT_BYTES_MAX as i64, "must be between 61 and 2147483647")?;
            log.max_batch_bytes = v as usize;
        }
        "delete.retention.ms" => {
            log.delete_retention_ms = parse_range(key, value, 0, i64::MAX, "must not be negative")?
        }
        "min.compaction.lag.ms" => {
            log.min_compaction_lag_ms = parse_range(key, value, 0, i64::MAX, "must not be negative")?;
        }
        "index.interval.bytes" => {
            // 0 means an index entry for every batch.
            let v = parse_range(key, value, 0, i64::from(i32::MAX), "must not be negative")?;
            log.index_interval_bytes = v.max(1) as u32;
        }
        "flush.messages" => config.flush_messages = parse_range(key, value, 1, i64::MAX, "must be positive")?,
        "flush.ms" => config.flush_ms = parse_range(key, value, 0, i64::MAX, "must not be negative")?,
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
        "message.timestamp.type" => {
            config.produce.timestamp_type = match value.trim() {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => return Err(invalid(key, value, "must be CreateTime or LogAppendTime")),
            }
        }
        "message.timestamp.before.max.ms" => {
            config.produce.timestamp_before_max_ms = parse_range(key, value, 0, i64::MAX, "must not be negative")?;
            config.before_set = true;
        }
        "message.timestamp.after.max.ms" => {
            config.produce.timestamp_after_max_ms = parse_range(key, value, 0, i64::MAX, "must not be negative")?;
            config.after_set = true;
        }
        "message.timestamp.difference.max.ms" => {
            config.timestamp_difference_max_ms = parse_range(key, value, 0, i64::MAX, "must not be negative")?;
        }
        "min.insync.replicas" => {
            config.produce.min_insync_replicas =
                parse_range(key, value, 1, i64::from(i32::MAX), "must be at least 1")? as i32;
        }
        _ => unreachable!("every applied config is matched above: {key}"),
    }
    Ok(())
}

/// The effective value of a config, as Kafka would print it.
pub fn describe_config(config: &TopicConfig, key: &str) -> Option<String> {
    let known = CONFIGS.iter().find(|c| c.name == key)?;
    if known.effect == Accepted {
        return Some(config.accepted.get(known.name).cloned().unwrap_or_else(|| known.default.to_owned()));
    }
    let log = &config.log;
    let p = &config.produce;
    Some(match key {
        "retention.ms" => log.retention_ms.unwrap_or(-1).to_string(),
        "retention.bytes" => log.retention_bytes.map_or(-1, |v| v as i64).to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.ms" => log.segment_ms.unwrap_or(i64::MAX).to_string(),
        "max.message.bytes" => log.max_batch_bytes.to_string(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "flush.messages" => config.flush_messages.to_string(),
        "flush.ms" => config.flush_ms.to_string(),
        "cleanup.policy" => match log.cleanup_policy {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
        .to_owned(),
        "compression.type" => "producer".to_owned(),
        "message.timestamp.type" => match p.timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
        .to_owned(),
        "message.timestamp.before.max.ms" => p.timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => p.timestamp_after_max_ms.to_string(),
        "message.timestamp.difference.max.ms" => config.timestamp_difference_max_ms.to_string(),
        "min.insync.replicas" => p.min_insync_replicas.to_string(),
        _ => return None,
    })
}

impl TopicOverrides {
    /// The config of a topic: broker defaults plus these overrides.
    pub fn resolve(&self, defaults: &LogConfig) -> Result<TopicConfig, BrokerError> {
        let mut config = TopicConfig::defaults(defaults);
        for (k, v) in &self.0 {
            apply_config(&mut config, k, v)?;
        }
        config.finish();
        Ok(config)
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
