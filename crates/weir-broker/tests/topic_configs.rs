//! Kafka's topic configs: all of them accepted, the ones that mean something on one node
//! change behaviour (min.compaction.lag.ms, message.timestamp.type, timestamp bounds,
//! flush.messages, min.insync.replicas), unknown names refused.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::BytesMut;
use std::sync::Arc;
use weir_broker::{describe_config, Broker, BrokerConfig, BrokerError, NewTopic, TimestampType, TOPIC_CONFIG_KEYS};
use weir_log::batch::ATTR_LOG_APPEND_TIME;
use weir_log::{BatchBuilder, BatchHeader, Durability, FsStorage, ManualClock, ValidatedBatch};

const NOW: i64 = 1_700_000_000_000;

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Broker {
    let config = BrokerConfig { data_dir: dir.to_owned(), ..BrokerConfig::default() };
    Broker::open(config, Arc::new(FsStorage), clock).unwrap()
}

fn topic(name: &str, configs: &[(&str, &str)]) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions: Some(1),
        configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..NewTopic::default()
    }
}

fn batch(ts: i64, key: &str, value: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push(ts, Some(key.as_bytes()), Some(value.as_bytes()));
    b.build()
}

/// Kafka 3.9's full topic config list with typical values (what Connect, Debezium and
/// Streams-like apps send).
pub const KAFKA_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact,delete"),
    ("compression.gzip.level", "6"),
    ("compression.lz4.level", "9"),
    ("compression.type", "producer"),
    ("compression.zstd.level", "3"),
    ("delete.retention.ms", "86400000"),
    ("file.delete.delay.ms", "60000"),
    ("flush.messages", "9223372036854775807"),
    ("flush.ms", "9223372036854775807"),
    ("follower.replication.throttled.replicas", ""),
    ("index.interval.bytes", "4096"),
    ("leader.replication.throttled.replicas", "*"),
    ("local.retention.bytes", "-2"),
    ("local.retention.ms", "-2"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("max.message.bytes", "1048588"),
    ("message.downconversion.enable", "true"),
    ("message.format.version", "3.0-IV1"),
    ("message.timestamp.after.max.ms", "9223372036854775807"),
    ("message.timestamp.before.max.ms", "9223372036854775807"),
    ("message.timestamp.difference.max.ms", "9223372036854775807"),
    ("message.timestamp.type", "CreateTime"),
    ("min.cleanable.dirty.ratio", "0.5"),
    ("min.compaction.lag.ms", "0"),
    ("min.insync.replicas", "1"),
    ("preallocate", "false"),
    ("remote.log.copy.disable", "false"),
    ("remote.log.delete.on.disable", "false"),
    ("remote.storage.enable", "false"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
    ("segment.index.bytes", "10485760"),
    ("segment.jitter.ms", "0"),
    ("segment.ms", "604800000"),
    ("unclean.leader.election.enable", "false"),
];

#[test]
fn every_kafka_topic_config_is_accepted_and_described_and_unknown_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), Arc::new(ManualClock::new(NOW)));
    assert_eq!(TOPIC_CONFIG_KEYS.len(), KAFKA_TOPIC_CONFIGS.len());
    let t = broker.create_topic(&topic("all", KAFKA_TOPIC_CONFIGS), false).unwrap();
    let config = broker.resolve_config(&t.overrides()).unwrap();
    for (k, v) in KAFKA_TOPIC_CONFIGS {
        assert_eq!(describe_config(&config, k).as_deref(), Some(*v), "{k}");
    }
    for (k, v) in [
        ("no.such.config", "1"),
        ("remote.storage.enable", "true"),
        ("min.cleanable.dirty.ratio", "1.5"),
        ("message.timestamp.type", "BrokerTime"),
        ("min.insync.replicas", "0"),
        ("segment.index.bytes", "2"),
        ("preallocate", "yes"),
        ("leader.replication.throttled.replicas", "0:x"),
    ] {
        let r = broker.create_topic(&topic("bad", &[(k, v)]), false);
        assert!(matches!(r, Err(BrokerError::InvalidConfig { .. })), "{k}={v}: {r:?}");
    }
    broker.alter_topic_config("all", &[("min.cleanable.dirty.ratio".into(), Some("0.1".into()))], false).unwrap();
    broker.alter_topic_config("all", &[("preallocate".into(), None)], false).unwrap();
    let config = broker.resolve_config(&broker.topic("all").unwrap().overrides()).unwrap();
    assert_eq!(describe_config(&config, "min.cleanable.dirty.ratio").as_deref(), Some("0.1"));
    assert_eq!(describe_config(&config, "preallocate").as_deref(), Some("false"));
}

#[test]
fn min_compaction_lag_keeps_young_records_uncompacted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let broker = open(dir.path(), clock.clone());
    let compact = [("cleanup.policy", "compact"), ("segment.bytes", "1024")];
    let lagged = [("cleanup.policy", "compact"), ("segment.bytes", "1024"), ("min.compaction.lag.ms", "60000")];
    broker.create_topic(&topic("plain", &compact), false).unwrap();
    broker.create_topic(&topic("lagged", &lagged), false).unwrap();
    for name in ["plain", "lagged"] {
        let p = broker.partition(name, 0).unwrap();
        for i in 0..60 {
            let b = batch(weir_log::Clock::now_ms(&*clock), &format!("k{}", i % 3), &"v".repeat(40));
            p.append(&ValidatedBatch::new(&b, 1 << 20).unwrap()).unwrap();
        }
        p.log().roll_now().unwrap();
    }
    let removed = |name: &str| broker.partition(name, 0).unwrap().log().compact().unwrap().records_removed;
    assert!(removed("plain") > 0, "without a lag, superseded records go at once");
    assert_eq!(removed("lagged"), 0, "records younger than min.compaction.lag.ms stay");
    clock.advance(59_000);
    assert_eq!(removed("lagged"), 0);
    clock.advance(2_000);
    assert!(removed("lagged") > 0, "older than the lag: compacted");
}

fn read_first(broker: &Broker, name: &str) -> (BatchHeader, Vec<u8>) {
    let p = broker.partition(name, 0).unwrap();
    let mut buf = BytesMut::new();
    p.log().read(0, 1 << 20, &mut buf).unwrap();
    let h = BatchHeader::parse(&buf).unwrap();
    (h, buf[..h.total_len()].to_vec())
}

#[test]
fn log_append_time_overwrites_the_batch_timestamp_and_create_time_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let broker = open(dir.path(), clock.clone());
    broker.create_topic(&topic("append", &[("message.timestamp.type", "LogAppendTime")]), false).unwrap();
    broker.create_topic(&topic("create", &[]), false).unwrap();
    assert_eq!(broker.partition("append", 0).unwrap().policy().timestamp_type, TimestampType::LogAppendTime);
    let old = 1_000;
    for name in ["append", "create"] {
        let b = batch(old, "k", "v");
        broker.partition(name, 0).unwrap().append(&ValidatedBatch::new(&b, 1 << 20).unwrap()).unwrap();
    }
    let (h, bytes) = read_first(&broker, "append");
    assert_ne!(h.attributes & ATTR_LOG_APPEND_TIME, 0, "log-append-time attribute set");
    assert_eq!(h.max_timestamp, NOW, "maxTimestamp is the append time");
    ValidatedBatch::new(&bytes, 1 << 20).expect("CRC recomputed");
    let (h, _) = read_first(&broker, "create");
    assert_eq!((h.attributes & ATTR_LOG_APPEND_TIME, h.max_timestamp), (0, old));
    // Switching the type later applies to new batches.
    broker
        .alter_topic_config("create", &[("message.timestamp.type".into(), Some("LogAppendTime".into()))], false)
        .unwrap();
    assert_eq!(broker.partition("create", 0).unwrap().policy().timestamp_type, TimestampType::LogAppendTime);
}

#[test]
fn timestamp_bounds_refuse_batches_too_old_or_too_far_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let broker = open(dir.path(), clock);
    let bounds = [("message.timestamp.before.max.ms", "3600000"), ("message.timestamp.after.max.ms", "60000")];
    broker.create_topic(&topic("bounded", &bounds), false).unwrap();
    broker.create_topic(&topic("legacy", &[("message.timestamp.difference.max.ms", "1000")]), false).unwrap();
    let p = broker.partition("bounded", 0).unwrap();
    let append =
        |p: &weir_broker::Partition, ts| p.append(&ValidatedBatch::new(&batch(ts, "k", "v"), 1 << 20).unwrap());
    assert!(append(&p, NOW - 3_000_000).is_ok());
    assert!(append(&p, NOW + 50_000).is_ok());
    assert!(matches!(append(&p, NOW - 4_000_000), Err(BrokerError::InvalidTimestamp { .. })));
    assert!(matches!(append(&p, NOW + 70_000), Err(BrokerError::InvalidTimestamp { .. })));
    let legacy = broker.partition("legacy", 0).unwrap();
    assert!(matches!(append(&legacy, NOW - 2_000), Err(BrokerError::InvalidTimestamp { .. })));
    assert!(append(&legacy, NOW - 500).is_ok());
}

#[test]
fn flush_messages_one_syncs_every_append_and_min_insync_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), Arc::new(ManualClock::new(NOW)));
    broker.create_topic(&topic("synced", &[("flush.messages", "1")]), false).unwrap();
    broker.create_topic(&topic("timed", &[("flush.ms", "250")]), false).unwrap();
    broker.create_topic(&topic("strict", &[("min.insync.replicas", "2")]), false).unwrap();
    assert_eq!(broker.partition("synced", 0).unwrap().log().config().durability, Durability::Always);
    assert_eq!(broker.partition("timed", 0).unwrap().log().config().durability, Durability::IntervalMs(250));
    assert_eq!(broker.partition("strict", 0).unwrap().policy().min_insync_replicas, 2);
}

#[test]
fn storage_configs_reach_every_partition_log_on_create_and_alter() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), Arc::new(ManualClock::new(NOW)));
    let set = [
        ("cleanup.policy", "compact"),
        ("min.cleanable.dirty.ratio", "0.25"),
        ("max.compaction.lag.ms", "3600000"),
        ("segment.index.bytes", "4096"),
        ("segment.jitter.ms", "1000"),
        ("file.delete.delay.ms", "0"),
        ("flush.messages", "100"),
    ];
    broker.create_topic(&NewTopic { partitions: Some(2), ..topic("s", &set) }, false).unwrap();
    for p in broker.topic("s").unwrap().partitions() {
        let c = p.log().config();
        assert_eq!(c.min_cleanable_dirty_ratio, 0.25);
        assert_eq!(c.max_compaction_lag_ms, 3_600_000);
        assert_eq!(c.segment_index_bytes, 4096);
        assert_eq!(c.segment_jitter_ms, 1000);
        assert_eq!(c.file_delete_delay_ms, 0);
        assert_eq!(c.flush_messages, Some(100));
    }
    let config = broker.resolve_config(&broker.topic("s").unwrap().overrides()).unwrap();
    assert_eq!(describe_config(&config, "min.cleanable.dirty.ratio").as_deref(), Some("0.25"));
    broker.alter_topic_config("s", &[("min.cleanable.dirty.ratio".into(), Some("1".into()))], false).unwrap();
    broker.alter_topic_config("s", &[("file.delete.delay.ms".into(), None)], false).unwrap();
    let p = broker.partition("s", 1).unwrap();
    assert_eq!(p.log().config().min_cleanable_dirty_ratio, 1.0);
    assert_eq!(p.log().config().file_delete_delay_ms, 60_000, "Kafka's default again");
    let config = broker.resolve_config(&broker.topic("s").unwrap().overrides()).unwrap();
    assert_eq!(
        describe_config(&config, "min.cleanable.dirty.ratio").as_deref(),
        Some("1.0"),
        "as Kafka prints a double"
    );
}

/// #19: every value is checked against Kafka's valid range, the same way on create and
/// alter, and the error names the key, the value and the range.
#[test]
fn every_value_is_range_checked_and_the_error_names_key_value_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), Arc::new(ManualClock::new(NOW)));
    broker.create_topic(&topic("t", &[]), false).unwrap();
    for (k, v, range) in [
        ("retention.ms", "-5", "at least -1"),
        ("retention.ms", "soon", "at least -1"),
        ("retention.bytes", "-2", "at least -1"),
        ("segment.bytes", "0", "at least 1024"),
        ("segment.bytes", "2147483648", "at least 1024"),
        ("segment.ms", "0", "at least 1"),
        ("segment.index.bytes", "3", "at least 4"),
        ("segment.jitter.ms", "-1", "at least 0"),
        ("index.interval.bytes", "-1", "at least 0"),
        ("max.message.bytes", "60", "at least 61"),
        ("delete.retention.ms", "-1", "at least 0"),
        ("min.compaction.lag.ms", "-1", "at least 0"),
        ("max.compaction.lag.ms", "0", "at least 1"),
        ("file.delete.delay.ms", "-1", "at least 0"),
        ("flush.messages", "0", "at least 1"),
        ("flush.ms", "-1", "at least 0"),
        ("min.insync.replicas", "0", "at least 1"),
        ("message.timestamp.after.max.ms", "-1", "at least 0"),
        ("message.timestamp.before.max.ms", "-1", "at least 0"),
        ("message.timestamp.difference.max.ms", "-1", "at least 0"),
        ("local.retention.ms", "-3", "at least -2"),
        ("local.retention.bytes", "-3", "at least -2"),
        ("compression.lz4.level", "18", "between 1 and 17"),
        ("compression.zstd.level", "23", "between -131072 and 22"),
        ("compression.gzip.level", "0", "-1 or an integer between 1 and 9"),
        ("min.cleanable.dirty.ratio", "NaN", "between 0 and 1"),
        ("min.cleanable.dirty.ratio", "-0.1", "between 0 and 1"),
        ("message.timestamp.type", "BrokerTime", "one of CreateTime, LogAppendTime"),
        ("compression.type", "brotli", "one of uncompressed, zstd, lz4, snappy, gzip, producer"),
        ("cleanup.policy", "keep", "delete, compact or compact,delete"),
        ("preallocate", "yes", "true or false"),
    ] {
        let created = broker.create_topic(&topic("bad", &[(k, v)]), false).unwrap_err();
        let altered = broker.alter_topic_config("t", &[(k.into(), Some(v.into()))], false).unwrap_err();
        for e in [created, altered] {
            assert!(matches!(e, BrokerError::InvalidConfig { .. }), "{k}={v}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(k) && msg.contains(&format!("{v:?}")) && msg.contains(range), "{k}={v}: {msg}");
        }
    }
    // Kafka's cross-check of the two lags.
    let lags = [("min.compaction.lag.ms", "2000"), ("max.compaction.lag.ms", "1000")];
    let e = broker.create_topic(&topic("bad", &lags), false).unwrap_err();
    assert!(e.to_string().contains("must not exceed max.compaction.lag.ms"), "{e}");
    assert!(broker.topic("bad").is_none());
    // The bounds themselves are valid.
    for (k, v) in [
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("segment.bytes", "2147483647"),
        ("index.interval.bytes", "0"),
    ] {
        broker.alter_topic_config("t", &[(k.into(), Some(v.into()))], false).unwrap();
    }
    // The serve flags' defaults go through the same check.
    let e = weir_broker::apply_default(&weir_log::LogConfig::default(), "retention.ms", "-5").unwrap_err();
    assert!(e.to_string().contains("at least -1"), "{e}");
}
