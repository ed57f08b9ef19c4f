//! Idempotent-producer semantics through the broker, including across restarts.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use weir_broker::{Broker, BrokerConfig, BrokerError, NewTopic};
use weir_log::{BatchBuilder, FsStorage, SystemClock, ValidatedBatch};

fn batch(producer_id: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new().producer(producer_id, epoch, seq);
    for i in 0..n {
        b.push(1_700_000_000_000, Some(format!("k{i}").as_bytes()), Some(b"v"));
    }
    b.build()
}

fn open(dir: &std::path::Path) -> Broker {
    let config = BrokerConfig { data_dir: dir.to_owned(), ..BrokerConfig::default() };
    Broker::open(config, Arc::new(FsStorage), Arc::new(SystemClock)).unwrap()
}

#[test]
fn retries_get_their_original_offsets_and_gaps_are_rejected_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic(&NewTopic { name: "idem".into(), partitions: Some(1), ..NewTopic::default() }, false).unwrap();
    let (pid, epoch) = broker.init_producer_id(None).unwrap();
    let p = broker.partition("idem", 0).unwrap();
    let b0 = batch(pid, epoch, 0, 3);
    let b1 = batch(pid, epoch, 3, 2);
    let first = p.append(&ValidatedBatch::new(&b0, 1 << 20).unwrap()).unwrap();
    let second = p.append(&ValidatedBatch::new(&b1, 1 << 20).unwrap()).unwrap();
    assert_eq!((first.base_offset, second.base_offset), (0, 3));
    // A retry of the first batch: same offset, nothing appended.
    let retry = p.append(&ValidatedBatch::new(&b0, 1 << 20).unwrap()).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 0);
    assert_eq!(p.log().log_end_offset(), 5);
    // A gap.
    let gap = batch(pid, epoch, 9, 1);
    assert!(matches!(
        p.append(&ValidatedBatch::new(&gap, 1 << 20).unwrap()),
        Err(BrokerError::OutOfOrderSequence { expected: 5, got: 9, .. })
    ));
    broker.close().unwrap();
    drop((p, broker));

    // After a restart the state is rebuilt from the log.
    let broker = open(dir.path());
    let p = broker.partition("idem", 0).unwrap();
    let retry = p.append(&ValidatedBatch::new(&b1, 1 << 20).unwrap()).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 3);
    let next = p.append(&ValidatedBatch::new(&batch(pid, epoch, 5, 1), 1 << 20).unwrap()).unwrap();
    assert_eq!((next.base_offset, next.duplicate), (5, false));
    // An older epoch is fenced; a bumped epoch starts at sequence 0.
    let (same, bumped) = broker.init_producer_id(Some((pid, epoch))).unwrap();
    assert_eq!(same, pid);
    let new_epoch = p.append(&ValidatedBatch::new(&batch(pid, bumped, 0, 1), 1 << 20).unwrap()).unwrap();
    assert_eq!(new_epoch.base_offset, 6);
    assert!(matches!(
        p.append(&ValidatedBatch::new(&batch(pid, epoch, 6, 1), 1 << 20).unwrap()),
        Err(BrokerError::ProducerFenced { .. })
    ));
    // Producer ids are never reused after a restart.
    let (other, _) = broker.init_producer_id(None).unwrap();
    assert!(other > pid);
}

#[test]
fn topic_rules_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    for bad in ["", ".", "..", "has space", "slash/", &"x".repeat(250)] {
        let r = broker.create_topic(&NewTopic { name: bad.to_owned(), ..NewTopic::default() }, false);
        assert!(matches!(r, Err(BrokerError::InvalidTopic { .. })), "{bad:?}");
    }
    let cfg =
        |k: &str, v: &str| NewTopic { name: "c".into(), configs: vec![(k.into(), v.into())], ..NewTopic::default() };
    assert!(matches!(broker.create_topic(&cfg("retention.ms", "abc"), false), Err(BrokerError::InvalidConfig { .. })));
    assert!(matches!(broker.create_topic(&cfg("no.such.config", "1"), false), Err(BrokerError::InvalidConfig { .. })));
    assert!(matches!(
        broker.create_topic(&NewTopic { name: "rf".into(), replication_factor: Some(3), ..NewTopic::default() }, false),
        Err(BrokerError::InvalidReplicationFactor(3))
    ));
    let t = broker.create_topic(&cfg("cleanup.policy", "compact,delete"), false).unwrap();
    assert!(broker.create_topic(&cfg("retention.ms", "5"), false).is_err(), "exists");
    let id = t.id;
    broker.create_partitions("c", 3, false).unwrap();
    broker.alter_topic_config("c", &[("retention.ms".into(), Some("1234".into()))], false).unwrap();
    broker.close().unwrap();
    drop((t, broker));
    let broker = open(dir.path());
    let t = broker.topic("c").unwrap();
    assert_eq!(t.id, id, "topic ids are stable across restarts");
    assert_eq!(t.partition_count(), 3);
    assert_eq!(t.overrides().0.get("retention.ms").map(String::as_str), Some("1234"));
    assert_eq!(t.partition(2).unwrap().log().config().retention_ms, Some(1234));
    broker.delete_topic("c").unwrap();
    assert!(broker.topic("c").is_none());
    assert!(!dir.path().join("topics/c").exists());
}
