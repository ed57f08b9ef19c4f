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
