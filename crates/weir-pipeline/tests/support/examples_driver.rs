//! Runs the examples/nexmark specs of one front end over a generated file and compares each
//! query's rows with the independent computation (nexmark_reference.rs).

use super::nexmark_reference::{reference, RATE};
use nexmark::event::Event as N;
use serde_json::Value;
use std::io::Write;
use weir_pipeline::nexmark::{generator, to_crate_json};
use weir_pipeline::yaml;

/// `n` generated events, also written to `nexmark.jsonl` in a fresh temporary directory.
pub fn generated_file(n: usize) -> (Vec<N>, tempfile::TempDir) {
    let raw: Vec<N> = generator(RATE).take(n).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.path().join("nexmark.jsonl")).unwrap());
    for e in &raw {
        writeln!(f, "{}", to_crate_json(e)).unwrap();
    }
    f.flush().unwrap();
    (raw, dir)
}

/// Every example with this extension, compiled by `load` and run over `n` events: its output
/// lines (`<query>.out.jsonl`) as `rows` sees them equal the reference (as `expected` adjusts
/// it). Returns the queries run, sorted.
pub fn run_examples(
    ext: &str,
    n: usize,
    load: &dyn Fn(&str, &str) -> yaml::Compiled,
    rows: &dyn Fn(&str, &[Value]) -> Vec<String>,
    expected: &dyn Fn(&str, Vec<String>) -> Vec<String>,
) -> Vec<String> {
    let (raw, dir) = generated_file(n);
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nexmark");
    let mut ran = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        let q = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let compiled = load(&q, &std::fs::read_to_string(&path).unwrap());
        let stats = yaml::run(compiled, dir.path(), &yaml::RunOptions::default()).unwrap();
        assert_eq!(stats.events, n as u64, "{q}");
        assert_eq!(stats.dead_letters, 0, "{q}");
        let out = std::fs::read_to_string(dir.path().join(format!("{q}.out.jsonl"))).unwrap();
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(stats.results, lines.len() as u64, "{q}: the summary counts every output");
        let got = rows(&q, &lines);
        let want = expected(&q, reference(&q, &raw));
        assert!(!want.is_empty(), "{q}: the input should produce some output");
        assert_eq!(got.len(), want.len(), "{q}: row count");
        assert_eq!(got, want, "{q}");
        println!("{q}: {} rows match", got.len());
        ran.push(q);
    }
    ran.sort();
    ran
}
