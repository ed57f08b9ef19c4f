//! Topic lifecycle at scale: creation all-or-nothing, leftovers of interrupted creations,
//! deletions and growths removed at startup, and idle partitions that cost no sync.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir_broker::{Broker, BrokerConfig, NewTopic};
use weir_log::{BatchBuilder, FsStorage, Storage, StorageFile, SystemClock, ValidatedBatch};

/// The real filesystem, counting every operation that makes something durable.
#[derive(Debug, Default)]
struct Counting {
    syncs: Arc<AtomicU64>,
    /// file syncs only (fdatasync), a subset of `syncs`
    file_syncs: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingFile(Arc<dyn StorageFile>, Arc<AtomicU64>, Arc<AtomicU64>);

impl StorageFile for CountingFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.2.fetch_add(1, Ordering::SeqCst);
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
}

impl Storage for Counting {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        if create && !path.exists() {
            self.syncs.fetch_add(1, Ordering::SeqCst); // FsStorage syncs the new entry's directory
        }
        let f = FsStorage.open(path, create)?;
        Ok(Arc::new(CountingFile(f, self.syncs.clone(), self.file_syncs.clone())))
    }
    fn create_unsynced(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let f = FsStorage.create_unsynced(path)?;
        Ok(Arc::new(CountingFile(f, self.syncs.clone(), self.file_syncs.clone())))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        FsStorage.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst); // FsStorage syncs the target directory
        FsStorage.rename(from, to)
    }
    fn exists(&self, path: &Path) -> bool {
        FsStorage.exists(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_dir_all(path)
    }
}

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig { data_dir: dir.to_owned(), ..BrokerConfig::default() }
}

fn one_record() -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push(1_700_000_000_000, Some(b"k"), Some(b"v"));
    b.build()
}

#[test]
fn creation_groups_its_syncs_and_idle_partitions_cost_none() {
    const PARTITIONS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Counting::default());
    let (syncs, file_syncs) = (storage.syncs.clone(), storage.file_syncs.clone());
    let broker = Broker::open(config(dir.path()), storage.clone(), Arc::new(SystemClock)).unwrap();
    let before = (syncs.load(Ordering::SeqCst), file_syncs.load(Ordering::SeqCst));
    let req = NewTopic { name: "wide".into(), partitions: Some(PARTITIONS as i32), ..NewTopic::default() };
    broker.create_topic(&req, false).unwrap();
    // One directory sync per partition (issued together) plus a constant few; no file sync
    // or checkpoint per partition.
    let created = (syncs.load(Ordering::SeqCst) - before.0, file_syncs.load(Ordering::SeqCst) - before.1);
    assert!(created.0 <= PARTITIONS as u64 + 6, "{created:?}");
    assert!(created.1 <= 2, "{created:?}");
    let p = broker.partition("wide", 7).unwrap();
    p.append(&ValidatedBatch::new(&one_record(), 1 << 20).unwrap()).unwrap();
    drop(p);
    broker.close().unwrap();
    drop(broker);

    // A clean restart, idle maintenance, idle flushes and a clean stop sync nothing.
    let start = syncs.load(Ordering::SeqCst);
    let broker = Broker::open(config(dir.path()), storage.clone(), Arc::new(SystemClock)).unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst) - start, 0, "syncs on a clean restart");
    broker.run_maintenance();
    broker.flush_due();
    broker.run_maintenance();
    broker.close().unwrap();
    assert_eq!(syncs.load(Ordering::SeqCst) - start, 0, "syncs while idle and at a clean stop");
    // The record is still there.
    let mut buf = bytes::BytesMut::new();
    let info = broker.partition("wide", 7).unwrap().log().read(0, 1 << 20, &mut buf).unwrap();
    assert_eq!((info.high_watermark, info.bytes > 0), (1, true));
}

#[test]
fn startup_removes_what_interrupted_creations_deletions_and_growths_left() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), Arc::new(FsStorage), Arc::new(SystemClock)).unwrap();
    broker.create_topic(&NewTopic { name: "t".into(), partitions: Some(3), ..NewTopic::default() }, false).unwrap();
    broker.close().unwrap();
    drop(broker);
    // A crash mid-creation (staging), mid-deletion (trash) and mid-growth (a partition
    // directory past the count in topic.json).
    let d = dir.path();
    std::fs::create_dir_all(d.join("creating/half-0123/0")).unwrap();
    std::fs::write(d.join("creating/half-0123/0/00000000000000000000.log"), b"").unwrap();
    std::fs::create_dir_all(d.join("deleting/gone-4567/0")).unwrap();
    std::fs::create_dir_all(d.join("topics/t/3")).unwrap();
    std::fs::write(d.join("topics/t/3/00000000000000000000.log"), b"").unwrap();
    let broker = Broker::open(config(d), Arc::new(FsStorage), Arc::new(SystemClock)).unwrap();
    assert!(!d.join("creating").exists() && !d.join("deleting").exists());
    assert!(!d.join("topics/t/3").exists());
    assert!(broker.topic("half").is_none());
    assert_eq!(broker.topic("t").unwrap().partition_count(), 3);
    // Growth still works where the leftover was.
    broker.create_partitions("t", 5, false).unwrap();
    assert_eq!(broker.topic("t").unwrap().partition_count(), 5);
    broker.partition("t", 4).unwrap().append(&ValidatedBatch::new(&one_record(), 1 << 20).unwrap()).unwrap();
    broker.close().unwrap();
    drop(broker);
    let broker = Broker::open(config(d), Arc::new(FsStorage), Arc::new(SystemClock)).unwrap();
    assert_eq!(broker.partition("t", 4).unwrap().log().log_end_offset(), 1);
}

#[test]
fn the_flush_tick_touches_only_partitions_with_timed_work() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Counting::default());
    let file_syncs = storage.file_syncs.clone();
    let clock = Arc::new(weir_log::ManualClock::new(1_700_000_000_000));
    let mut cfg = config(dir.path());
    cfg.log.durability = weir_log::Durability::IntervalMs(1000);
    cfg.log.segment_ms = Some(60_000);
    let broker = Broker::open(cfg, storage, clock.clone()).unwrap();
    broker.create_topic(&NewTopic { name: "t".into(), partitions: Some(500), ..NewTopic::default() }, false).unwrap();
    assert_eq!(broker.scheduled_partitions(), 0);
    let p = broker.partition("t", 3).unwrap();
    p.append(&ValidatedBatch::new(&one_record(), 1 << 20).unwrap()).unwrap();
    p.append(&ValidatedBatch::new(&one_record(), 1 << 20).unwrap()).unwrap();
    assert_eq!(broker.scheduled_partitions(), 1, "one entry for one partition with unsynced data");
    // Not yet due: nothing happens.
    let before = file_syncs.load(Ordering::SeqCst);
    broker.flush_due();
    assert_eq!((file_syncs.load(Ordering::SeqCst) - before, p.log().durable_offset()), (0, 0));
    // Due: that one partition syncs; it stays entered for its roll by age.
    clock.advance(1000);
    broker.flush_due();
    assert_eq!((file_syncs.load(Ordering::SeqCst) - before, p.log().durable_offset()), (1, 2));
    assert_eq!(broker.scheduled_partitions(), 1);
    // The roll by age happens on time, after which nothing is pending.
    clock.advance(60_000);
    broker.flush_due();
    assert_eq!(p.log().segment_base_offsets(), vec![0, 2]);
    assert_eq!(broker.scheduled_partitions(), 0);
}
