//! The window update allocates nothing per record: an event that lands in an open window (or
//! extends an open session) costs 0 heap allocations (counted with a counting global allocator); allocations happen per window
//! opened or closed, never per event.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "../../../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{count, Counting};

use serde_json::json;
use weir_stream::{Aggregate, Event, Pipeline, Window, WindowSpec};

#[global_allocator]
static ALLOC: Counting = Counting;

fn pipeline(window: Window, aggregate: Aggregate) -> Pipeline {
    Pipeline::builder()
        .filter(|e| e.value.get("status").and_then(|s| s.as_str()) == Some("paid"))
        .out_of_orderness(5_000)
        .window(WindowSpec {
            window,
            aggregate,
            field: Some("amount".into()),
            allowed_lateness_ms: 10_000,
            early_updates: false,
            max_open_windows: 100_000,
            name: "value".into(),
            extra: Vec::new(),
            end_field: None,
        })
        .build()
        .unwrap()
}

fn events(n: usize, keys: usize, step_ms: i64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let key = format!("k{}", i % keys);
            Event::new(Some(&key), json!({"status": "paid", "amount": (i % 97) as i64}), i as i64 * step_ms)
        })
        .collect()
}

#[test]
fn events_into_open_windows_allocate_nothing() {
    for (window, aggregate) in [
        (Window::Tumbling { size_ms: 3_600_000 }, Aggregate::Sum),
        (Window::Sliding { size_ms: 3_600_000, slide_ms: 1_800_000 }, Aggregate::Max),
        (Window::Tumbling { size_ms: 3_600_000 }, Aggregate::Avg),
        // Every event extends its key's session: the session moves in the close-order index.
        (Window::Session { gap_ms: 3_600_000 }, Aggregate::Sum),
        (Window::Session { gap_ms: 60_000 }, Aggregate::Count),
    ] {
        let mut p = pipeline(window, aggregate);
        let evs = events(11_000, 50, 1);
        let mut it = evs.into_iter();
        // Warm-up: opens every key's windows and grows the scratch buffers.
        for ev in it.by_ref().take(1_000) {
            p.process(ev, 0).unwrap();
        }
        let rest: Vec<Event> = it.collect();
        let (outputs, allocations) = count(|| {
            let mut results = 0;
            for ev in rest {
                let out = p.process(ev, 0).unwrap();
                results += out.results.len();
                drop(out);
            }
            results
        });
        assert_eq!(outputs, 0);
        assert_eq!(allocations, 0, "{window:?} {aggregate:?}: {allocations} allocations over 10,000 events");
    }
}

#[test]
fn allocations_follow_windows_not_events() {
    // 20 keys, an event every 100 ms: 1-minute windows take 30 events each, and close as time goes.
    let mut p = pipeline(Window::Tumbling { size_ms: 60_000 }, Aggregate::Sum);
    let evs = events(10_000, 20, 100);
    let (results, allocations) = count(|| {
        let mut results = 0u64;
        for ev in evs {
            results += p.process(ev, 0).unwrap().results.len() as u64;
        }
        results
    });
    let per_record = allocations as f64 / 10_000.0;
    println!("tumbling 1m, 20 keys: {allocations} allocations for 10,000 events and {results} windows ({per_record:.3} per event)");
    // Opening a window costs a few allocations (state, close-order index, key copy); firing a
    // batch of results one Vec. Nothing is per event.
    assert!(allocations <= 6 * (results + p.open_windows() as u64) + 50, "{allocations} allocations");
}

/// The two tests above count at the same time in parallel threads: each must see only its own.
#[test]
fn allocations_are_counted_per_thread() {
    counting_alloc::self_test();
}
