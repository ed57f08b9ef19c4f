//! Process-level guards around the data directory: one owner at a time (an exclusive flock
//! on `<data-dir>/.lock`, as Kafka locks each log directory), and enough file descriptors.

use anyhow::{bail, Context};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory. It holds the owner's PID in decimal
/// (informational: the flock is the lock, and it dies with the process).
pub const LOCK_FILE: &str = ".lock";

/// Held for the life of the broker; dropping it (or the process dying, even by SIGKILL)
/// releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

/// Creates the data directory if needed and takes its lock without waiting. Fails at once,
/// naming the directory and the holder's PID, when another process owns it.
pub fn lock(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = data_dir.join(LOCK_FILE);
    // No truncation before the lock is ours: the file holds the current owner's PID.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { "unknown" } else { holder };
            bail!(
                "data directory {} is in use by another weir process (pid {holder}; lock file {}); \
                 stop it or use another --data-dir",
                data_dir.display(),
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0).and_then(|()| file.rewind()).with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
    Ok(DataDirLock { _file: file, path })
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (every partition's open segment, every
/// connection and every directory sync needs a descriptor) and returns the limit now in force.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only into the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads only the struct we pass; raising the soft limit up to the
        // hard one needs no privilege and affects only this process.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok((before, lim.rlim_cur))
}

#[cfg(not(target_os = "linux"))]
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::other("not supported on this platform"))
}
