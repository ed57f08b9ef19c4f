//! ListOffsets and DeleteRecords.

use crate::errors;
use crate::server::Shared;
use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use weir_broker::{BrokerError, Partition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// KIP-405 (v8+): the first offset on local disk, which is the log start without tiering.
const EARLIEST_LOCAL: i64 = -4;
/// KIP-1005 (v9+): the last offset copied to tiered storage; none without tiering.
const LATEST_TIERED: i64 = -5;

/// (offset, timestamp) for a ListOffsets query; (-1, -1) when no record matches.
fn lookup(log: &Partition, timestamp: i64) -> Result<(i64, i64), BrokerError> {
    Ok(match timestamp {
        LATEST => (log.log_end_offset() as i64, -1),
        EARLIEST | EARLIEST_LOCAL => (log.log_start_offset() as i64, -1),
        LATEST_TIERED => (-1, -1),
        MAX_TIMESTAMP => {
            let max = log.stats().max_timestamp;
            match (max > i64::MIN).then(|| log.offset_for_timestamp(max)).transpose()?.flatten() {
                Some((offset, ts)) => (offset as i64, ts),
                None => (-1, -1),
            }
        }
        t if t >= 0 => match log.offset_for_timestamp(t)? {
            Some((offset, ts)) => (offset as i64, ts),
            None => (-1, -1),
        },
        _ => return Err(BrokerError::InvalidRequest("unknown special timestamp")),
    })
}

pub(crate) fn list_offsets(shared: &Shared, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let epoch = if version >= 4 { 0 } else { -1 };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let found = shared
                        .broker
                        .partition(&t.name.0, p.partition_index)
                        .and_then(|part| lookup(&part, p.timestamp));
                    match found {
                        Ok((offset, ts)) => r.with_offset(offset).with_timestamp(ts).with_leader_epoch(epoch),
                        Err(e) => r
                            .with_error_code(errors::error_code(&e))
                            .with_offset(-1)
                            .with_timestamp(-1)
                            .with_leader_epoch(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

pub(crate) fn delete_records(shared: &Shared, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    let done = shared.broker.partition(&t.name.0, p.partition_index).and_then(|part| {
                        let target = if p.offset == -1 { part.log_end_offset() } else { p.offset.max(0) as u64 };
                        part.delete_records_before(target)
                    });
                    match done {
                        Ok(low) => r.with_low_watermark(low as i64),
                        Err(e) => r.with_error_code(errors::error_code(&e)).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
