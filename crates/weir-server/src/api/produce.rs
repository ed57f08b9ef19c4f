//! Produce and InitProducerId.

use super::str_bytes;
use crate::errors;
use crate::server::Shared;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::ProducerId;
use weir_broker::{BrokerError, Topic};

/// Handles a Produce request; None for acks=0, which gets no response at all.
pub(crate) fn handle(shared: &Shared, req: ProduceRequest, version: i16) -> Option<ProduceResponse> {
    let acks = req.acks;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended_any = false;
    for topic_data in req.topic_data {
        // v13+ names topics by id (KIP-516).
        let topic = if version >= 13 {
            shared.broker.topic_by_id(topic_data.topic_id.as_bytes())
        } else {
            shared.broker.topic(&topic_data.name.0)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for p in topic_data.partition_data {
            let r = if !matches!(acks, -1..=1) {
                error_response(p.index, errors::INVALID_REQUIRED_ACKS, "acks must be -1, 0 or 1".into(), version)
            } else if req.transactional_id.is_some() {
                error_response(
                    p.index,
                    errors::TRANSACTIONS_UNSUPPORTED,
                    errors::TRANSACTIONS_UNSUPPORTED_MESSAGE.into(),
                    version,
                )
            } else {
                let r = if topic.is_none() && version >= 13 {
                    error_response(p.index, errors::UNKNOWN_TOPIC_ID, "unknown topic id".into(), version)
                } else {
                    let name = topic.as_ref().map_or(topic_data.name.0.as_str(), |t| t.name.as_str());
                    produce_partition(topic.as_deref(), name, &p, acks, version)
                };
                appended_any |= r.error_code == errors::NONE;
                r
            };
            partitions.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partitions),
        );
    }
    if appended_any {
        shared.notify_appended();
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}

fn error_response(index: i32, code: i16, message: String, version: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_error_message((version >= 8).then(|| str_bytes(&message)))
}

fn produce_partition(
    topic: Option<&Topic>,
    name: &str,
    p: &PartitionProduceData,
    acks: i16,
    version: i16,
) -> PartitionProduceResponse {
    let fail = |e: BrokerError| {
        let code = errors::error_code(&e);
        if code == errors::KAFKA_STORAGE_ERROR || code == errors::UNKNOWN_SERVER_ERROR {
            tracing::error!(topic = name, partition = p.index, error = %e, "produce failed");
        } else {
            tracing::debug!(topic = name, partition = p.index, error = %e, "produce rejected");
        }
        error_response(p.index, code, e.to_string(), version)
    };
    let Some(partition) = topic.and_then(|t| t.partition(p.index)) else {
        return fail(BrokerError::UnknownTopicOrPartition { topic: name.to_owned(), partition: p.index });
    };
    let Some(records) = p.records.as_ref() else {
        return fail(BrokerError::InvalidRequest("no records"));
    };
    let required = partition.policy().min_insync_replicas;
    if acks == -1 && required > 1 {
        return fail(BrokerError::NotEnoughReplicas { required });
    }
    // Produce v3+ carries exactly one v2 batch per partition.
    let appended = match partition.produce(records) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    if acks == -1 {
        if let Err(e) = partition.wait_durable(appended.end_offset) {
            return fail(e);
        }
    }
    PartitionProduceResponse::default()
        .with_index(p.index)
        .with_base_offset(appended.base_offset as i64)
        .with_log_start_offset(if version >= 5 { appended.log_start_offset as i64 } else { -1 })
}

pub(crate) fn init_producer_id(shared: &Shared, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty()) {
        return InitProducerIdResponse::default()
            .with_error_code(errors::TRANSACTIONS_UNSUPPORTED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let current = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    match shared.broker.init_producer_id(current) {
        Ok((id, epoch)) => {
            InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(epoch)
        }
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            InitProducerIdResponse::default()
                .with_error_code(errors::error_code(&e))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
