//! YAML specs with CEL expressions: validation errors name their line; a run over JSON Lines
//! fills the SQLite sink and the dead-letter file.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use weir_pipeline::yaml;

/// Every row of a query, read with `row`.
fn query<T>(db: &std::path::Path, sql: &str, row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>) -> Vec<T> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], row).unwrap().map(Result::unwrap).collect();
    rows
}

const SPEC: &str = r#"name: paid-order-sums
source: { jsonl: orders.jsonl, time_field: ts, key_field: customer }
steps:
  - filter: "event.status == 'paid'"
  - map: "{'customer': event.customer, 'ts': event.ts, 'cents': double(event.amount) * 100.0}"
  - dedup: { horizon: 1m }
window: { tumbling: 1m, aggregate: sum, field: cents, allowed_lateness: 10s, out_of_orderness: 5s }
sink: { sqlite: out.db, table: cents_per_minute }
dead_letters: { jsonl: dlq.jsonl }
"#;

#[test]
fn a_spec_runs_into_sqlite_with_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orders.jsonl"),
        [
            r#"{"customer":"a","ts":1000,"status":"paid","amount":1.5}"#,
            r#"{"customer":"a","ts":2000,"status":"paid","amount":2}"#, // same key within 1m: dedup
            r#"{"customer":"b","ts":3000,"status":"refund","amount":9}"#,
            r#"{"customer":"b","ts":70000,"status":"paid","amount":"x"}"#, // double("x") fails
            r#"{"customer":"c","ts":90000,"status":"paid","amount":4}"#,
            r#"{"customer":"d","ts":10000,"status":"paid","amount":1}"#, // late by then
            "garbage",
        ]
        .join("\n"),
    )
    .unwrap();
    let compiled = yaml::load(SPEC).unwrap();
    let stats = yaml::run(compiled, dir.path(), &yaml::RunOptions::default()).unwrap();
    assert_eq!((stats.events, stats.results, stats.dead_letters, stats.duplicates), (7, 2, 3, 1));
    let db = dir.path().join("out.db");
    let rows: Vec<(String, i64, f64)> =
        query(&db, "SELECT key, window_start, value FROM cents_per_minute ORDER BY key", |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        });
    assert_eq!(rows, vec![("a".into(), 0, 150.0), ("c".into(), 60000, 400.0)]);
    // Integral results are stored as integers (NUMERIC affinity), not 150.0.
    let types = query(&db, "SELECT DISTINCT typeof(value) FROM cents_per_minute", |r| r.get::<_, String>(0));
    assert_eq!(types, vec!["integer".to_owned()]);
    let dlq = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
    assert!(dlq.contains("undecodable") && dlq.contains("expression failed") && dlq.contains("late"), "{dlq}");
    assert_eq!(dlq.lines().count(), 3);
    // Running a bounded input again rewrites its outputs; nothing is doubled.
    yaml::run(yaml::load(SPEC).unwrap(), dir.path(), &yaml::RunOptions::default()).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap(), dlq);
    assert_eq!(query(&db, "SELECT count(*) FROM cents_per_minute", |r| r.get::<_, i64>(0)), vec![2]);
}

#[test]
fn validation_errors_point_at_the_line() {
    let bad_expr = SPEC.replace("event.status == 'paid'", "event.status == ");
    let e = yaml::load(&bad_expr).err().unwrap();
    assert_eq!(e.line, Some(4), "{e}");
    let bad_field = SPEC.replace("sink:", "snik:");
    assert_eq!(yaml::load(&bad_field).err().unwrap().line, Some(8));
    let bad_window = SPEC.replace("tumbling: 1m", "tumbling: soon");
    let e = yaml::load(&bad_window).err().unwrap();
    assert_eq!(e.line, Some(7), "{e}");
    let two_steps = SPEC.replace("  - dedup: { horizon: 1m }", "  - { filter: \"true\", map: \"event\" }");
    assert!(yaml::load(&two_steps).is_err());
}

#[test]
fn json_integers_are_cel_ints_so_arithmetic_with_literals_works() {
    use serde_json::json;
    let e = yaml::Expr::compile("{'cents': event.amount * 100, 'big': event.n > 1, 'k': key}").unwrap();
    let ev = weir_stream::Event::new(Some("alice"), json!({"amount": 12, "n": 18446744073709551615u64}), 0);
    assert_eq!(e.eval(&ev).unwrap(), json!({"cents": 1200, "big": true, "k": "alice"}));
    let neg = weir_stream::Event::new(None, json!({"amount": -3, "n": 2}), 0);
    assert_eq!(e.eval(&neg).unwrap(), json!({"cents": -300, "big": true, "k": null}));
}

#[test]
fn kafka_specs_validate_sinks_dead_letters_and_intervals() {
    let kafka = r#"name: k
source: { kafka: { brokers: 127.0.0.1:9092, topic: orders } }
window: { tumbling: 1m, aggregate: count }
sink: { postgres: "host=127.0.0.1", table: t }
dead_letters: { topic: dlq }
checkpoint: { interval: 2s }
on_sink_error: dead_letter
"#;
    assert!(yaml::load(kafka).is_ok());
    let no_window = kafka.replace("window: { tumbling: 1m, aggregate: count }\n", "");
    assert!(yaml::load(&no_window).err().unwrap().message.contains("window"));
    let two_sinks = kafka.replace("table: t }", "table: t, jsonl: x }");
    assert_eq!(yaml::load(&two_sinks).err().unwrap().line, Some(4));
    let bad_interval = kafka.replace("interval: 2s", "interval: never");
    assert_eq!(yaml::load(&bad_interval).err().unwrap().line, Some(6));
    let bad_policy = kafka.replace("on_sink_error: dead_letter", "on_sink_error: shrug");
    assert_eq!(yaml::load(&bad_policy).err().unwrap().line, Some(7));
    let two_sources = kafka.replace("topic: orders } }", "topic: orders }, jsonl: x }");
    assert!(yaml::load(&two_sources).is_err());
}

#[test]
fn flat_map_turns_one_event_into_many_and_dead_letters_a_non_list() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orders.jsonl"),
        [
            r#"{"order":"o1","ts":1000,"items":[{"sku":"x","qty":2},{"sku":"y","qty":1}]}"#,
            r#"{"order":"o2","ts":2000,"items":[{"sku":"x","qty":5}]}"#,
            r#"{"order":"o3","ts":3000,"items":[]}"#,
            r#"{"order":"o4","ts":4000,"items":"none"}"#, // not a list: dead letter
            r#"{"order":"o5","ts":5000}"#,                // no items: dead letter
        ]
        .join("\n"),
    )
    .unwrap();
    let yaml = r#"name: items
source: { jsonl: orders.jsonl, time_field: ts, key_field: order }
steps:
  - flat_map: "event.items"
  - key_by: "event.sku"
window: { tumbling: 1m, aggregate: sum, field: qty }
sink: { sqlite: out.db, table: qty }
dead_letters: { jsonl: dlq.jsonl }
"#;
    let stats = yaml::run(yaml::load(yaml).unwrap(), dir.path(), &yaml::RunOptions::default()).unwrap();
    assert_eq!((stats.events, stats.results, stats.dead_letters), (5, 2, 2));
    let rows: Vec<(String, f64, i64)> =
        query(&dir.path().join("out.db"), "SELECT key, value, count FROM qty ORDER BY key", |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        });
    assert_eq!(rows, vec![("x".into(), 7.0, 2), ("y".into(), 1.0, 1)]);
    let dlq = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
    assert!(dlq.contains("not a list") && dlq.contains("o4") && dlq.contains("o5"), "{dlq}");
    assert!(yaml::load(&yaml.replace("event.items", "event.items[")).err().unwrap().line == Some(4));
}

/// A spec with one step line to replace.
fn with_steps(steps: &str) -> String {
    format!("name: t\nsource: {{ jsonl: in.jsonl, time_field: ts }}\nsteps:\n{steps}\nsink: {{ jsonl: out.jsonl }}\n")
}

#[test]
fn validate_rejects_what_would_fail_on_every_event() {
    let cases = [
        // An undeclared identifier: a typo of `event`.
        ("  - filter: \"evnt.amount > 5\"", "evnt", 4),
        // A filter that is not a bool.
        ("  - filter: \"event.amount + 5\"", "bool", 4),
        // An unknown function.
        ("  - map: \"nosuchfn(event.a)\"", "nosuchfn", 4),
        // A window aggregate over a field the map removed.
        (
            "  - map: \"{'customer': event.customer}\"\n  - window: { tumbling: 1m, aggregates: [ { total: \"sum(amount)\" } ] }",
            "amount",
            5,
        ),
        // An expression after a window reading a field the window does not produce.
        (
            "  - window: { tumbling: 1m, aggregates: [ { n: count } ] }\n  - filter: \"event.amount > 1\"",
            "amount",
            5,
        ),
        // A join side that is not a bool.
        (
            "  - join: { left: \"event.a\", left_key: \"event.k\", right: \"1 + 2\", right_key: \"event.k\", window: 10s }",
            "bool",
            4,
        ),
        // Two kinds in one step.
        ("  - { filter: \"true\", map: \"event\" }", "exactly one", 4),
    ];
    for (steps, needle, line) in cases {
        let e = yaml::load(&with_steps(steps)).err().unwrap_or_else(|| panic!("accepted: {steps}"));
        assert!(e.message.contains(needle), "{steps}: {e}");
        assert_eq!(e.line, Some(line), "{steps}: {e}");
        assert!(!e.message.contains(" at line "), "the line is said once: {e}");
    }
    // What the checks must not refuse.
    for ok in [
        "  - filter: \"has(event.a) && event.a.b > 1\"",
        "  - map: \"{'customer': event.customer, 'amount': event.amount}\"\n  - window: { tumbling: 1m, aggregates: [ { total: \"sum(amount)\" } ] }",
        "  - window: { tumbling: 1m, aggregates: [ { n: count } ] }\n  - filter: \"event.n > 1 && event.window_start > 0\"",
    ] {
        yaml::load(&with_steps(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

fn run_lines(dir: &std::path::Path, input: &[serde_json::Value], steps: &str) -> Vec<serde_json::Value> {
    let text: String = input.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(dir.join("in.jsonl"), text).unwrap();
    let stats = yaml::run(yaml::load(&with_steps(steps)).unwrap(), dir, &yaml::RunOptions::default()).unwrap();
    let out = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stats.results, lines.len() as u64, "the summary counts every output");
    lines
}

#[test]
fn two_stages_count_per_key_then_keep_the_top_count_per_window_with_ties() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    // Window [0, 10 s): a 3, b 3, c 1 (a and b tie); window [10 s, 20 s): c 2, a 1.
    let input: Vec<_> =
        [("a", 1), ("b", 2), ("a", 3), ("b", 4), ("c", 5), ("a", 6), ("b", 7), ("c", 11), ("c", 12), ("a", 13)]
            .iter()
            .map(|(k, s)| json!({"item": k, "ts": s * 1000, "price": s}))
            .collect();
    let out = run_lines(
        dir.path(),
        &input,
        "  - key_by: \"event.item\"\n  - window: { tumbling: 10s, aggregates: [ { n: count }, { top: \"max(price)\" } ] }\n  - map: \"{'item': event.key, 'n': event.n, 'top': event.top, 'start': event.window_start}\"\n  - key_by: \"string(event.start)\"\n  - window: { tumbling: 10s, top_n: { n: 1, by: n } }",
    );
    let mut got: Vec<(String, i64, i64, i64, i64)> = out
        .iter()
        .map(|l| {
            let v = &l["value"];
            (
                v["item"].as_str().unwrap().into(),
                v["start"].as_i64().unwrap(),
                v["n"].as_i64().unwrap(),
                v["top"].as_i64().unwrap(),
                v["rank"].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![("a".into(), 0, 3, 6, 1), ("b".into(), 0, 3, 7, 1), ("c".into(), 10_000, 2, 12, 1)]);
}

#[test]
fn interval_join_pairs_events_within_the_bounds_only() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let input = vec![
        json!({"kind": "click", "user": "u1", "ts": 1000}),
        json!({"kind": "view", "user": "u1", "ts": 3000}), // click within [view - 5 s, view]: pair
        json!({"kind": "view", "user": "u2", "ts": 3500}), // no click of u2
        json!({"kind": "click", "user": "u1", "ts": 9000}), // after the view: no pair
        json!({"kind": "view", "user": "u1", "ts": 20000}), // the 9 s click is 11 s before: no pair
    ];
    let out = run_lines(
        dir.path(),
        &input,
        "  - join: { left: \"event.kind == 'click'\", left_key: \"event.user\", right: \"event.kind == 'view'\", right_key: \"event.user\", interval: { lower: -5s, upper: 0s } }",
    );
    let pairs: Vec<(i64, i64)> = out
        .iter()
        .map(|l| (l["value"]["left"]["ts"].as_i64().unwrap(), l["value"]["right"]["ts"].as_i64().unwrap()))
        .collect();
    assert_eq!(pairs, vec![(1000, 3000)]);
}

/// Several sources must be readable as one partitioned input; a join whose sides could not be
/// co-partitioned is refused at validation, naming the sources and why.
#[test]
fn validate_rejects_joins_whose_sides_cannot_be_co_partitioned() {
    let spec = |a: &str, b: &str| {
        format!(
            "name: t\nsources:\n  orders: {a}\n  customers: {b}\nsteps:\n  - join: {{ left: orders, left_key: \
             \"event.customer\", right: customers, right_key: \"event.id\", table: true }}\nsink: {{ stdout: true }}\n"
        )
    };
    let topic = |brokers: &str, t: &str| format!("{{ kafka: {{ brokers: \"{brokers}\", topic: {t} }} }}");
    let file = "{ jsonl: c.jsonl, time_field: ts }";
    // Sources are in name order (customers, then orders): the error is on orders' line.
    let cases = [
        (spec(&topic("127.0.0.1:9092", "orders"), file), "one is a topic, the other a file", 3),
        (spec(&topic("127.0.0.1:9092", "orders"), &topic("127.0.0.1:9093", "customers")), "different clusters", 3),
        (spec("{ nexmark: { events: 10 } }", file), "nexmark generator is one source", 3),
    ];
    for (text, needle, line) in cases {
        let e = yaml::load(&text).err().unwrap_or_else(|| panic!("accepted: {text}"));
        assert!(e.message.contains(needle), "{text}: {e}");
        assert_eq!(e.line, Some(line), "{text}: {e}");
    }
    // Topics of one cluster (any partition counts: the join's shuffle co-partitions them), and
    // files, are fine; a side that names no source is a CEL predicate and checked as one.
    yaml::load(&spec(&topic("127.0.0.1:9092", "orders"), &topic("127.0.0.1:9092", "customers"))).unwrap();
    yaml::load(&spec(file, file)).unwrap();
    let typo = spec(file, file).replace("left: orders", "left: order");
    let e = yaml::load(&typo).err().unwrap();
    assert!(e.message.contains("order"), "{e}");
    let both = format!("name: t\nsource: {file}\nsources:\n  a: {file}\nsink: {{ stdout: true }}\n");
    assert!(yaml::load(&both).err().unwrap().message.contains("not both"));
}

/// A global window over a topic would never emit: refused, with the reason.
#[test]
fn validate_rejects_a_global_window_over_a_topic() {
    let text = "name: t\nsource: { kafka: { brokers: \"127.0.0.1:9092\", topic: o } }\nsteps:\n  - window: { global: \
                true, aggregates: [ { n: count } ] }\nsink: { stdout: true }\n";
    let e = yaml::load(text).err().unwrap();
    assert!(e.message.contains("never emit"), "{e}");
    assert_eq!(e.line, Some(4), "{e}");
    let file = text.replace("kafka: { brokers: \"127.0.0.1:9092\", topic: o }", "jsonl: in.jsonl");
    yaml::load(&file).unwrap();
    let until = file.replace("global: true", "until: expires");
    yaml::load(&until).unwrap();
}

/// A pipeline that reads a few fields decodes only those, and what reaches the sink or the
/// dead letters unchanged is still the whole event, as it came.
#[test]
fn unchanged_events_pass_through_whole_when_only_some_fields_are_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"kind": "a", "ts": 1000, "nested": {"deep": [1, {"x": "\u00e9"}]}, "big": 12345678901234567890}"#,
        r#"{"kind":"b","ts":2000,"other":true}"#,
        r#"{"ts": 3000, "no_kind": 1}"#,
        r#"{"kind":"a","ts":4000,"n":1.5e3}"#,
    ];
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let spec = r#"name: pass
source: { jsonl: in.jsonl, time_field: ts }
steps:
  - filter: "event.kind == 'a'"
sink: { jsonl: out.jsonl }
dead_letters: { jsonl: dlq.jsonl }
"#;
    let compiled = yaml::load(spec).unwrap();
    let projection = compiled.projection().expect("a filter over one field is projected");
    assert!(!projection.is_whole());
    // Only the read fields are decoded…
    assert_eq!(projection.decode(lines[0]).unwrap(), serde_json::json!({"kind": "a", "ts": 1000}));
    let stats = yaml::run(compiled, dir.path(), &yaml::RunOptions::default()).unwrap();
    assert_eq!((stats.events, stats.dead_letters), (4, 1));
    // …and the sink still gets every field.
    let out: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let input = |i: usize| serde_json::from_str::<serde_json::Value>(lines[i]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!((&out[0]["value"], &out[0]["timestamp"]), (&input(0), &serde_json::json!(1000)));
    assert_eq!(out[1]["value"], input(3));
    let dlq: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap().trim()).unwrap();
    assert_eq!(dlq["value"], input(2), "{dlq}");
}

#[test]
fn events_needed_whole_are_decoded_whole() {
    let with = |steps: &str, sink: &str| {
        let spec = format!(
            "name: p\nsource: {{ jsonl: in.jsonl, time_field: ts, key_field: k }}\nsteps:\n{steps}\nsink: {sink}\n"
        );
        yaml::load(&spec).unwrap().projection()
    };
    let jsonl = "{ jsonl: out.jsonl }";
    let sqlite = "{ sqlite: out.db, table: t }";
    // Reads the event whole, or at a computed path.
    assert!(with("  - map: \"{'all': event, 'ts': event.ts}\"", jsonl).is_none());
    assert!(with("  - filter: \"size(event) > 1\"", jsonl).is_none());
    assert!(with("  - filter: \"event[string(event.ts)] == 1\"", jsonl).is_none());
    // Not on the fast path (a comprehension).
    assert!(with("  - filter: \"event.items.exists(i, i > 1)\"", jsonl).is_none());
    // Keeps events before any map.
    assert!(with("  - dedup: { horizon: 1m }", jsonl).is_none());
    assert!(with("  - window: { tumbling: 1m, top_n: { n: 1, by: ts } }", jsonl).is_none());
    // A map first: only its fields (and the time and key) are read, whatever comes after.
    let p = with(
        "  - filter: \"has(event.a)\"\n  - map: \"{'b': event.b.c, 'ts': event.ts}\"\n  - window: { tumbling: 1m, aggregate: count }",
        sqlite,
    )
    .expect("projected");
    let text = r#"{"a": {"big": [1, 2]}, "b": {"c": 1, "d": 2}, "ts": 5, "k": "x", "z": 0}"#;
    assert_eq!(p.decode(text).unwrap(), serde_json::json!({"a": null, "b": {"c": 1}, "ts": 5, "k": "x"}));
}
