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
