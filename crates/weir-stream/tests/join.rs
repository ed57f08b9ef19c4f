//! Keyed window joins.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::json;
use weir_stream::{Event, Side, WindowJoin};

#[test]
fn joins_same_key_same_window_and_dead_letters_late_events() {
    let mut j = WindowJoin::new(10_000, 0, 0, 1000).unwrap();
    let ev = |k: &str, v: i64, t: i64| Event::new(Some(k), json!({ "v": v }), t);
    let mut pairs = Vec::new();
    let mut dead = Vec::new();
    for (side, e) in [
        (Side::Left, ev("a", 1, 1_000)),
        (Side::Right, ev("a", 10, 2_000)),
        (Side::Right, ev("b", 20, 3_000)), // no left partner
        (Side::Left, ev("a", 2, 12_000)),  // next window
        (Side::Right, ev("a", 11, 9_000)),
        (Side::Right, ev("a", 12, 25_000)), // moves the watermark past both windows
        (Side::Left, ev("a", 3, 4_000)),    // late now
    ] {
        let (p, d) = j.push(side, e, 0).unwrap();
        pairs.extend(p);
        dead.extend(d);
    }
    pairs.extend(j.advance_watermark(i64::MAX / 2));
    let got: Vec<(String, i64, i64, i64)> = pairs
        .iter()
        .map(|p| (p.key.clone(), p.window_start_ms, p.left["v"].as_i64().unwrap(), p.right["v"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, vec![("a".into(), 0, 1, 10), ("a".into(), 0, 1, 11)]);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.value, json!({"v": 3}));
}

#[test]
fn buffer_bound_is_an_error() {
    let mut j = WindowJoin::new(10_000, 0, 0, 2).unwrap();
    j.push(Side::Left, Event::new(Some("a"), json!({}), 1), 0).unwrap();
    j.push(Side::Left, Event::new(Some("a"), json!({}), 2), 0).unwrap();
    assert!(j.push(Side::Right, Event::new(Some("a"), json!({}), 3), 0).is_err());
}

/// A table join is an as-of join in event time: a left event joins the row its key had at the
/// left event's time, whatever order the two sides arrived in; a null row (a tombstone)
/// deletes the key from its time on; and the state survives a checkpoint.
#[test]
fn table_join_is_as_of_event_time_and_tombstones_delete() {
    use weir_stream::{JoinKind, JoinSpec, Pipeline};
    let build = || {
        let classify: weir_stream::keyed_join::Classify =
            Box::new(|ev: &Event| Ok(Some(if ev.source == 0 { Side::Left } else { Side::Right })));
        Pipeline::builder()
            .join(JoinSpec { kind: JoinKind::Table, classify, allowed_lateness_ms: 0, max_state: 100, until: None })
            .out_of_orderness(10_000)
            .build()
            .unwrap()
    };
    let ev = |source: u16, v: serde_json::Value, t: i64| {
        let mut e = Event::new(Some("k"), v, t);
        e.source = source;
        e
    };
    let mut p = build();
    let mut pairs = Vec::new();
    let inputs = [
        ev(1, json!({"row": 1}), 1_000),
        ev(0, json!({"left": 1}), 5_000),
        ev(1, json!({"row": 2}), 3_000), // arrives after left 1, but is its row as of 5 000
        ev(0, json!({"left": 2}), 8_000),
        ev(1, serde_json::Value::Null, 7_000), // deleted before left 2
    ];
    for e in inputs {
        pairs.extend(p.process(e, 0).unwrap().events);
    }
    // Through a checkpoint: rows and waiting left events are state.
    let cp = p.checkpoint(Default::default());
    let mut p = build();
    p.restore(weir_stream::Checkpoint::from_json(&cp.to_json().unwrap()).unwrap());
    for e in [ev(1, json!({"row": 3}), 9_000), ev(0, json!({"left": 3}), 9_500)] {
        pairs.extend(p.process(e, 0).unwrap().events);
    }
    pairs.extend(p.advance_watermark(i64::MAX / 2).events);
    let got: Vec<(i64, i64, i64)> = pairs
        .iter()
        .map(|e| (e.value["left"]["left"].as_i64().unwrap(), e.value["right"]["row"].as_i64().unwrap(), e.timestamp_ms))
        .collect();
    assert_eq!(got, vec![(1, 2, 5_000), (3, 3, 9_500)]);
}
