//! The PostgreSQL sink against a real server: `scripts/test` starts one and sets
//! `WEIR_TEST_POSTGRES` (and `WEIR_REQUIRE_POSTGRES=1`, so the test fails instead of skipping
//! when it is missing).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use weir_pipeline::postgres::PostgresSink;
use weir_pipeline::sink::{Batch, Sink};
use weir_stream::WindowResult;

fn conninfo() -> Option<String> {
    match std::env::var("WEIR_TEST_POSTGRES") {
        Ok(c) if !c.is_empty() => Some(c),
        _ => {
            assert!(std::env::var("WEIR_REQUIRE_POSTGRES").is_err(), "WEIR_TEST_POSTGRES is not set");
            eprintln!("skipped: WEIR_TEST_POSTGRES is not set (scripts/postgres starts a server)");
            None
        }
    }
}

fn kind(is_final: bool, retraction: bool) -> weir_stream::ResultKind {
    match (is_final, retraction) {
        (_, true) => weir_stream::ResultKind::Retraction,
        (true, false) => weir_stream::ResultKind::Final,
        (false, false) => weir_stream::ResultKind::Early,
    }
}

fn r(key: &str, start: i64, value: f64, is_final: bool, retraction: bool) -> WindowResult {
    WindowResult {
        key: key.into(),
        window_start_ms: start,
        window_end_ms: start + 10,
        value,
        extra: Vec::new(),
        count: value as u64,
        kind: kind(is_final, retraction),
    }
}

#[test]
fn upserts_never_overwrite_final_rows_and_retractions_delete_only_early_rows() {
    let Some(conninfo) = conninfo() else { return };
    let table = format!("sink_test_{}", std::process::id());
    let mut sink = PostgresSink::open(&conninfo, &table).unwrap();
    let cps = vec![(format!("{table}/t/0"), b"{\"a\":1}".to_vec())];
    // One batch with the same (key, start) several times: the statement may touch a row once.
    let first = [
        r("a", 5, 1.0, false, false),
        r("a", 5, 0.0, false, true),
        r("a", 2, 3.0, false, false),
        r("b", 0, 4.0, true, false),
        r("b", 0, 9.0, false, false), // a replayed early update after the final one
        r("c", 7, 1.0, false, false),
    ];
    sink.write(&Batch { results: &first, events: &[], checkpoints: &cps }).unwrap();
    sink.write(&Batch { results: &[r("b", 0, 0.0, false, true), r("c", 7, 0.0, false, true)], ..Batch::default() })
        .unwrap();
    sink.write(&Batch { results: &[r("a", 2, 6.0, true, false)], ..Batch::default() }).unwrap();
    let mut client = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
    let rows: Vec<(String, i64, f64, bool)> = client
        .query(&format!("SELECT key, window_start, value, final FROM {table} ORDER BY key, window_start"), &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(rows, vec![("a".into(), 2, 6.0, true), ("b".into(), 0, 4.0, true)]);
    assert_eq!(sink.load_checkpoint(&cps[0].0).unwrap().unwrap(), b"{\"a\":1}");
    sink.clear_checkpoints(&format!("{table}/")).unwrap();
    assert!(sink.load_checkpoint(&cps[0].0).unwrap().is_none());
    client.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}
