//! A YAML filter step costs no heap allocation per event: its CEL expression runs on the
//! compiled fast path over the event's JSON (no copy into CEL values), and the runner's
//! outputs buffer is reused. Counted with the per-thread counting allocator.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "../../../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{count, Counting};

use weir_pipeline::yaml;
use weir_stream::pipeline::Outputs;
use weir_stream::Event;

#[global_allocator]
static ALLOC: Counting = Counting;

const SPEC: &str = r#"name: bids-of-some-auctions
source: { jsonl: in.jsonl, time: "has(event.Bid) ? event.Bid.date_time : event.Person.date_time" }
steps:
  - filter: "has(event.Bid) && event.Bid.auction % 3 == 0 && event.Bid.channel.startsWith('G')"
  - filter: "event.Bid.price > 100 || key == 'vip'"
sink: { jsonl: out.jsonl }
"#;

#[test]
fn filter_steps_allocate_nothing_per_event() {
    let compiled = yaml::load(SPEC).unwrap();
    let mut p = compiled.new_pipeline().unwrap();
    let format = compiled.format();
    let events: Vec<Event> = (0..11_000i64)
        .map(|i| {
            let text = if i % 10 == 0 {
                format!(r#"{{"Person": {{"id": {i}, "date_time": {i}}}}}"#)
            } else {
                let channel = if i % 2 == 0 { "Google" } else { "Apple" };
                format!(
                    r#"{{"Bid": {{"auction": {i}, "price": {}, "channel": "{channel}", "date_time": {i}}}}}"#,
                    i % 300
                )
            };
            let (value, raw) = format.decode(text.as_bytes()).unwrap();
            let mut ev = format.event(value, None, None, 0, i).unwrap();
            ev.raw = raw;
            ev
        })
        .collect();
    let mut it = events.into_iter();
    let mut out = Outputs::default();
    for ev in it.by_ref().take(1_000) {
        p.process_into(ev, 0, &mut out).unwrap();
        out.events.clear();
    }
    let rest: Vec<Event> = it.collect();
    let (passed, allocations) = count(|| {
        let mut passed = 0;
        for ev in rest {
            p.process_into(ev, 0, &mut out).unwrap();
            passed += out.events.len();
            assert!(out.dead_letters.is_empty());
            out.events.clear();
        }
        passed
    });
    // Some pass and some do not: both ways are counted.
    assert!(passed > 500 && passed < 9_000, "{passed} passed");
    assert_eq!(allocations, 0, "{allocations} allocations over 10,000 events");
}

#[test]
fn allocations_are_counted_per_thread() {
    counting_alloc::self_test();
}
