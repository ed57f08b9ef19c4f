//! The SQLite sink is idempotent, and its table equals an independent SQL GROUP BY over the
//! same input.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use serde_json::json;
use weir_pipeline::sqlite::SqliteSink;
use weir_stream::{Aggregate, Event, Pipeline, TestDriver, Window, WindowSpec};

#[test]
fn sink_table_equals_a_sql_group_by_and_replays_do_not_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("results.db");
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut t = 0i64;
    let events: Vec<(String, i64, i64)> = (0..4000)
        .map(|_| {
            t += rng.gen_range(0..2000);
            (format!("c{}", rng.gen_range(0..25)), t, rng.gen_range(1..100))
        })
        .collect();
    let p = Pipeline::builder()
        .window(WindowSpec {
            window: Window::Tumbling { size_ms: 60_000 },
            aggregate: Aggregate::Sum,
            field: Some("amount".into()),
            allowed_lateness_ms: 0,
            early_updates: false,
            max_open_windows: 10_000,
            name: "value".into(),
            extra: Vec::new(),
            end_field: None,
        })
        .build()
        .unwrap();
    let mut d = TestDriver::new(p);
    for (k, t, a) in &events {
        d.push(Event::new(Some(k), json!({ "amount": a }), *t)).unwrap();
    }
    d.advance_watermark(i64::MAX / 2);
    let results = d.final_results();
    let mut sink = SqliteSink::open(&db, "sums").unwrap();
    sink.write(&results).unwrap();
    // A recovery replays some results: rows are overwritten, not duplicated.
    sink.write(&results[results.len() / 2..]).unwrap();

    // Independent computation: the raw events in SQLite, grouped by SQL.
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE events (key TEXT, ts INTEGER, amount INTEGER)").unwrap();
    {
        let mut ins = conn.prepare("INSERT INTO events VALUES (?1, ?2, ?3)").unwrap();
        for (k, t, a) in &events {
            ins.execute(rusqlite::params![k, t, a]).unwrap();
        }
    }
    let expected: Vec<(String, i64, f64, i64)> = conn
        .prepare("SELECT key, (ts / 60000) * 60000 AS ws, SUM(amount), COUNT(*) FROM events GROUP BY key, ws ORDER BY key, ws")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as f64, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got: Vec<(String, i64, f64, i64)> = conn
        .prepare("SELECT key, window_start, value, count FROM sums ORDER BY key, window_start")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len(), results.len());
    assert_eq!(got, expected);
    assert!(SqliteSink::open(&db, "bad; name").is_err());
}

#[test]
fn early_updates_never_overwrite_final_rows_and_checkpoints_share_the_transaction() {
    use weir_pipeline::sink::{Batch, Sink};
    use weir_stream::WindowResult;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut sink = SqliteSink::open(&db, "t").unwrap();
    let r = |value: f64, is_final| WindowResult {
        key: "k".into(),
        window_start_ms: 0,
        window_end_ms: 60_000,
        value,
        extra: Vec::new(),
        count: value as u64,
        kind: if is_final { weir_stream::ResultKind::Final } else { weir_stream::ResultKind::Early },
    };
    let cps = vec![("p/orders/0".to_owned(), b"{\"a\":1}".to_vec())];
    Sink::write(&mut sink, &Batch { results: &[r(1.0, false)], events: &[], checkpoints: &cps }).unwrap();
    sink.write(&[r(5.0, true)]).unwrap();
    sink.write(&[r(2.0, false)]).unwrap(); // a replayed early update
    let conn = Connection::open(&db).unwrap();
    let row: (f64, bool) = conn.query_row("SELECT value, final FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(row, (5.0, true));
    assert_eq!(sink.load_checkpoint("p/orders/0").unwrap().unwrap(), b"{\"a\":1}");
    assert!(sink.load_checkpoint("p/orders/1").unwrap().is_none());
    sink.clear_checkpoints("p/").unwrap();
    assert!(sink.load_checkpoint("p/orders/0").unwrap().is_none());
}

#[test]
fn a_retraction_deletes_an_early_row_but_never_a_final_one() {
    use weir_stream::WindowResult;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut sink = SqliteSink::open(&db, "t").unwrap();
    let r = |key: &str, start: i64, is_final: bool, retraction: bool| WindowResult {
        key: key.into(),
        window_start_ms: start,
        window_end_ms: start + 10,
        value: if retraction { 0.0 } else { 1.0 },
        extra: Vec::new(),
        count: u64::from(!retraction),
        kind: match (is_final, retraction) {
            (_, true) => weir_stream::ResultKind::Retraction,
            (true, false) => weir_stream::ResultKind::Final,
            (false, false) => weir_stream::ResultKind::Early,
        },
    };
    // An early update, then withdrawn in the same batch and re-sent under a new start; a final
    // row that a (wrong) retraction must not touch; an early update withdrawn in a later batch.
    sink.write(&[r("a", 5, false, false), r("a", 5, false, true), r("a", 2, false, false), r("b", 0, true, false)])
        .unwrap();
    sink.write(&[r("c", 7, false, false)]).unwrap();
    sink.write(&[r("b", 0, false, true), r("c", 7, false, true), r("a", 2, true, false)]).unwrap();
    let conn = Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT key, window_start, final FROM t ORDER BY key, window_start").unwrap();
    let rows: Vec<(String, i64, bool)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows, vec![("a".into(), 2, true), ("b".into(), 0, true)]);
}
