//! Golden frames captured from real clients (scripts/capture-golden.py): each decodes and
//! re-encodes byte for byte, a real server answers each, and thousands of mutations of each
//! go through the fuzzing entry points without a panic or a runaway allocation. This is the
//! stable-Rust regression run of the fuzz corpus; fuzz/ holds the cargo-fuzz targets.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Encodable;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

fn golden() -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut out = Vec::new();
    for client in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(client.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    out.sort();
    assert!(out.len() >= 30, "golden corpus missing: run scripts/capture-golden.py");
    out
}

#[test]
fn golden_frames_decode_and_reencode_byte_for_byte() {
    let mut checked = 0;
    let mut clients = std::collections::BTreeSet::new();
    for (path, frame) in golden() {
        let body = &frame[4..];
        let version = i16::from_be_bytes([body[2], body[3]]);
        let key = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).unwrap();
        if key == ApiKey::Produce && version < 3 {
            continue;
        }
        let (header, request) =
            weir_server::fuzzing::decode_request(body).unwrap_or_else(|| panic!("{} does not decode", path.display()));
        let mut out = BytesMut::new();
        RequestHeader::encode(&header, &mut out, key.request_header_version(version)).unwrap();
        request.encode(&mut out, version).unwrap();
        assert_eq!(&out[..], body, "{}: re-encoding differs", path.display());
        clients.insert(path.parent().unwrap().file_name().unwrap().to_owned());
        checked += 1;
    }
    assert_eq!(clients.len(), 3, "frames from kcat, confluent-kafka and kafka-python");
    println!("{checked} golden frames round-tripped");
}

#[test]
fn mutated_golden_frames_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let iterations: usize = std::env::var("WEIR_FUZZ_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut runs = 0;
    for (_, frame) in golden() {
        let body = &frame[4..];
        weir_server::fuzzing::request_path(body);
        for _ in 0..iterations {
            let mut m = body.to_vec();
            match rng.gen_range(0..5) {
                0 => {
                    for _ in 0..rng.gen_range(1..8) {
                        let i = rng.gen_range(0..m.len());
                        m[i] ^= 1 << rng.gen_range(0..8);
                    }
                }
                1 => m.truncate(rng.gen_range(0..m.len())),
                2 if m.len() > 12 => {
                    // A length or count field turned huge (CVE-2022-34917's shape).
                    let i = rng.gen_range(8..m.len() - 4);
                    m[i..i + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
                }
                3 => {
                    let i = rng.gen_range(0..m.len());
                    m[i] = [0x00, 0xff, 0x7f, 0x80][rng.gen_range(0..4)];
                }
                _ => {
                    let i = rng.gen_range(0..m.len());
                    let junk: Vec<u8> = (0..rng.gen_range(1..32)).map(|_| rng.gen()).collect();
                    m.splice(i..i, junk);
                }
            }
            weir_server::fuzzing::request_path(&m);
            runs += 1;
        }
    }
    println!("{runs} mutated frames decoded without a panic");
}

#[test]
fn mutated_batches_and_segments_never_panic_or_serve_garbage() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xba7c);
    let batches: Vec<Vec<u8>> = golden()
        .iter()
        .filter_map(|(_, f)| weir_server::fuzzing::decode_request(&f[4..]))
        .flat_map(|(_, r)| weir_server::fuzzing::produce_batches(&r))
        .map(|b| b.to_vec())
        .collect();
    assert!(batches.len() >= 3, "produce batches from the clients");
    let mut runs = 0;
    for b in &batches {
        weir_log::fuzzing::validate_batch(b);
        weir_log::fuzzing::recover_segment(b, true);
        for _ in 0..200 {
            let mut m = b.clone();
            let i = rng.gen_range(0..m.len());
            m[i] ^= 1 << rng.gen_range(0..8);
            if rng.gen_bool(0.3) {
                m.truncate(rng.gen_range(0..m.len()));
            }
            weir_log::fuzzing::validate_batch(&m);
            let mut seg = b.clone();
            seg.extend_from_slice(&m);
            weir_log::fuzzing::recover_segment(&seg, rng.gen_bool(0.5));
            runs += 1;
        }
    }
    for _ in 0..500 {
        let junk: Vec<u8> = (0..rng.gen_range(0..512)).map(|_| rng.gen()).collect();
        weir_log::fuzzing::recover_segment(&junk, rng.gen_bool(0.5));
        runs += 1;
    }
    println!("{runs} mutated batches and segments handled");
}

/// confluent-kafka's librdkafka uses Fetch v13+ once it is offered, naming the topic by its
/// id (KIP-516): the captured frame must carry a real topic id.
#[test]
fn confluent_kafka_fetches_by_topic_id() {
    use kafka_protocol::messages::RequestKind;
    let fetches: Vec<_> = golden()
        .into_iter()
        .filter(|(p, f)| {
            p.to_string_lossy().contains("confluent-kafka") && i16::from_be_bytes([f[4], f[5]]) == ApiKey::Fetch as i16
        })
        .filter_map(|(_, f)| {
            let version = i16::from_be_bytes([f[6], f[7]]);
            let (_, request) = weir_server::fuzzing::decode_request(&f[4..])?;
            Some((version, request))
        })
        .collect();
    let newest = fetches.iter().max_by_key(|(v, _)| *v).expect("a confluent-kafka Fetch frame");
    assert!(newest.0 >= 13, "confluent-kafka fetched with v{} only", newest.0);
    let RequestKind::Fetch(req) = &newest.1 else { panic!("not a Fetch request") };
    assert!(!req.topics.is_empty() && req.topics.iter().all(|t| !t.topic_id.is_nil()), "topics named by id");
}
