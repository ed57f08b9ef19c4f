//! An in-memory [`Storage`] that injects faults: a full disk after a byte budget, and crash
//! images that keep only what was synced (plus, optionally, a random torn part of the rest).

use crate::storage::{Storage, StorageFile};
use crate::unpoisoned::UnpoisonedMutex;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct FileData {
    /// What a reader sees now (page cache).
    current: Vec<u8>,
    /// What survives a crash: the content at the last sync.
    durable: Vec<u8>,
}

/// One in-memory file.
#[derive(Debug, Default)]
pub struct MemFile {
    data: Mutex<FileData>,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    /// Bytes that may still be written before writes fail with ENOSPC.
    space_left: AtomicU64,
    limited: AtomicBool,
    fail_syncs: AtomicBool,
    syncs: AtomicU64,
}

impl StorageFile for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let d = self.data.lock_unpoisoned();
        let start = pos as usize;
        let end = start.checked_add(buf.len()).ok_or(io::ErrorKind::InvalidInput)?;
        if end > d.current.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"));
        }
        buf.copy_from_slice(&d.current[start..end]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut d = self.data.lock_unpoisoned();
        let start = pos as usize;
        let mut n = buf.len();
        let mut full = false;
        if self.faults.limited.load(Ordering::SeqCst) {
            let grow = (start + n).saturating_sub(d.current.len()) as u64;
            let left = self.faults.space_left.load(Ordering::SeqCst);
            if grow > left {
                // Write the prefix that fits, as a real filesystem does, then fail.
                n -= (grow - left) as usize;
                full = true;
            }
            self.faults.space_left.fetch_sub(grow.min(left), Ordering::SeqCst);
        }
        if d.current.len() < start + n {
            d.current.resize(start + n, 0);
        }
        d.current[start..start + n].copy_from_slice(&buf[..n]);
        if full {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device (injected)"));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("fdatasync failed (injected)"));
        }
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        let mut d = self.data.lock_unpoisoned();
        let cur = d.current.clone();
        d.durable = cur;
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut d = self.data.lock_unpoisoned();
        let cur = d.current.len() as u64;
        if self.faults.limited.load(Ordering::SeqCst) {
            if len > cur {
                let left = self.faults.space_left.load(Ordering::SeqCst);
                if len - cur > left {
                    return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device (injected)"));
                }
                self.faults.space_left.fetch_sub(len - cur, Ordering::SeqCst);
            } else {
                self.faults.space_left.fetch_add(cur - len, Ordering::SeqCst);
            }
        }
        d.current.resize(len as usize, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.lock_unpoisoned().current.len() as u64)
    }
}

/// Fault-injecting in-memory storage. Directory operations (create, rename, remove) are
/// durable at once; file contents are durable only up to the last `sync_data`.
#[derive(Debug, Default)]
pub struct MemStorage {
    files: Mutex<BTreeMap<PathBuf, Arc<MemFile>>>,
    faults: Arc<Faults>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, only `bytes` more may be written before writes fail with ENOSPC.
    pub fn set_space_left(&self, bytes: u64) {
        self.faults.space_left.store(bytes, Ordering::SeqCst);
        self.faults.limited.store(true, Ordering::SeqCst);
    }

    /// Removes the space limit.
    pub fn unlimit_space(&self) {
        self.faults.limited.store(false, Ordering::SeqCst);
    }

    pub fn set_fail_syncs(&self, fail: bool) {
        self.faults.fail_syncs.store(fail, Ordering::SeqCst);
    }

    /// Number of successful syncs so far.
    pub fn sync_count(&self) -> u64 {
        self.faults.syncs.load(Ordering::SeqCst)
    }

    /// What a crash right now would leave: every file cut back to its durable content, plus
    /// a torn prefix of its unsynced tail chosen by `torn(file_len_unsynced) -> kept`.
    pub fn crash_image(&self, mut torn: impl FnMut(usize) -> usize) -> MemStorage {
        let files = self.files.lock_unpoisoned();
        let image = MemStorage::new();
        let mut out = image.files.lock_unpoisoned();
        for (path, file) in files.iter() {
            let d = file.data.lock_unpoisoned();
            let mut content = d.durable.clone();
            // Unsynced appends past the durable length may partly reach the disk.
            if d.current.len() > content.len() && d.current.starts_with(&content) {
                let extra = d.current.len() - content.len();
                let keep = torn(extra).min(extra);
                content.extend_from_slice(&d.current[d.durable.len()..d.durable.len() + keep]);
            }
            let f = MemFile {
                data: Mutex::new(FileData { current: content.clone(), durable: content }),
                faults: image.faults.clone(),
            };
            out.insert(path.clone(), Arc::new(f));
        }
        drop(out);
        image
    }

    /// Direct access for tests that corrupt files.
    pub fn with_file<R>(&self, path: &Path, f: impl FnOnce(&mut Vec<u8>) -> R) -> Option<R> {
        let files = self.files.lock_unpoisoned();
        let file = files.get(path)?;
        let mut d = file.data.lock_unpoisoned();
        let r = f(&mut d.current);
        let cur = d.current.clone();
        d.durable = cur;
        Some(r)
    }
}

impl Storage for MemStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut files = self.files.lock_unpoisoned();
        if let Some(f) = files.get(path) {
            return Ok(f.clone());
        }
        if !create {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())));
        }
        let f = Arc::new(MemFile { data: Mutex::default(), faults: self.faults.clone() });
        files.insert(path.to_owned(), f.clone());
        Ok(f)
    }
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let files = self.files.lock_unpoisoned();
        Ok(files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let removed = self.files.lock_unpoisoned().remove(path);
        if let Some(f) = removed {
            if self.faults.limited.load(Ordering::SeqCst) {
                let len = f.data.lock_unpoisoned().current.len() as u64;
                self.faults.space_left.fetch_add(len, Ordering::SeqCst);
            }
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, "no such file"))
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = self.files.lock_unpoisoned();
        let f = files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        files.insert(to.to_owned(), f);
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.lock_unpoisoned().contains_key(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.files.lock_unpoisoned().retain(|p, _| !p.starts_with(path));
        Ok(())
    }
}
