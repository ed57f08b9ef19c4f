//! Table-driven tests of windows, watermarks, lateness, dedup and dead letters, all through
//! the TestDriver (no broker, no sleeps).
#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(clippy::identity_op)] // `1 * S` keeps the time tables aligned

use serde_json::json;
use weir_stream::{Aggregate, DeadLetterReason, Event, Pipeline, StreamError, TestDriver, Window, WindowSpec};

const S: i64 = 1000;

fn spec(window: Window, aggregate: Aggregate, lateness_ms: i64) -> WindowSpec {
    WindowSpec {
        window,
        aggregate,
        field: Some("amount".into()),
        allowed_lateness_ms: lateness_ms,
        early_updates: false,
        max_open_windows: 10_000,
        name: "value".into(),
        extra: Vec::new(),
        end_field: None,
    }
}

fn ev(key: &str, amount: f64, t: i64) -> Event {
    Event::new(Some(key), json!({ "amount": amount }), t)
}

/// (key, start, end, value, count) of the final results.
fn finals(d: &TestDriver) -> Vec<(String, i64, i64, f64, u64)> {
    d.final_results().into_iter().map(|r| (r.key, r.window_start_ms, r.window_end_ms, r.value, r.count)).collect()
}

struct Case {
    name: &'static str,
    window: Window,
    aggregate: Aggregate,
    out_of_orderness_ms: i64,
    lateness_ms: i64,
    events: Vec<(&'static str, f64, i64)>,
    expected: Vec<(&'static str, i64, i64, f64, u64)>,
    late: usize,
}

#[test]
fn window_table() {
    use Aggregate::*;
    let cases = vec![
        Case {
            name: "tumbling sum, in order",
            window: Window::Tumbling { size_ms: 10 * S },
            aggregate: Sum,
            out_of_orderness_ms: 0,
            lateness_ms: 0,
            events: vec![
                ("a", 1.0, 1 * S),
                ("b", 2.0, 2 * S),
                ("a", 3.0, 9 * S),
                ("a", 4.0, 10 * S),
                ("b", 5.0, 15 * S),
            ],
            expected: vec![
                ("a", 0, 10 * S, 4.0, 2),
                ("a", 10 * S, 20 * S, 4.0, 1),
                ("b", 0, 10 * S, 2.0, 1),
                ("b", 10 * S, 20 * S, 5.0, 1),
            ],
            late: 0,
        },
        Case {
            name: "tumbling, out of order within the bound",
            window: Window::Tumbling { size_ms: 10 * S },
            aggregate: Sum,
            out_of_orderness_ms: 5 * S,
            lateness_ms: 0,
            events: vec![("a", 1.0, 8 * S), ("a", 1.0, 12 * S), ("a", 10.0, 9 * S), ("a", 1.0, 14 * S)],
            expected: vec![("a", 0, 10 * S, 11.0, 2), ("a", 10 * S, 20 * S, 2.0, 2)],
            late: 0,
        },
        Case {
            name: "tumbling, late beyond lateness goes to the DLQ",
            window: Window::Tumbling { size_ms: 10 * S },
            aggregate: Count,
            out_of_orderness_ms: 0,
            lateness_ms: 2 * S,
            // 21 s moves the watermark to 21 s: [0,10) closed at 12 s, so 5 s is late;
            // [10,20) is open until 22 s, so 19 s still counts.
            events: vec![("a", 0.0, 1 * S), ("a", 0.0, 21 * S), ("a", 0.0, 5 * S), ("a", 0.0, 19 * S)],
            expected: vec![("a", 0, 10 * S, 1.0, 1), ("a", 10 * S, 20 * S, 1.0, 1), ("a", 20 * S, 30 * S, 1.0, 1)],
            late: 1,
        },
        Case {
            name: "sliding windows overlap",
            window: Window::Sliding { size_ms: 10 * S, slide_ms: 5 * S },
            aggregate: Sum,
            out_of_orderness_ms: 0,
            lateness_ms: 0,
            events: vec![("k", 1.0, 7 * S), ("k", 2.0, 12 * S)],
            expected: vec![("k", 0, 10 * S, 1.0, 1), ("k", 5 * S, 15 * S, 3.0, 2), ("k", 10 * S, 20 * S, 2.0, 1)],
            late: 0,
        },
        Case {
            name: "session windows split on the gap and merge when bridged",
            window: Window::Session { gap_ms: 5 * S },
            aggregate: Sum,
            out_of_orderness_ms: 20 * S,
            lateness_ms: 0,
            // 0 and 3 form a session; 20 another; 12 is alone until 8 bridges 3..12.
            events: vec![("u", 1.0, 0), ("u", 1.0, 3 * S), ("u", 1.0, 20 * S), ("u", 1.0, 12 * S), ("u", 1.0, 8 * S)],
            expected: vec![("u", 0, 17 * S, 4.0, 4), ("u", 20 * S, 25 * S, 1.0, 1)],
            late: 0,
        },
        Case {
            name: "min, max and avg",
            window: Window::Tumbling { size_ms: 60 * S },
            aggregate: Avg,
            out_of_orderness_ms: 0,
            lateness_ms: 0,
            events: vec![("x", 2.0, 1 * S), ("x", 4.0, 2 * S), ("x", 9.0, 3 * S)],
            expected: vec![("x", 0, 60 * S, 5.0, 3)],
            late: 0,
        },
        Case {
            name: "count distinct",
            window: Window::Tumbling { size_ms: 60 * S },
            aggregate: CountDistinct,
            out_of_orderness_ms: 0,
            lateness_ms: 0,
            events: vec![("x", 2.0, 1 * S), ("x", 2.0, 2 * S), ("x", 3.0, 3 * S)],
            expected: vec![("x", 0, 60 * S, 2.0, 3)],
            late: 0,
        },
    ];
    for c in cases {
        let p = Pipeline::builder()
            .out_of_orderness(c.out_of_orderness_ms)
            .window(spec(c.window, c.aggregate, c.lateness_ms))
            .build()
            .unwrap();
        let mut d = TestDriver::new(p);
        for (k, a, t) in &c.events {
            d.push(ev(k, *a, *t)).unwrap();
        }
        d.advance_watermark(i64::MAX / 2);
        let expected: Vec<(String, i64, i64, f64, u64)> =
            c.expected.iter().map(|(k, s, e, v, n)| (k.to_string(), *s, *e, *v, *n)).collect();
        assert_eq!(finals(&d), expected, "{}", c.name);
        assert_eq!(d.dead_letters().len(), c.late, "{}: dead letters", c.name);
        assert!(d.dead_letters().iter().all(|x| matches!(x.reason, DeadLetterReason::Late { .. })), "{}", c.name);
    }
}

#[test]
fn min_and_max() {
    for (agg, want) in [(Aggregate::Min, -1.0), (Aggregate::Max, 7.0)] {
        let mut d =
            TestDriver::new(Pipeline::builder().window(spec(Window::Tumbling { size_ms: S }, agg, 0)).build().unwrap());
        for (a, t) in [(3.0, 10), (-1.0, 20), (7.0, 30)] {
            d.push(ev("k", a, t)).unwrap();
        }
        d.advance_watermark(S);
        assert_eq!(d.final_results()[0].value, want);
    }
}

#[test]
fn results_are_emitted_only_when_the_window_closes_and_early_updates_are_marked() {
    let mut s = spec(Window::Tumbling { size_ms: 10 * S }, Aggregate::Sum, 5 * S);
    s.early_updates = true;
    let mut d = TestDriver::new(Pipeline::builder().window(s).build().unwrap());
    d.push(ev("a", 1.0, S)).unwrap();
    d.advance_watermark(9 * S);
    assert!(d.final_results().is_empty() && d.early_results().is_empty());
    d.advance_watermark(10 * S);
    assert_eq!(d.early_results().len(), 1, "early update at the window end");
    d.push(ev("a", 2.0, 3 * S)).unwrap(); // within the allowed lateness
    d.advance_watermark(15 * S);
    let f = d.final_results();
    assert_eq!((f.len(), f[0].value, f[0].count), (1, 3.0, 2));
}

#[test]
fn watermark_is_the_minimum_over_partitions_and_idle_partitions_stop_holding_it() {
    let p = Pipeline::builder()
        .idle_timeout(5 * S)
        .window(spec(Window::Tumbling { size_ms: 10 * S }, Aggregate::Count, 0))
        .build()
        .unwrap();
    let mut d = TestDriver::new(p);
    d.set_processing_time(0);
    d.push(ev("a", 0.0, 1 * S).on_partition(0, 0)).unwrap();
    d.push(ev("a", 0.0, 2 * S).on_partition(1, 0)).unwrap();
    d.push(ev("a", 0.0, 30 * S).on_partition(0, 1)).unwrap();
    assert_eq!(d.watermark(), 2 * S, "partition 1 holds the watermark back");
    assert!(d.final_results().is_empty());
    // Partition 1 falls silent; after the idle timeout only partition 0 counts.
    d.set_processing_time(6 * S);
    d.push(ev("a", 0.0, 31 * S).on_partition(0, 2)).unwrap();
    assert_eq!(d.watermark(), 31 * S);
    assert_eq!(d.final_results().len(), 1, "[0,10) closed once the idle partition stopped counting");
}

#[test]
fn malformed_events_go_to_the_dead_letter_output() {
    let mut d = TestDriver::new(
        Pipeline::builder().window(spec(Window::Tumbling { size_ms: S }, Aggregate::Sum, 0)).build().unwrap(),
    );
    d.push(Event::new(Some("k"), json!({"other": 1}), 10)).unwrap();
    d.push(Event::new(Some("k"), json!({"amount": "ten"}), 20)).unwrap();
    assert_eq!(d.dead_letters().len(), 2);
    assert!(d
        .dead_letters()
        .iter()
        .all(|x| matches!(&x.reason, DeadLetterReason::BadField { field, .. } if field == "amount")));
}

#[test]
fn dedup_drops_repeats_within_the_horizon_only() {
    let p = Pipeline::builder().dedup(10 * S, 1000).build().unwrap();
    let mut d = TestDriver::new(p);
    for (k, t) in [("o1", 0), ("o1", 5 * S), ("o2", 6 * S), ("o1", 11 * S), ("o2", 7 * S)] {
        d.push(Event::new(Some(k), json!({}), t)).unwrap();
    }
    let kept: Vec<(Option<String>, i64)> = d.events().iter().map(|e| (e.key.clone(), e.timestamp_ms)).collect();
    assert_eq!(kept, vec![(Some("o1".into()), 0), (Some("o2".into()), 6 * S), (Some("o1".into()), 11 * S)]);
    assert_eq!(d.duplicates(), 2);
}

#[test]
fn filter_map_flat_map_and_key_by_chain() {
    let p = Pipeline::builder()
        .filter(|e| e.value["type"] == "order")
        .flat_map(|e| {
            let n = e.value["items"].as_array().map_or(0, Vec::len);
            (0..n).map(|i| Event { value: e.value["items"][i].clone(), ..e.clone() }).collect()
        })
        .map(|mut e| {
            e.value["amount"] = json!(e.value["price"].as_f64().unwrap_or(0.0) * 2.0);
            e
        })
        .key_by(|e| e.value["sku"].as_str().map(str::to_owned))
        .window(spec(Window::Tumbling { size_ms: 60 * S }, Aggregate::Sum, 0))
        .build()
        .unwrap();
    let mut d = TestDriver::new(p);
    d.push(Event::new(
        None,
        json!({"type": "order", "items": [{"sku": "a", "price": 1.5}, {"sku": "b", "price": 2.0}]}),
        S,
    ))
    .unwrap();
    d.push(Event::new(None, json!({"type": "refund", "items": [{"sku": "a", "price": 100.0}]}), 2 * S)).unwrap();
    d.push(Event::new(None, json!({"type": "order", "items": [{"sku": "a", "price": 0.5}]}), 3 * S)).unwrap();
    d.advance_watermark(60 * S);
    let f: Vec<(String, f64)> = d.final_results().into_iter().map(|r| (r.key, r.value)).collect();
    assert_eq!(f, vec![("a".into(), 4.0), ("b".into(), 4.0)]);
}

#[test]
fn state_bound_is_an_error_not_an_oom() {
    let mut s = spec(Window::Tumbling { size_ms: S }, Aggregate::Count, 0);
    s.max_open_windows = 3;
    let mut d = TestDriver::new(Pipeline::builder().window(s).build().unwrap());
    for k in ["a", "b", "c"] {
        d.push(ev(k, 0.0, 10)).unwrap();
    }
    assert_eq!(d.push(ev("d", 0.0, 10)), Err(StreamError::StateTooLarge { open_windows: 3, max: 3 }));
    assert!(Pipeline::builder()
        .window(spec(Window::Sliding { size_ms: 10, slide_ms: 20 }, Aggregate::Sum, 0))
        .build()
        .is_err());
}

#[test]
fn tumbling_sums_equal_a_plain_group_by_on_random_in_order_input() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut events = Vec::new();
    let mut t = 0i64;
    for _ in 0..5000 {
        t += rng.gen_range(0..500);
        events.push((format!("k{}", rng.gen_range(0..20)), rng.gen_range(0..100) as f64, t));
    }
    let mut d = TestDriver::new(
        Pipeline::builder().window(spec(Window::Tumbling { size_ms: 60 * S }, Aggregate::Sum, 0)).build().unwrap(),
    );
    let mut naive: std::collections::BTreeMap<(String, i64), (f64, u64)> = Default::default();
    for (k, a, t) in &events {
        d.push(ev(k, *a, *t)).unwrap();
        let e = naive.entry((k.clone(), t.div_euclid(60 * S) * 60 * S)).or_default();
        e.0 += a;
        e.1 += 1;
    }
    d.advance_watermark(t + 120 * S);
    let got: Vec<((String, i64), (f64, u64))> =
        d.final_results().into_iter().map(|r| ((r.key, r.window_start_ms), (r.value, r.count))).collect();
    assert_eq!(got, naive.into_iter().collect::<Vec<_>>());
    assert!(d.dead_letters().is_empty());
}

#[test]
fn a_pipeline_restored_from_a_checkpoint_finishes_like_an_uninterrupted_one() {
    use rand::{Rng, SeedableRng};
    let build = || {
        Pipeline::builder()
            .out_of_orderness(20 * S)
            .dedup(5 * S, 100_000)
            .window(spec(Window::Session { gap_ms: 30 * S }, Aggregate::Sum, 10 * S))
            .build()
            .unwrap()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut t = 0;
    let events: Vec<Event> = (0..3000)
        .map(|i| {
            t += rng.gen_range(0..4 * S);
            let jitter = rng.gen_range(0..15 * S);
            let mut e = ev(&format!("k{}", rng.gen_range(0..30)), f64::from(rng.gen_range(0..50)), (t - jitter).max(0));
            e.partition = i % 3;
            e.offset = i64::from(i);
            e
        })
        .collect();
    let run = |events: &[Event], d: &mut TestDriver| {
        for e in events {
            d.push(e.clone()).unwrap();
        }
    };
    let mut whole = TestDriver::new(build());
    run(&events, &mut whole);
    whole.advance_watermark(i64::MAX / 2);

    // Stop at 1,700 events, checkpoint, and continue in a new pipeline.
    let mut first = build();
    let mut first_out = Vec::new();
    for e in &events[..1700] {
        let o = first.process(e.clone(), 0).unwrap();
        first_out.extend(o.results.into_iter().filter(|r| r.is_final()));
    }
    let cp = first.checkpoint([(0, 1700)].into_iter().collect());
    let cp = weir_stream::Checkpoint::from_json(&cp.to_json().unwrap()).unwrap();
    let mut second = build();
    second.restore(cp);
    let mut d = TestDriver::new(second);
    run(&events[1700..], &mut d);
    d.advance_watermark(i64::MAX / 2);
    let mut resumed = first_out;
    resumed.extend(d.final_results());
    resumed.sort_by(|a, b| (&a.key, a.window_start_ms).cmp(&(&b.key, b.window_start_ms)));
    assert_eq!(resumed, whole.final_results());
    assert!(whole.final_results().len() > 50);
}

/// A user-defined aggregate: the spread (max − min) of `amount`.
struct Spread;

impl weir_stream::UserAggregate for Spread {
    fn init(&self) -> serde_json::Value {
        json!({"min": null, "max": null})
    }
    fn add(&self, state: &mut serde_json::Value, event: &Event) {
        let x = event.value["amount"].as_f64().unwrap_or_default();
        let lo = state["min"].as_f64().map_or(x, |m| m.min(x));
        let hi = state["max"].as_f64().map_or(x, |m| m.max(x));
        *state = json!({"min": lo, "max": hi});
    }
    fn merge(&self, into: &mut serde_json::Value, other: serde_json::Value) {
        for x in [other["min"].as_f64(), other["max"].as_f64()].into_iter().flatten() {
            self.add(into, &Event::new(None, json!({ "amount": x }), 0));
        }
    }
    fn result(&self, state: &serde_json::Value) -> f64 {
        state["max"].as_f64().unwrap_or_default() - state["min"].as_f64().unwrap_or_default()
    }
}

#[test]
fn user_defined_aggregates_in_tumbling_and_merged_session_windows_survive_a_checkpoint() {
    let tumbling =
        || Pipeline::builder().window_with(spec(Window::Tumbling { size_ms: 10 * S }, Aggregate::Count, 0), Spread);
    let mut d = TestDriver::new(tumbling().build().unwrap());
    for (amount, t) in [(5.0, 1 * S), (9.0, 2 * S), (2.0, 3 * S), (7.0, 12 * S)] {
        d.push(ev("a", amount, t)).unwrap();
    }
    d.advance_watermark(100 * S);
    assert_eq!(finals(&d), vec![("a".into(), 0, 10 * S, 7.0, 3), ("a".into(), 10 * S, 20 * S, 0.0, 1)]);

    // Sessions: two sessions bridged by a third event merge their user states.
    let session = || {
        Pipeline::builder()
            .out_of_orderness(20 * S)
            .window_with(spec(Window::Session { gap_ms: 5 * S }, Aggregate::Count, 0), Spread)
            .build()
            .unwrap()
    };
    let mut p = session();
    p.process(ev("a", 1.0, 0), 0).unwrap();
    p.process(ev("a", 4.0, 8 * S), 0).unwrap();
    let cp = p.checkpoint(Default::default());
    let mut restored = session();
    restored.restore(weir_stream::Checkpoint::from_json(&cp.to_json().unwrap()).unwrap());
    restored.process(ev("a", 10.0, 4 * S), 0).unwrap(); // touches both sessions
    let out = restored.advance_watermark(100 * S);
    let r: Vec<(i64, i64, f64, u64)> =
        out.results.iter().map(|r| (r.window_start_ms, r.window_end_ms, r.value, r.count)).collect();
    assert_eq!(r, vec![(0, 13 * S, 9.0, 3)]);

    // A custom aggregate without its implementation is refused.
    let bare = Pipeline::builder().window(spec(Window::Tumbling { size_ms: S }, Aggregate::Custom, 0)).build();
    assert!(matches!(bare, Err(StreamError::InvalidSpec(_))));
}

/// A plain model of session windows (a list of open sessions, scanned in full) to check the
/// operator's indexed, lazily re-scheduled sessions against: same finals, same early updates,
/// same late events, on random out-of-order input with merges.
#[derive(Default)]
struct SessionModel {
    gap: i64,
    lateness: i64,
    out_of_orderness: i64,
    early: bool,
    wm: Option<i64>,
    /// (key, start, end, sum, count, early_sent)
    open: Vec<(String, i64, i64, f64, u64, bool)>,
    finals: Vec<(String, i64, i64, f64, u64)>,
    earlies: Vec<(String, i64, i64, f64, u64)>,
    /// (key, start) of early updates withdrawn.
    retractions: Vec<(String, i64)>,
    late: usize,
}

impl SessionModel {
    fn push(&mut self, key: &str, amount: f64, t: i64) {
        let before = self.wm.unwrap_or(i64::MIN);
        if (t + self.gap).saturating_add(self.lateness) <= before {
            self.late += 1;
        } else {
            let (mut start, mut end, mut sum, mut count) = (t, t + self.gap, amount, 1);
            let (touching, rest): (Vec<_>, Vec<_>) =
                self.open.drain(..).partition(|o| o.0 == key && o.1 <= t + self.gap && t <= o.2);
            self.open = rest;
            let new_start = touching.iter().map(|o| o.1).min().map_or(t, |s| s.min(t));
            for o in touching {
                if o.5 && o.1 != new_start {
                    self.retractions.push((o.0.clone(), o.1));
                }
                start = start.min(o.1);
                end = end.max(o.2);
                sum += o.3;
                count += o.4;
            }
            self.open.push((key.to_owned(), start, end, sum, count, false));
        }
        let wm = before.max(t - self.out_of_orderness);
        if wm > before {
            self.wm = Some(wm);
            self.fire(wm);
        }
    }

    fn fire(&mut self, wm: i64) {
        if self.early {
            for o in &mut self.open {
                if !o.5 && o.2 <= wm {
                    o.5 = true;
                    if o.2.saturating_add(self.lateness) > wm {
                        self.earlies.push((o.0.clone(), o.1, o.2, o.3, o.4));
                    }
                }
            }
        }
        let lateness = self.lateness;
        let (done, open): (Vec<_>, Vec<_>) = self.open.drain(..).partition(|o| o.2.saturating_add(lateness) <= wm);
        self.open = open;
        self.finals.extend(done.into_iter().map(|o| (o.0, o.1, o.2, o.3, o.4)));
    }
}

#[test]
fn session_windows_match_a_plain_model_on_random_out_of_order_input() {
    use rand::{Rng, SeedableRng};
    let sorted = |mut v: Vec<(String, i64, i64, f64, u64)>| {
        v.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        v
    };
    for (seed, early) in [(1, false), (2, true), (3, true), (4, false)] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (gap, lateness, ooo) = (10 * S, rng.gen_range(3..12) * S, rng.gen_range(0..10) * S);
        let mut s = spec(Window::Session { gap_ms: gap }, Aggregate::Sum, lateness);
        s.early_updates = early;
        let mut d = TestDriver::new(Pipeline::builder().out_of_orderness(ooo).window(s).build().unwrap());
        let mut m = SessionModel { gap, lateness, out_of_orderness: ooo, early, ..SessionModel::default() };
        let mut t = 0;
        for _ in 0..5_000 {
            t += rng.gen_range(0..3 * S);
            // Mostly a little out of order; now and then far behind (late, or bridging sessions).
            let behind = if rng.gen_ratio(1, 5) { rng.gen_range(0..40 * S) } else { rng.gen_range(0..5 * S) };
            let (key, amount, at) = (format!("k{}", rng.gen_range(0..8)), f64::from(rng.gen_range(1..9)), t - behind);
            d.push(ev(&key, amount, at)).unwrap();
            m.push(&key, amount, at);
        }
        d.advance_watermark(t + 1_000 * S);
        m.wm = Some(t + 1_000 * S);
        m.fire(t + 1_000 * S);
        assert_eq!(sorted(finals(&d)), sorted(m.finals.clone()), "seed {seed}: final results");
        let early_results =
            d.early_results().into_iter().map(|r| (r.key, r.window_start_ms, r.window_end_ms, r.value, r.count));
        assert_eq!(sorted(early_results.collect()), sorted(m.earlies.clone()), "seed {seed}: early updates");
        assert_eq!(d.dead_letters().len(), m.late, "seed {seed}: late events");
        let mut retractions: Vec<(String, i64)> =
            d.retractions().into_iter().map(|r| (r.key, r.window_start_ms)).collect();
        retractions.sort();
        m.retractions.sort();
        assert_eq!(retractions, m.retractions, "seed {seed}: withdrawn early updates");
        assert!(m.finals.len() > 100 && m.late > 0, "seed {seed}: the input exercises sessions and lateness");
        if early {
            assert!(!m.earlies.is_empty(), "seed {seed}: the input exercises early updates");
            assert!(!m.retractions.is_empty(), "seed {seed}: the input exercises retractions");
        }
    }
}

#[test]
fn an_early_update_of_a_session_whose_start_moves_is_withdrawn() {
    let mut s = spec(Window::Session { gap_ms: 10 * S }, Aggregate::Sum, 30 * S);
    s.early_updates = true;
    let mut d = TestDriver::new(Pipeline::builder().window(s).build().unwrap());
    d.push(ev("u", 1.0, 20 * S)).unwrap(); // session [20, 30)
    d.advance_watermark(31 * S);
    let early: Vec<_> = d.early_results().into_iter().map(|r| (r.window_start_ms, r.value)).collect();
    assert_eq!(early, vec![(20 * S, 1.0)]);
    d.push(ev("u", 2.0, 12 * S)).unwrap(); // within the lateness: the session is now [12, 30)
    let withdrawn: Vec<_> = d.retractions().into_iter().map(|r| (r.key, r.window_start_ms)).collect();
    assert_eq!(withdrawn, vec![("u".to_owned(), 20 * S)]);
    d.advance_watermark(100 * S);
    assert_eq!(finals(&d), vec![("u".to_owned(), 12 * S, 30 * S, 3.0, 2)]);
}

/// An until window: one per key, from its first event until the end its events give
/// (inclusive); it closes when the watermark passes that end, later events of it are late,
/// and an event without the field is a dead letter. A global window closes only at the end.
#[test]
fn until_windows_close_at_the_end_their_events_give_and_global_ones_at_the_end_of_input() {
    let mut s = spec(Window::Until, Aggregate::Max, 0);
    s.end_field = Some("expires".into());
    let p = Pipeline::builder().window(s).build().unwrap();
    let mut d = TestDriver::new(p);
    let e = |k: &str, amount: i64, expires: Option<i64>, t: i64| {
        let mut v = json!({ "amount": amount });
        if let Some(x) = expires {
            v["expires"] = json!(x);
        }
        Event::new(Some(k), v, t)
    };
    for ev in [
        e("a", 5, Some(10 * S), 1 * S),
        e("b", 7, Some(4 * S), 2 * S),
        e("a", 9, Some(10 * S), 3 * S),
        e("b", 1, None, 3 * S),           // no end: a dead letter
        e("c", 1, Some(30 * S), 6 * S),   // the watermark passes b's end (4 s)
        e("b", 8, Some(4 * S), 4 * S),    // b closed: late
        e("a", 11, Some(10 * S), 10 * S), // the end is inclusive
        e("c", 2, Some(30 * S), 12 * S),  // closes a
    ] {
        d.push(ev).unwrap();
    }
    let closed: Vec<_> = finals(&d);
    assert_eq!(closed, vec![("a".into(), 1 * S, 10 * S + 1, 11.0, 3), ("b".into(), 2 * S, 4 * S + 1, 7.0, 1)]);
    let reasons: Vec<_> = d.dead_letters().iter().map(|x| x.reason.clone()).collect();
    assert!(matches!(reasons[0], DeadLetterReason::BadField { .. }), "{reasons:?}");
    assert!(matches!(reasons[1], DeadLetterReason::Late { .. }), "{reasons:?}");
    d.advance_watermark(i64::MAX / 2);
    assert_eq!(finals(&d).len(), 3);

    let p = Pipeline::builder().window(spec(Window::Global, Aggregate::Sum, 0)).build().unwrap();
    let mut d = TestDriver::new(p);
    for t in [1, 1_000_000, 5_000_000_000] {
        d.push(ev("k", 2.0, t)).unwrap();
    }
    assert!(finals(&d).is_empty(), "a global window never closes before the end");
    d.advance_watermark(i64::MAX / 2);
    assert_eq!(finals(&d), vec![("k".into(), 0, i64::MAX / 4, 6.0, 3)]);
    // An until window needs its field.
    assert!(Pipeline::builder().window(spec(Window::Until, Aggregate::Sum, 0)).build().is_err());
}
