//! Each Nexmark query on weir-stream gives the same rows as a plain, independent computation
//! over the same generated events (typed structs, loops and maps; no weir-stream operators).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "support/nexmark_reference.rs"]
mod nexmark_reference;

use nexmark::event::Event as N;
use nexmark_reference::{reference, RATE};

const EVENTS: usize = 60_000;
use weir_pipeline::nexmark::{generator, run_events, to_event, QUERIES};

#[test]
fn every_query_equals_an_independent_computation() {
    let raw: Vec<N> = generator(RATE).take(EVENTS).collect();
    assert!(raw.windows(2).all(|w| w[0].timestamp() <= w[1].timestamp()), "generator output is in time order");
    for q in QUERIES {
        let events = raw.iter().enumerate().map(|(i, e)| to_event(e, i as i64)).collect();
        let (out, _) = run_events(q, events, true).unwrap();
        let mut rows = out.rows.unwrap();
        rows.sort();
        let expected = reference(q, &raw);
        assert!(!expected.is_empty(), "{q}: the input should produce some output");
        assert_eq!(rows.len(), expected.len(), "{q}: row count");
        assert_eq!(rows, expected, "{q}");
        println!("{q}: {} rows match", rows.len());
    }
}
