//! Heap allocations on the broker's produce path (request decode → validation → append →
//! response encode) and fetch path (log read → response encode), counted with a counting
//! global allocator. Per-request allocations are fine; per-record ones are not, so the count
//! per request must not grow when a batch holds 100× more records.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::sync::Arc;
use weir_broker::{Broker, BrokerConfig, NewTopic};
use weir_log::{BatchBuilder, FsStorage, SystemClock};

#[path = "../../../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{count, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn produce_frame(records: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..records {
        b.push(1_700_000_000_000, Some(format!("k{i}").as_bytes()), Some(&[7u8; 100]));
    }
    let req = ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(b.build())))]),
    ]);
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(9)
        .with_correlation_id(1)
        .encode(&mut buf, 2)
        .unwrap();
    req.encode(&mut buf, 9).unwrap();
    buf.to_vec()
}

#[test]
fn produce_and_fetch_allocations_do_not_grow_with_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig { data_dir: dir.path().to_owned(), ..BrokerConfig::default() },
        Arc::new(FsStorage),
        Arc::new(SystemClock),
    )
    .unwrap();
    broker.create_topic(&NewTopic { name: "t".into(), partitions: Some(1), ..NewTopic::default() }, false).unwrap();
    let partition = broker.partition("t", 0).unwrap();
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut read_buf = BytesMut::with_capacity(4 << 20);

    let mut per_request = Vec::new();
    for records in [10usize, 1000] {
        let frame = produce_frame(records);
        // Warm-up, then measure 200 requests.
        let mut produce = |count_it: bool| {
            let mut run = || {
                let (_, req) = weir_server::fuzzing::decode_request(&frame).unwrap();
                for batch in weir_server::fuzzing::produce_batches(&req) {
                    // The front ends' door: validation, the produce policy and the traffic counters.
                    let a = partition.produce(&batch).unwrap();
                    let resp = ProduceResponse::default().with_responses(vec![
                        produce_response::TopicProduceResponse::default()
                            .with_name(TopicName(StrBytes::from_static_str("t")))
                            .with_partition_responses(vec![produce_response::PartitionProduceResponse::default()
                                .with_index(0)
                                .with_base_offset(a.base_offset as i64)]),
                    ]);
                    out.clear();
                    out.put_i32(0);
                    resp.encode(&mut out, 9).unwrap();
                }
            };
            if count_it {
                count(run).1
            } else {
                run();
                0
            }
        };
        for _ in 0..20 {
            produce(false);
        }
        let produced: u64 = (0..200).map(|_| produce(true)).sum();
        // Fetch: read whole batches from the start and encode a response carrying them.
        let mut fetch = || {
            count(|| {
                read_buf.clear();
                let info = partition.read(0, 1 << 20, &mut read_buf).unwrap();
                let resp =
                    FetchResponse::default().with_responses(vec![fetch_response::FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(vec![fetch_response::PartitionData::default()
                            .with_high_watermark(info.high_watermark as i64)
                            .with_records(Some(read_buf.split().freeze()))])]);
                out.clear();
                resp.encode(&mut out, 12).unwrap();
            })
            .1
        };
        fetch();
        let fetched: u64 = (0..200).map(|_| fetch()).sum();
        println!(
            "{records} records per batch: produce {:.1} allocations per request ({:.4} per record), fetch {:.1} per request",
            produced as f64 / 200.0,
            produced as f64 / 200.0 / records as f64,
            fetched as f64 / 200.0
        );
        per_request.push((produced, fetched));
    }
    let (small, large) = (per_request[0], per_request[1]);
    assert!(large.0 <= small.0 + 20, "produce allocations grow with records: {small:?} -> {large:?}");
    assert!(large.1 <= small.1 + 20, "fetch allocations grow with records: {small:?} -> {large:?}");
}
