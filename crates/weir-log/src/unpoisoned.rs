//! Locks that ignore poisoning. Every critical section in Weir is short and leaves its data
//! consistent at each step, so a thread that panicked inside one left nothing half-done; the
//! next caller takes the data as it is rather than panicking in turn.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `lock_unpoisoned` for a `Mutex`.
pub trait UnpoisonedMutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

/// `read_unpoisoned` and `write_unpoisoned` for an `RwLock`.
pub trait UnpoisonedRwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> UnpoisonedMutex<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> UnpoisonedRwLock<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|e| e.into_inner())
    }
}
