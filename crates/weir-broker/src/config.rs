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
    fn finish(&mut self) -> Result<(), BrokerError> {
        // Kafka's LogConfig.validate: the lags must not cross.
        if self.log.min_compaction_lag_ms > self.log.max_compaction_lag_ms {
            return Err(BrokerError::InvalidConfig {
                key: "min.compaction.lag.ms".to_owned(),
                value: self.log.min_compaction_lag_ms.to_string(),
                reason: format!("must not exceed max.compaction.lag.ms ({})", self.log.max_compaction_lag_ms),
            });
        }
        // flush.messages=1 syncs before every acknowledgement; flush.ms an interval. Unset,
        // the broker's durability policy applies.
        // flush.messages=N>1 syncs in the append that leaves N offsets unsynced.
        if self.flush_messages <= 1 {
            self.log.durability = Durability::Always;
        } else if self.flush_ms != i64::MAX {
            self.log.durability = Durability::IntervalMs(self.flush_ms.max(1) as u64);
        }
        self.log.flush_messages =
            (self.flush_messages > 1 && self.flush_messages != i64::MAX).then_some(self.flush_messages as u64);
        // The deprecated difference bound applies where the new ones are not set (KIP-937).
        if !self.before_set {
            self.produce.timestamp_before_max_ms = self.timestamp_difference_max_ms;
        }
        if !self.after_set {
            self.produce.timestamp_after_max_ms = self.timestamp_difference_max_ms;
        }
        Ok(())
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

/// The values a config takes: Kafka's validator (`LogConfig`'s `atLeast`, `between`, `in`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Valid {
    /// An integer in `min..=max` (the upper bound is the type's unless Kafka sets one).
    Range(i64, i64),
    /// A number between 0 and 1.
    Ratio,
    Bool,
    OneOf(&'static [&'static str]),
    /// Lists and versions: checked by `check_special`.
    Special,
}

/// One topic config: Kafka's name, type, default as Kafka prints it, valid values, and
/// what it does here.
struct Config {
    name: &'static str,
    kind: ConfigKind,
    default: &'static str,
    valid: Valid,
    effect: Effect,
}

const fn config(name: &'static str, kind: ConfigKind, default: &'static str, valid: Valid, effect: Effect) -> Config {
    Config { name, kind, default, valid, effect }
}

use ConfigKind as K;
use Effect::{Accepted, Applied};

const INT_MAX: i64 = i32::MAX as i64;
const LONG_MAX: i64 = i64::MAX;
const fn at_least(min: i64, max: i64) -> Valid {
    Valid::Range(min, max)
}

/// Every topic config of Apache Kafka 3.x/4.x (`TopicConfig`), in Kafka's order, with the
/// valid values of Kafka's `LogConfig` (three are narrower here: `segment.bytes` ≥ 1024
/// rather than Kafka 4's 1 MiB, `max.message.bytes` ≥ 61, a batch header, rather than 0,
/// `retention.bytes` ≥ -1 rather than any long; see docs/topic-configs.md). Defaults of
/// the applied ones come from the broker's settings (`describe_config`).
const CONFIGS: &[Config] = &[
    config("cleanup.policy", K::List, "delete", Valid::Special, Applied),
    config("compression.gzip.level", K::Int, "-1", Valid::Special, Accepted),
    config("compression.lz4.level", K::Int, "9", at_least(1, 17), Accepted),
    config("compression.type", K::String, "producer", Valid::OneOf(COMPRESSION_TYPES), Applied),
    config("compression.zstd.level", K::Int, "3", at_least(-131_072, 22), Accepted),
    config("delete.retention.ms", K::Long, "86400000", at_least(0, LONG_MAX), Applied),
    config("file.delete.delay.ms", K::Long, "60000", at_least(0, LONG_MAX), Applied),
    config("flush.messages", K::Long, "9223372036854775807", at_least(1, LONG_MAX), Applied),
    config("flush.ms", K::Long, "9223372036854775807", at_least(0, LONG_MAX), Applied),
    config("follower.replication.throttled.replicas", K::List, "", Valid::Special, Accepted),
    config("index.interval.bytes", K::Int, "4096", at_least(0, INT_MAX), Applied),
    config("leader.replication.throttled.replicas", K::List, "", Valid::Special, Accepted),
    config("local.retention.bytes", K::Long, "-2", at_least(-2, LONG_MAX), Accepted),
    config("local.retention.ms", K::Long, "-2", at_least(-2, LONG_MAX), Accepted),
    config("max.compaction.lag.ms", K::Long, "9223372036854775807", at_least(1, LONG_MAX), Applied),
    config("max.message.bytes", K::Int, "1048588", at_least(61, INT_MAX), Applied),
    config("message.downconversion.enable", K::Boolean, "true", Valid::Bool, Accepted),
    config("message.format.version", K::String, "3.0-IV1", Valid::Special, Accepted),
    config("message.timestamp.after.max.ms", K::Long, "9223372036854775807", at_least(0, LONG_MAX), Applied),
    config("message.timestamp.before.max.ms", K::Long, "9223372036854775807", at_least(0, LONG_MAX), Applied),
    config("message.timestamp.difference.max.ms", K::Long, "9223372036854775807", at_least(0, LONG_MAX), Applied),
    config("message.timestamp.type", K::String, "CreateTime", Valid::OneOf(&["CreateTime", "LogAppendTime"]), Applied),
    config("min.cleanable.dirty.ratio", K::Double, "0.5", Valid::Ratio, Applied),
    config("min.compaction.lag.ms", K::Long, "0", at_least(0, LONG_MAX), Applied),
    config("min.insync.replicas", K::Int, "1", at_least(1, INT_MAX), Applied),
    config("preallocate", K::Boolean, "false", Valid::Bool, Accepted),
    config("remote.log.copy.disable", K::Boolean, "false", Valid::Bool, Accepted),
    config("remote.log.delete.on.disable", K::Boolean, "false", Valid::Bool, Accepted),
    config("remote.storage.enable", K::Boolean, "false", Valid::Bool, Accepted),
    config("retention.bytes", K::Long, "-1", at_least(-1, LONG_MAX), Applied),
    config("retention.ms", K::Long, "604800000", at_least(-1, LONG_MAX), Applied),
    config("segment.bytes", K::Int, "1073741824", at_least(1024, INT_MAX), Applied),
    config("segment.index.bytes", K::Int, "10485760", at_least(4, INT_MAX), Applied),
    config("segment.jitter.ms", K::Long, "0", at_least(0, LONG_MAX), Applied),
    config("segment.ms", K::Long, "604800000", at_least(1, LONG_MAX), Applied),
    config("unclean.leader.election.enable", K::Boolean, "false", Valid::Bool, Accepted),
];

/// Kafka's `compression.type` values; only `producer` is implemented (checked on apply).
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

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

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> BrokerError {
    BrokerError::InvalidConfig { key: key.to_owned(), value: value.to_owned(), reason: reason.into() }
}

/// The valid range in words, as the error names it.
fn range_text(kind: ConfigKind, min: i64, max: i64) -> String {
    let type_max = if kind == K::Int { INT_MAX } else { LONG_MAX };
    let what = if kind == K::Int { "an integer" } else { "a long integer" };
    if max == type_max {
        format!("must be {what} of at least {min} (valid: [{min},...,{type_max}])")
    } else {
        format!("must be {what} between {min} and {max} (valid: [{min},...,{max}])")
    }
}

/// An integer config's value, range-checked.
fn int(c: &Config, value: &str) -> Result<i64, BrokerError> {
    let Valid::Range(min, max) = c.valid else {
        unreachable!("{} is not an integer config", c.name);
    };
    match value.trim().parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(invalid(c.name, value, range_text(c.kind, min, max))),
    }
}

fn boolean(c: &Config, value: &str) -> Result<bool, BrokerError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(c.name, value, "must be true or false")),
    }
}

fn ratio(c: &Config, value: &str) -> Result<f64, BrokerError> {
    match value.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(invalid(c.name, value, "must be a number between 0 and 1 (valid: [0,...,1])")),
    }
}

/// Validates one value of a known config against its valid range: the one check every
/// front end goes through (CreateTopics, AlterConfigs, IncrementalAlterConfigs, HTTP, the
/// serve flags), so a value is refused the same way everywhere, naming key, value and range.
fn validate(c: &Config, value: &str) -> Result<(), BrokerError> {
    match c.valid {
        Valid::Range(..) => drop(int(c, value)?),
        Valid::Ratio => drop(ratio(c, value)?),
        Valid::Bool => drop(boolean(c, value)?),
        Valid::OneOf(choices) => {
            if !choices.contains(&value.trim()) {
                return Err(invalid(c.name, value, format!("must be one of {}", choices.join(", "))));
            }
        }
        Valid::Special => check_special(c.name, value)?,
    }
    Ok(())
}

/// Configs whose values are lists or versions.
fn check_special(key: &str, value: &str) -> Result<(), BrokerError> {
    match key {
        "compression.gzip.level" => {
            let ok = value.trim().parse::<i64>().is_ok_and(|v| v == -1 || (1..=9).contains(&v));
            if !ok {
                return Err(invalid(key, value, "must be -1 or an integer between 1 and 9 (valid: -1, [1,...,9])"));
            }
        }
        "cleanup.policy" => {
            let ok = value.split(',').map(str::trim).all(|p| p == "compact" || p == "delete");
            if !ok || value.trim().is_empty() {
                return Err(invalid(key, value, "must be delete, compact or compact,delete"));
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
                return Err(invalid(key, value, "must be a Kafka version such as 3.0-IV1"));
            }
        }
        _ => unreachable!("{key} has no special check"),
    }
    Ok(())
}

/// Applies one config; errors name the key, the value and the valid range. Unknown names
/// are refused.
pub fn apply_config(config: &mut TopicConfig, key: &str, value: &str) -> Result<(), BrokerError> {
    let Some(c) = CONFIGS.iter().find(|c| c.name == key) else {
        return Err(invalid(key, value, "unknown topic config"));
    };
    validate(c, value)?;
    if c.effect == Accepted {
        if c.name == "remote.storage.enable" && boolean(c, value)? {
            return Err(invalid(key, value, "tiered storage is not available on this broker"));
        }
        config.accepted.insert(c.name, value.trim().to_owned());
        return Ok(());
    }
    let log = &mut config.log;
    match key {
        "retention.ms" => {
            let v = int(c, value)?;
            log.retention_ms = (v >= 0).then_some(v);
        }
        "retention.bytes" => {
            let v = int(c, value)?;
            log.retention_bytes = (v >= 0).then_some(v as u64);
        }
        "segment.bytes" => log.segment_bytes = int(c, value)? as u64,
        "segment.ms" => log.segment_ms = Some(int(c, value)?),
        "segment.jitter.ms" => log.segment_jitter_ms = int(c, value)?,
        "segment.index.bytes" => log.segment_index_bytes = int(c, value)? as u32,
        "max.message.bytes" => log.max_batch_bytes = int(c, value)? as usize,
        "delete.retention.ms" => log.delete_retention_ms = int(c, value)?,
        "min.compaction.lag.ms" => log.min_compaction_lag_ms = int(c, value)?,
        "max.compaction.lag.ms" => log.max_compaction_lag_ms = int(c, value)?,
        "min.cleanable.dirty.ratio" => log.min_cleanable_dirty_ratio = ratio(c, value)?,
        "file.delete.delay.ms" => log.file_delete_delay_ms = int(c, value)?,
        // 0 means an index entry for every batch.
        "index.interval.bytes" => log.index_interval_bytes = int(c, value)?.max(1) as u32,
        "flush.messages" => config.flush_messages = int(c, value)?,
        "flush.ms" => config.flush_ms = int(c, value)?,
        "cleanup.policy" => {
            let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
            parts.sort_unstable();
            parts.dedup();
            log.cleanup_policy = match parts.as_slice() {
                ["delete"] => CleanupPolicy::Delete,
                ["compact"] => CleanupPolicy::Compact,
                _ => CleanupPolicy::CompactDelete,
            };
        }
        "compression.type" => {
            // Batches are stored exactly as produced; recompression is not implemented.
            if value.trim() != "producer" {
                return Err(invalid(key, value, "only 'producer' is supported: batches are stored as sent"));
            }
        }
        "message.timestamp.type" => {
            config.produce.timestamp_type = match value.trim() {
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            }
        }
        "message.timestamp.before.max.ms" => {
            config.produce.timestamp_before_max_ms = int(c, value)?;
            config.before_set = true;
        }
        "message.timestamp.after.max.ms" => {
            config.produce.timestamp_after_max_ms = int(c, value)?;
            config.after_set = true;
        }
        "message.timestamp.difference.max.ms" => config.timestamp_difference_max_ms = int(c, value)?,
        "min.insync.replicas" => config.produce.min_insync_replicas = int(c, value)? as i32,
        _ => unreachable!("every applied config is matched above: {key}"),
    }
    Ok(())
}

/// The broker-wide storage defaults with one topic config set (the serve flags
/// `--retention-ms`, `--segment-bytes`, …), validated exactly as a topic's.
pub fn apply_default(log: &LogConfig, key: &str, value: &str) -> Result<LogConfig, BrokerError> {
    let mut config = TopicConfig::defaults(log);
    apply_config(&mut config, key, value)?;
    config.finish()?;
    Ok(config.log)
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
        "segment.jitter.ms" => log.segment_jitter_ms.to_string(),
        "segment.index.bytes" => log.segment_index_bytes.to_string(),
        "max.message.bytes" => log.max_batch_bytes.to_string(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
        "max.compaction.lag.ms" => log.max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => format!("{:?}", log.min_cleanable_dirty_ratio),
        "file.delete.delay.ms" => log.file_delete_delay_ms.to_string(),
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
        config.finish()?;
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
