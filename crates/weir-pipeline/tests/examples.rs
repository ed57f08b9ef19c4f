//! Every spec under examples/ validates, and every one with a file source (outside
//! examples/nexmark, which tests/nexmark_yaml.rs runs on generated input) runs cleanly.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use weir_pipeline::yaml;

fn specs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            specs(&p, out);
        } else if p.extension().and_then(|x| x.to_str()) == Some("yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_validates_and_the_file_ones_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut all = Vec::new();
    specs(&root, &mut all);
    assert!(all.len() >= 14, "{all:?}");
    let mut ran = 0;
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        let compiled = yaml::load(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if !compiled.spec.bounded() || path.components().any(|c| c.as_os_str() == "nexmark") {
            continue;
        }
        // Run in a copy of the example's directory, so the repository stays clean.
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(path.parent().unwrap()).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
            }
        }
        let stats = yaml::run(compiled, dir.path(), &yaml::RunOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(stats.events > 100 && stats.results > 0, "{}: {stats:?}", path.display());
        ran += 1;
    }
    assert!(ran >= 5, "ran {ran}");
}

/// The two-source example (orders joined with a customers table as of each order's time)
/// equals a plain computation over the two files.
#[test]
fn paid_per_country_equals_an_as_of_join_by_hand() {
    use serde_json::Value;
    use std::collections::BTreeMap;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/orders");
    let read = |f: &str| -> Vec<Value> {
        std::fs::read_to_string(root.join(f)).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    };
    let customers = read("customers.jsonl");
    let mut expected: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for o in read("orders.jsonl") {
        if o["status"] != "paid" {
            continue;
        }
        let t = o["timestamp"].as_i64().unwrap();
        // The customer's latest row at or before the order.
        let row = customers
            .iter()
            .filter(|c| c["id"] == o["customer"] && c["timestamp"].as_i64().unwrap() <= t)
            .max_by_key(|c| c["timestamp"].as_i64().unwrap());
        let Some(row) = row else { continue };
        let e = expected.entry((row["country"].as_str().unwrap().to_owned(), t - t.rem_euclid(300_000))).or_default();
        e.0 += o["amount"].as_i64().unwrap();
        e.1 += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    for f in ["orders.jsonl", "customers.jsonl", "paid-per-country.yaml"] {
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(root.join("paid-per-country.yaml")).unwrap();
    let stats = yaml::run(yaml::load(&text).unwrap(), dir.path(), &yaml::RunOptions::default()).unwrap();
    let out = std::fs::read_to_string(dir.path().join("paid-per-country.out.jsonl")).unwrap();
    let got: BTreeMap<(String, i64), (i64, i64)> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            let k = (v["key"].as_str().unwrap().to_owned(), v["window_start"].as_i64().unwrap());
            (k, (v["paid"].as_i64().unwrap(), v["orders"].as_i64().unwrap()))
        })
        .collect();
    assert_eq!(got, expected, "{stats:?}");
    // bob's move to NL at 5 min shows: he has paid orders in DE before and in NL after.
    assert!(got.keys().any(|(c, _)| c == "DE") && expected.len() >= 6);
}
