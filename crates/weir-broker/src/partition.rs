//! One partition: its log plus the sequence state of idempotent producers.

use crate::error::BrokerError;
use crate::producer::{ProducerStates, SequenceCheck};
use crate::schedule::Schedule;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use weir_log::{Clock, Durability, Log, LogConfig, Storage, ValidatedBatch};

#[derive(Debug)]
pub struct Partition {
    pub index: i32,
    pub log: Log,
    /// Held across check-append-record so sequence checks and offsets agree.
    producers: Mutex<ProducerStates>,
    /// The broker's timetable of flushes and rolls by age, and whether this partition is
    /// entered in it (so an append costs one atomic load once it is).
    schedule: Arc<Schedule>,
    scheduled: AtomicBool,
    me: Weak<Partition>,
}

/// Where a produced batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    /// One past the batch's last offset: wait for durability up to here.
    pub end_offset: u64,
    pub log_start_offset: u64,
    /// A retry of a batch that was already in the log.
    pub duplicate: bool,
}

impl Partition {
    pub(crate) fn open(
        dir: std::path::PathBuf,
        index: i32,
        config: LogConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        schedule: Arc<Schedule>,
    ) -> Result<Arc<Self>, BrokerError> {
        let log = Log::open(dir, config, storage, clock)?;
        let mut states = ProducerStates::default();
        log.for_each_batch_header(log.log_start_offset(), |h| states.record(h, h.base_offset as u64))?;
        Ok(Arc::new_cyclic(|me| Self {
            index,
            log,
            producers: Mutex::new(states),
            schedule,
            scheduled: AtomicBool::new(false),
            me: me.clone(),
        }))
    }

    /// Enters the partition in the schedule if it has timed work and is not entered yet.
    fn schedule_if_pending(&self) {
        if self.scheduled.load(Ordering::Acquire) {
            return;
        }
        if let Some(due) = self.log.next_due_ms() {
            if !self.scheduled.swap(true, Ordering::AcqRel) {
                self.schedule.add(due, self.me.clone());
            }
        }
    }

    /// After the tick took this partition's entry and did what was due: enter it again if
    /// more is pending. The flag is cleared first, so a concurrent append either sees it
    /// clear and enters the partition itself, or its data is seen here.
    pub(crate) fn reschedule(&self) {
        self.scheduled.store(false, Ordering::Release);
        self.schedule_if_pending();
    }

    /// A config change can move due times earlier: check at the next tick.
    pub(crate) fn schedule_check(&self, now_ms: i64) {
        self.schedule.add(now_ms, self.me.clone());
    }

    /// Appends one producer batch, de-duplicating retries of idempotent producers.
    pub fn append(&self, batch: &ValidatedBatch<'_>) -> Result<Appended, BrokerError> {
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        let h = batch.header();
        match producers.check(h)? {
            SequenceCheck::Duplicate { base_offset } => Ok(Appended {
                base_offset,
                end_offset: base_offset + h.offset_count(),
                log_start_offset: self.log.log_start_offset(),
                duplicate: true,
            }),
            SequenceCheck::Append => {
                let info = self.log.append(std::slice::from_ref(batch))?;
                producers.record(h, info.base_offset);
                self.schedule_if_pending();
                Ok(Appended {
                    base_offset: info.base_offset,
                    end_offset: info.log_end_offset,
                    log_start_offset: self.log.log_start_offset(),
                    duplicate: false,
                })
            }
        }
    }

    /// Blocks until offsets below `end_offset` are durable when the policy is `always`;
    /// other policies make data durable on their own schedule.
    pub fn wait_durable(&self, end_offset: u64) -> Result<(), BrokerError> {
        if self.log.config().durability == Durability::Always {
            self.log.sync_to(end_offset)?;
        }
        Ok(())
    }
}
