//! The disk, seen only through traits so crash and fault tests can replace it.

use crate::unpoisoned::UnpoisonedMutex;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One open file. Positional I/O only: the log keeps its own write positions.
pub trait StorageFile: Send + Sync + std::fmt::Debug {
    /// Reads exactly `buf.len()` bytes at `pos` (UnexpectedEof when the file is shorter).
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes all of `buf` at `pos`. On error a prefix may have been written.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A directory tree of files.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Opens `path` for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Creates (or opens) `path` without making its directory entry durable: for creating
    /// many files at once, after which the caller syncs each directory once ([`Storage::sync_dir`]).
    fn create_unsynced(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        self.open(path, true)
    }
    /// Makes the entries of directory `path` (creations, renames, removals) durable.
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// File names (not paths) directly inside `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from`, durably (the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Size and free space of the filesystem holding `path` (DescribeLogDirs); None where
    /// the storage cannot tell.
    fn disk_space(&self, _path: &Path) -> io::Result<Option<DiskSpace>> {
        Ok(None)
    }
}

/// A filesystem's capacity, as `statvfs` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    /// Free bytes an unprivileged process may use (`f_bavail`).
    pub usable_bytes: u64,
}

/// Reads a whole (small) file: indexes and checkpoints.
pub fn read_whole(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, false)?;
    let len = file.len()?;
    if len > 256 * 1024 * 1024 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "metadata file larger than 256 MiB"));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Writes a small file atomically and durably: write `path.tmp`, sync, rename over `path`.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = storage.open(&tmp, true)?;
    file.set_len(0)?;
    file.write_all_at(bytes, 0)?;
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, path)
}

/// Replaces a small file's content in place without any sync: for derived data that is
/// checked when read back (a crash may leave it old, short or empty, never trusted blindly).
pub fn write_unsynced(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = storage.create_unsynced(path)?;
    file.set_len(0)?;
    file.write_all_at(bytes, 0)
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

#[derive(Debug)]
struct FsFile(std::fs::File);

impl StorageFile for FsFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Storage for FsStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let existed = create && path.exists();
        let file = std::fs::OpenOptions::new().read(true).write(true).create(create).open(path)?;
        if create && !existed {
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(Arc::new(FsFile(file)))
    }
    fn create_unsynced(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(Arc::new(FsFile(file)))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        match to.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        }
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn disk_space(&self, path: &Path) -> io::Result<Option<DiskSpace>> {
        let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
        let block = st.f_frsize.max(1);
        Ok(Some(DiskSpace {
            total_bytes: st.f_blocks.saturating_mul(block),
            usable_bytes: st.f_bavail.saturating_mul(block),
        }))
    }
}

/// Most syncs in flight at once in [`sync_dirs`]. Concurrent syncs share the filesystem's
/// journal commits and the device's cache flushes, so a batch costs a few commits instead of
/// one per file; the threads mostly sleep in the kernel, so more than cores is right.
pub const SYNC_THREADS_MAX: usize = 32;

/// Group commit of directory syncs: syncs every directory in `dirs` (each once), with up to
/// [`SYNC_THREADS_MAX`] in flight, and returns the first error with its path. The threads
/// are scoped: all have finished when this returns.
pub fn sync_dirs(storage: &dyn Storage, dirs: &[PathBuf]) -> Result<(), (PathBuf, io::Error)> {
    run_parallel(dirs.len(), SYNC_THREADS_MAX, |i| storage.sync_dir(&dirs[i]).map_err(|e| (dirs[i].clone(), e)))
}

/// Runs `job(0..n)` on up to `threads` scoped threads; the first error stops new jobs and
/// is returned. One thread (no spawn) when `n` is small.
pub fn run_parallel<E: Send>(n: usize, threads: usize, job: impl Fn(usize) -> Result<(), E> + Sync) -> Result<(), E> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 || n < 4 {
        return (0..n).try_for_each(job);
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if let Err(e) = job(i) {
                        failed.store(true, Ordering::Relaxed);
                        first_error.lock_unpoisoned().get_or_insert(e);
                    }
                }
            });
        }
    });
    first_error.into_inner().unwrap_or_else(|e| e.into_inner()).map_or(Ok(()), Err)
}
