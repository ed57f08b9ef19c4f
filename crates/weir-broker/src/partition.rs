//! One partition: its log plus the sequence state of idempotent producers.

use crate::config::{ProducePolicy, TimestampType};
use crate::error::BrokerError;
use crate::producer::{ProducerStates, SequenceCheck};
use crate::schedule::Schedule;
use bytes::BytesMut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use weir_log::batch::{ATTRIBUTES, ATTR_LOG_APPEND_TIME, CRC, MAX_TIMESTAMP};
use weir_log::unpoisoned::{UnpoisonedMutex, UnpoisonedRwLock};
use weir_log::{Clock, Durability, Log, LogConfig, LogStats, ReadInfo, Storage, ValidatedBatch};

/// One partition, and the front ends' only door to its data: they produce, read, look up
/// offsets and delete records through these operations and never touch the log itself.
#[derive(Debug)]
pub struct Partition {
    pub index: i32,
    pub(crate) log: Log,
    /// Held across check-append-record so sequence checks and offsets agree.
    producers: Mutex<Producers>,
    /// The topic's timestamp and replica rules (changed by AlterConfigs).
    policy: RwLock<ProducePolicy>,
    clock: Arc<dyn Clock>,
    /// The broker's timetable of flushes and rolls by age, and whether this partition is
    /// entered in it (so an append costs one atomic load once it is).
    schedule: Arc<Schedule>,
    scheduled: AtomicBool,
    me: Weak<Partition>,
    /// Messages and bytes through the front ends, summed per topic on /metrics; counters
    /// that exist from the partition's opening, so counting is one atomic add, no lookup.
    traffic: Traffic,
}

/// What producers wrote to a partition and consumers were handed from it.
#[derive(Debug, Default)]
pub struct Traffic {
    pub produced_messages: weir_metrics::Counter,
    /// Bytes of the record batches as produced.
    pub produced_bytes: weir_metrics::Counter,
    pub consumed_messages: weir_metrics::Counter,
    /// Bytes of the records handed out (whole stored batches over Kafka).
    pub consumed_bytes: weir_metrics::Counter,
}

/// Producer state and the buffer a LogAppendTime batch is rewritten in (reused, so the
/// rewrite allocates nothing once it has grown to the largest batch).
#[derive(Debug, Default)]
struct Producers {
    states: ProducerStates,
    scratch: Vec<u8>,
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
        let log = Log::open(dir, config, storage, clock.clone())?;
        let mut states = ProducerStates::default();
        log.for_each_batch_header(log.log_start_offset(), |h| states.record(h, h.base_offset as u64))?;
        Ok(Arc::new_cyclic(|me| Self {
            index,
            log,
            producers: Mutex::new(Producers { states, scratch: Vec::new() }),
            policy: RwLock::new(ProducePolicy::default()),
            clock,
            schedule,
            scheduled: AtomicBool::new(false),
            me: me.clone(),
            traffic: Traffic::default(),
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

    /// The idempotent producers with state on this partition (DescribeProducers).
    pub fn active_producers(&self) -> Vec<crate::producer::ActiveProducer> {
        self.producers.lock_unpoisoned().states.active()
    }

    pub fn policy(&self) -> ProducePolicy {
        *self.policy.read_unpoisoned()
    }

    pub fn set_policy(&self, policy: ProducePolicy) {
        *self.policy.write_unpoisoned() = policy;
    }

    /// Kafka's timestamp rules for a CreateTime batch: its first timestamp not older than
    /// `before`, its maxTimestamp not later than `after` (the header's two timestamps,
    /// so no record is decoded).
    fn check_timestamps(policy: &ProducePolicy, h: &weir_log::BatchHeader, now: i64) -> Result<(), BrokerError> {
        let too_old = policy.timestamp_before_max_ms != i64::MAX
            && h.base_timestamp < now.saturating_sub(policy.timestamp_before_max_ms);
        let too_new = policy.timestamp_after_max_ms != i64::MAX
            && h.max_timestamp > now.saturating_add(policy.timestamp_after_max_ms);
        if too_old || too_new {
            return Err(BrokerError::InvalidTimestamp {
                timestamp: if too_old { h.base_timestamp } else { h.max_timestamp },
                now,
            });
        }
        Ok(())
    }

    /// Appends one validated batch, de-duplicating retries of idempotent producers: the
    /// broker's own writes (committed offsets) and `produce` below; front ends call `produce`.
    pub fn append(&self, batch: &ValidatedBatch<'_>) -> Result<Appended, BrokerError> {
        let policy = self.policy();
        let now = self.clock.now_ms();
        if policy.timestamp_type == TimestampType::CreateTime {
            Self::check_timestamps(&policy, batch.header(), now)?;
        }
        let mut guard = self.producers.lock_unpoisoned();
        let Producers { states: producers, scratch } = &mut *guard;
        let h = batch.header();
        let stamped;
        let batch = if policy.timestamp_type == TimestampType::LogAppendTime {
            stamped = stamp_log_append_time(batch, now, scratch)?;
            &stamped
        } else {
            batch
        };
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

    /// Appends the bytes a producer sent for this partition: exactly one RecordBatch v2,
    /// checked against the topic's max.message.bytes, never transactional (no coordinator).
    /// The produce path of every front end (Kafka Produce, HTTP, through the CLI).
    pub fn produce(&self, records: &[u8]) -> Result<Appended, BrokerError> {
        let batch = ValidatedBatch::new(records, self.log.config().max_batch_bytes)?;
        if batch.header().is_transactional() || batch.header().is_control() {
            return Err(BrokerError::InvalidRequest("transactional batches are not supported"));
        }
        let appended = self.append(&batch)?;
        if !appended.duplicate {
            self.traffic.produced_messages.add(batch.header().records_count.max(0) as u64);
            self.traffic.produced_bytes.add(batch.len() as u64);
        }
        Ok(appended)
    }

    /// A front end handed `messages` records of `bytes` bytes from this partition to a consumer.
    pub fn count_consumed(&self, messages: u64, bytes: u64) {
        self.traffic.consumed_messages.add(messages);
        self.traffic.consumed_bytes.add(bytes);
    }

    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Appends whole stored batches starting with the one that holds `offset` to `out`, up
    /// to `max_bytes` (at least one batch). Past the end: `OffsetOutOfRange`.
    pub fn read(&self, offset: u64, max_bytes: usize, out: &mut BytesMut) -> Result<ReadInfo, BrokerError> {
        Ok(self.log.read(offset, max_bytes, out)?)
    }

    /// The first (offset, timestamp) with a timestamp at or after `timestamp`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>, BrokerError> {
        Ok(self.log.offset_for_timestamp(timestamp)?)
    }

    /// DeleteRecords: offsets below `offset` become unreadable; returns the new log start.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64, BrokerError> {
        Ok(self.log.delete_records_before(offset)?)
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> u64 {
        self.log.log_end_offset()
    }

    /// Sizes, offsets and timestamps for metrics and descriptions.
    pub fn stats(&self) -> LogStats {
        self.log.stats()
    }

    /// The log underneath, for the broker's maintenance and for storage tests; front ends
    /// use the operations above.
    pub fn log(&self) -> &Log {
        &self.log
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

/// LogAppendTime: the batch's maxTimestamp becomes the append time and its attributes say
/// so, with the CRC recomputed (both lie inside it), as Kafka's LogValidator does. Record
/// deltas are left alone: consumers use maxTimestamp for every record of such a batch.
fn stamp_log_append_time<'a>(
    batch: &ValidatedBatch<'_>,
    now: i64,
    scratch: &'a mut Vec<u8>,
) -> Result<ValidatedBatch<'a>, BrokerError> {
    scratch.clear();
    scratch.extend_from_slice(batch.bytes());
    let attributes = batch.header().attributes | ATTR_LOG_APPEND_TIME;
    scratch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    scratch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now.to_be_bytes());
    let crc = weir_log::batch::compute_crc(scratch);
    scratch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(ValidatedBatch::new(scratch, usize::MAX)?)
}
