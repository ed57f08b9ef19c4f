//! Every Nexmark spec in examples/nexmark, run with the YAML front end over a generated file
//! of 100,000 events in the `nexmark` crate's JSON format, gives exactly the rows of the
//! independent computation.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "support/examples_driver.rs"]
mod examples_driver;
#[path = "support/nexmark_reference.rs"]
mod nexmark_reference;

use examples_driver::run_examples;
use serde_json::Value;
use std::collections::BTreeSet;
use weir_pipeline::yaml;

const EVENTS: usize = 100_000;

fn int(v: &Value, f: &str) -> i64 {
    v[f].as_i64().unwrap_or_else(|| panic!("{f} in {v}"))
}

/// The query's output lines as the reference's rows.
fn rows(q: &str, lines: &[Value]) -> Vec<String> {
    let mut rows: Vec<String> = match q {
        "q0" => lines
            .iter()
            .map(|l| {
                let v = &l["value"];
                if let Some(b) = v.get("Bid") {
                    format!(
                        "bid|{}|{}|{}|{}",
                        int(b, "auction"),
                        int(b, "bidder"),
                        int(b, "price"),
                        int(b, "date_time")
                    )
                } else if let Some(p) = v.get("Person") {
                    format!("person|{}|{}", int(p, "id"), int(p, "date_time"))
                } else {
                    let a = &v["Auction"];
                    format!("auction|{}|{}", int(a, "id"), int(a, "date_time"))
                }
            })
            .collect(),
        "q1" => lines
            .iter()
            .map(|l| {
                let v = &l["value"];
                let price = v["price"].as_f64().unwrap();
                format!("{}|{}|{price:.3}|{}", int(v, "auction"), int(v, "bidder"), int(v, "date_time"))
            })
            .collect(),
        "q2" => {
            lines.iter().map(|l| format!("{}|{}", int(&l["value"], "auction"), int(&l["value"], "price"))).collect()
        }
        "q5" => lines
            .iter()
            .map(|l| {
                let v = &l["value"];
                format!("{}|{}|{}", int(v, "start"), int(v, "auction"), int(v, "bids"))
            })
            .collect(),
        // The highest bids per window: the reference has the window's max price once.
        "q7" => lines
            .iter()
            .map(|l| format!("{}|{}", int(&l["value"], "window_start"), int(&l["value"], "price")))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        "q11" => lines
            .iter()
            .map(|l| {
                format!(
                    "{}|{}|{}|{}",
                    l["key"].as_str().unwrap(),
                    int(l, "window_start"),
                    int(l, "window_end"),
                    int(l, "bids")
                )
            })
            .collect(),
        "q4" => {
            lines.iter().map(|l| format!("{}|{:.3}", l["key"].as_str().unwrap(), l["avg"].as_f64().unwrap())).collect()
        }
        "q3" => lines
            .iter()
            .map(|l| {
                let v = &l["value"];
                let s = |f: &str| v[f].as_str().unwrap().to_owned();
                format!("{}|{}|{}|{}", s("name"), s("city"), s("state"), int(v, "auction"))
            })
            .collect(),
        "q8" => lines
            .iter()
            .map(|l| {
                let v = &l["value"];
                format!("{}|{}|{}", int(v, "id"), v["name"].as_str().unwrap(), int(v, "start"))
            })
            .collect(),
        other => panic!("no row format for {other}"),
    };
    rows.sort();
    rows
}

#[test]
fn every_example_spec_equals_the_independent_computation() {
    let load = |q: &str, text: &str| yaml::load(text).unwrap_or_else(|e| panic!("{q}: {e}"));
    let ran = run_examples("yaml", EVENTS, &load, &rows, &|_, want| want);
    assert_eq!(ran, ["q0", "q1", "q11", "q2", "q3", "q4", "q5", "q7", "q8"], "examples found");
}
