//! A bound on open file descriptors: [`PooledStorage`] wraps another [`Storage`] and keeps
//! at most `open_max` of its files open, closing the least recently used ones (CLOCK
//! approximation: an access only sets a flag, no shared lock) and reopening them on their
//! next access. So the number of partitions is not bounded by RLIMIT_NOFILE.
//!
//! A file closed here is only the descriptor: the handle the log holds stays valid, and an
//! operation in progress keeps its own reference to the descriptor until it returns. A file
//! is reopened by path without `create`, so a file deleted in the meantime (retention, topic
//! deletion) makes the access fail with NotFound instead of silently creating an empty file.
//! Renames through this storage carry an open handle to its new path; a handle whose file
//! was replaced by a rename or removed keeps its descriptor (it is never evicted), as an
//! unlinked open file does, so a reader finishing on the old copy of a compacted segment
//! still reads the old bytes.

use crate::storage::{Storage, StorageFile};
use crate::unpoisoned::UnpoisonedMutex;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Smallest useful budget: a log needs its active segment and a few metadata files at once.
pub const OPEN_FILES_MIN: usize = 16;

/// Storage whose files share a budget of open descriptors.
#[derive(Debug, Clone)]
pub struct PooledStorage {
    inner: Arc<dyn Storage>,
    pool: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    open_max: usize,
    /// Files whose descriptor is open, in CLOCK order (front = next candidate).
    ring: Mutex<VecDeque<Weak<PooledFile>>>,
    /// Every live handle by its current path, so renames and removals can find it.
    by_path: Mutex<HashMap<PathBuf, Weak<PooledFile>>>,
    /// Descriptors open now (entries of `ring` whose file still holds one).
    open: AtomicUsize,
    /// Descriptors closed to stay within the budget, and reopened on access.
    evictions: AtomicU64,
    reopens: AtomicU64,
}

#[derive(Debug)]
struct PooledFile {
    path: Mutex<PathBuf>,
    inner: Arc<dyn Storage>,
    pool: Arc<Pool>,
    fd: Mutex<Option<Arc<dyn StorageFile>>>,
    /// Set on every access; cleared by the eviction sweep (second chance).
    referenced: AtomicBool,
    /// The path no longer names this file (replaced or removed): keep the descriptor.
    detached: AtomicBool,
    me: Weak<PooledFile>,
}

impl PooledStorage {
    /// Wraps `inner`, keeping at most `open_max` (at least [`OPEN_FILES_MIN`]) files open.
    pub fn new(inner: Arc<dyn Storage>, open_max: usize) -> Self {
        let pool = Pool {
            open_max: open_max.max(OPEN_FILES_MIN),
            ring: Mutex::new(VecDeque::new()),
            by_path: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
        };
        Self { inner, pool: Arc::new(pool) }
    }

    /// Descriptors held open now.
    pub fn open_files(&self) -> usize {
        self.pool.open.load(Ordering::Relaxed)
    }

    pub fn open_files_max(&self) -> usize {
        self.pool.open_max
    }

    /// Descriptors closed to stay within the budget so far.
    pub fn evictions(&self) -> u64 {
        self.pool.evictions.load(Ordering::Relaxed)
    }

    /// Files reopened after an eviction so far.
    pub fn reopens(&self) -> u64 {
        self.pool.reopens.load(Ordering::Relaxed)
    }
}

impl Pool {
    /// Registers a newly opened descriptor, then closes others until the budget holds.
    fn admit(&self, file: Weak<PooledFile>) {
        let mut ring = self.ring.lock_unpoisoned();
        ring.push_back(file);
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        crate::metrics::FILES_OPEN.inc();
        if open <= self.open_max {
            // Short-lived files (checkpoints, indexes) leave dead entries behind; drop them
            // once they outnumber the live ones, so the ring stays O(open files).
            if ring.len() > 2 * open + 64 {
                ring.retain(|w| w.strong_count() > 0);
            }
            return;
        }
        // Two sweeps at most: the first may only clear reference flags.
        let mut budget = ring.len() * 2;
        while self.open.load(Ordering::Acquire) > self.open_max && budget > 0 {
            budget -= 1;
            let Some(candidate) = ring.pop_front() else { break };
            let Some(f) = candidate.upgrade() else { continue };
            if f.detached.load(Ordering::Acquire) {
                continue;
            }
            if f.referenced.swap(false, Ordering::AcqRel) {
                ring.push_back(candidate);
                continue;
            }
            if f.fd.lock_unpoisoned().take().is_some() {
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                crate::metrics::FILES_OPEN.dec();
                crate::metrics::FILES_EVICTED.inc();
            }
        }
    }
}

impl PooledFile {
    fn fd(&self) -> io::Result<Arc<dyn StorageFile>> {
        self.referenced.store(true, Ordering::Relaxed);
        if let Some(fd) = self.fd.lock_unpoisoned().as_ref() {
            return Ok(fd.clone());
        }
        if self.detached.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "file was replaced or removed while closed"));
        }
        let path = self.path.lock_unpoisoned().clone();
        let fresh = self.inner.open(&path, false)?;
        {
            let mut slot = self.fd.lock_unpoisoned();
            if let Some(fd) = slot.as_ref() {
                // Another thread reopened it first; ours closes when dropped.
                return Ok(fd.clone());
            }
            *slot = Some(fresh.clone());
        }
        self.pool.reopens.fetch_add(1, Ordering::Relaxed);
        crate::metrics::FILES_REOPENED.inc();
        self.pool.admit(self.me.clone());
        Ok(fresh)
    }
}

impl Drop for PooledFile {
    fn drop(&mut self) {
        if self.fd.lock_unpoisoned().take().is_some() {
            self.pool.open.fetch_sub(1, Ordering::AcqRel);
            crate::metrics::FILES_OPEN.dec();
        }
        let path = self.path.lock_unpoisoned().clone();
        let mut by_path = self.pool.by_path.lock_unpoisoned();
        if by_path.get(&path).is_some_and(|w| w.ptr_eq(&self.me)) {
            by_path.remove(&path);
        }
    }
}

impl Pool {
    /// The file at `path` is gone from the namespace: its handle keeps the descriptor.
    fn detach(&self, path: &Path) {
        let gone = self.by_path.lock_unpoisoned().remove(path);
        if let Some(f) = gone.and_then(|w| w.upgrade()) {
            f.detached.store(true, Ordering::Release);
        }
    }
}

impl StorageFile for PooledFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.fd()?.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.fd()?.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fd()?.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fd()?.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.fd()?.len()
    }
}

impl PooledStorage {
    fn wrap(&self, path: &Path, fd: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        let file = Arc::new_cyclic(|me| PooledFile {
            path: Mutex::new(path.to_owned()),
            inner: self.inner.clone(),
            pool: self.pool.clone(),
            fd: Mutex::new(Some(fd)),
            referenced: AtomicBool::new(true),
            detached: AtomicBool::new(false),
            me: me.clone(),
        });
        let previous = self.pool.by_path.lock_unpoisoned().insert(path.to_owned(), Arc::downgrade(&file));
        // Two handles on one path (e.g. a reopen by recovery): the older keeps its own.
        if let Some(old) = previous.and_then(|w| w.upgrade()) {
            old.detached.store(true, Ordering::Release);
        }
        self.pool.admit(Arc::downgrade(&file));
        file
    }
}

impl Storage for PooledStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let fd = self.inner.open(path, create)?;
        Ok(self.wrap(path, fd))
    }
    fn create_unsynced(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let fd = self.inner.create_unsynced(path)?;
        Ok(self.wrap(path, fd))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)?;
        self.pool.detach(path);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)?;
        self.pool.detach(to);
        let moved = self.pool.by_path.lock_unpoisoned().remove(from);
        if let Some(f) = moved.and_then(|w| w.upgrade()) {
            *f.path.lock_unpoisoned() = to.to_owned();
            self.pool.by_path.lock_unpoisoned().insert(to.to_owned(), f.me.clone());
        }
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn disk_space(&self, path: &Path) -> io::Result<Option<crate::DiskSpace>> {
        self.inner.disk_space(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)?;
        let gone: Vec<PathBuf> =
            self.pool.by_path.lock_unpoisoned().keys().filter(|p| p.starts_with(path)).cloned().collect();
        for p in gone {
            self.pool.detach(&p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsStorage;

    #[test]
    fn files_beyond_the_budget_are_closed_and_reopened_on_access() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = PooledStorage::new(Arc::new(FsStorage), OPEN_FILES_MIN);
        let files: Vec<_> = (0..100)
            .map(|i| {
                let f = pool.open(&dir.path().join(format!("f{i}")), true).expect("create");
                f.write_all_at(format!("file {i}").as_bytes(), 0).expect("write");
                f
            })
            .collect();
        assert!(pool.open_files() <= OPEN_FILES_MIN, "{} open", pool.open_files());
        assert!(pool.evictions() >= 100 - OPEN_FILES_MIN as u64);
        for (i, f) in files.iter().enumerate() {
            let want = format!("file {i}");
            let mut buf = vec![0u8; want.len()];
            f.read_exact_at(&mut buf, 0).expect("read");
            assert_eq!(buf, want.as_bytes());
        }
        assert!(pool.reopens() > 0);
        assert!(pool.open_files() <= OPEN_FILES_MIN);
        drop(files);
        assert_eq!(pool.open_files(), 0);
    }

    #[test]
    fn a_renamed_file_follows_its_handle_and_a_replaced_one_keeps_its_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = PooledStorage::new(Arc::new(FsStorage), OPEN_FILES_MIN);
        let (seg, cleaned) = (dir.path().join("seg"), dir.path().join("seg.cleaned"));
        let old = pool.open(&seg, true).expect("create");
        old.write_all_at(b"old", 0).expect("write");
        let new = pool.open(&cleaned, true).expect("create");
        new.write_all_at(b"new", 0).expect("write");
        pool.rename(&cleaned, &seg).expect("rename");
        // Push both out of the pool, then read through the handles again.
        let _others: Vec<_> =
            (0..2 * OPEN_FILES_MIN).map(|i| pool.open(&dir.path().join(format!("o{i}")), true).expect("o")).collect();
        let mut buf = [0u8; 3];
        new.read_exact_at(&mut buf, 0).expect("renamed file reopens under its new name");
        assert_eq!(&buf, b"new");
        old.read_exact_at(&mut buf, 0).expect("replaced file keeps its descriptor");
        assert_eq!(&buf, b"old");
        // A removed file is never recreated by a reopen.
        let gone = pool.open(&dir.path().join("gone"), true).expect("create");
        drop(gone);
        let kept = pool.open(&dir.path().join("kept"), true).expect("create");
        pool.remove_file(&dir.path().join("kept")).expect("remove");
        kept.write_all_at(b"x", 0).expect("an unlinked file stays writable through its handle");
        assert!(!dir.path().join("kept").exists());
    }
}
