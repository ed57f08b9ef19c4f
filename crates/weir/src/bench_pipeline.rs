//! `weir bench pipeline`: YAML specs timed on the path users take, `weir pipeline run` in a
//! process of its own over a generated Nexmark file (or a topic the events were produced to
//! first), with the process's CPU time and peak RSS.
//!
//! Each spec must read `nexmark.jsonl` (as examples/nexmark do). The bench writes N events
//! there in a scratch directory, copies the spec beside it and runs it with `--until-end`.
//! With `--via-topic` the events are produced to a fresh topic on `--bootstrap` first and the
//! spec's source becomes that topic; throughput counts from the pipeline's first event.

#![allow(unsafe_code)] // wait4, for the child's rusage (see `wait`)

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Args<'a> {
    pub specs: &'a [PathBuf],
    pub events: usize,
    pub event_rate: usize,
    pub via_topic: bool,
    pub bootstrap: &'a str,
    pub json: bool,
}

pub struct Report {
    pub spec: String,
    pub mode: &'static str,
    pub events: usize,
    /// Records the pipeline wrote to its sink.
    pub outputs: u64,
    /// From the pipeline's first event to its end, as the pipeline reports it.
    pub seconds: f64,
    /// The whole process: user + system CPU seconds.
    pub cpu_seconds: f64,
    pub max_rss_kb: i64,
}

impl Report {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"spec": self.spec, "mode": self.mode, "events": self.events, "outputs": self.outputs, "seconds": self.seconds,
            "events_per_second": self.events_per_second(), "cpu_seconds": self.cpu_seconds,
            "max_rss_kb": self.max_rss_kb})
    }
}

pub fn run(a: &Args<'_>) -> anyhow::Result<()> {
    anyhow::ensure!(
        !a.specs.is_empty(),
        "bench pipeline needs at least one --spec FILE (e.g. examples/nexmark/q1.yaml)"
    );
    let dir = std::env::temp_dir().join(format!("weir-bench-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(a, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let reports = result?;
    if a.json {
        println!("{}", serde_json::Value::Array(reports.iter().map(Report::to_json).collect()));
    } else {
        println!(
            "{:<28} {:<6} {:>10} {:>10} {:>9} {:>12} {:>9} {:>8}",
            "spec", "mode", "events", "outputs", "seconds", "events/s", "cpu-s", "rss-MB"
        );
        for r in &reports {
            println!(
                "{:<28} {:<6} {:>10} {:>10} {:>9.2} {:>12.0} {:>9.2} {:>8.1}",
                r.spec,
                r.mode,
                r.events,
                r.outputs,
                r.seconds,
                r.events_per_second(),
                r.cpu_seconds,
                r.max_rss_kb as f64 / 1024.0
            );
        }
    }
    Ok(())
}

fn run_in(a: &Args<'_>, dir: &Path) -> anyhow::Result<Vec<Report>> {
    let exe = std::env::current_exe().context("finding the weir executable")?;
    let input = dir.join("nexmark.jsonl");
    {
        let f = std::fs::File::create(&input).with_context(|| format!("creating {}", input.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
        for e in weir_pipeline::nexmark::generator(a.event_rate).take(a.events) {
            writeln!(out, "{}", weir_pipeline::nexmark::to_crate_json(&e))?;
        }
        out.flush()?;
    }
    let topic = format!("weir-bench-pipeline-{}", std::process::id());
    if a.via_topic {
        let status = std::process::Command::new(&exe)
            .args(["topic", "create", &topic, "--partitions", "3", "-b", a.bootstrap])
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "creating topic {topic} on {}", a.bootstrap);
        let status = std::process::Command::new(&exe)
            .args(["produce", &topic, "-b", a.bootstrap, "--file"])
            .arg(&input)
            .stderr(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "producing the events to {topic}");
    }
    let mut reports = Vec::new();
    for (i, spec_path) in a.specs.iter().enumerate() {
        let text = std::fs::read_to_string(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
        let is_sql = spec_path.extension().is_some_and(|e| e == "sql");
        let compiled = if is_sql {
            weir_pipeline::sql::load(&text)
                .map(|c| c.pipeline)
                .map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?
        } else {
            weir_pipeline::yaml::load(&text).map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?
        };
        let reads_the_file = matches!(
            compiled.spec.source.as_ref().map(|s| &s.kind),
            Some(weir_pipeline::yaml::SourceKind::Jsonl(p)) if p == "nexmark.jsonl"
        );
        anyhow::ensure!(
            reads_the_file,
            "{}: bench pipeline runs specs whose source is `jsonl: nexmark.jsonl` (as examples/nexmark)",
            spec_path.display()
        );
        let text = match (a.via_topic, is_sql) {
            (false, _) => text,
            (true, false) => with_topic_source(&text, a.bootstrap, &topic, i)?,
            (true, true) => with_topic_source_sql(&text, a.bootstrap, &topic, i)?,
        };
        let name = spec_path.file_name().map_or_else(|| format!("spec{i}"), |n| n.to_string_lossy().into_owned());
        let local = dir.join(format!("bench-{i}-{name}"));
        std::fs::write(&local, text)?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["pipeline", "run"]).arg(&local).arg("--until-end").current_dir(dir);
        if a.via_topic {
            cmd.args(["--from", "earliest"]);
        }
        let started = Instant::now();
        let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn()?;
        let (stderr, status, usage) = wait(child)?;
        let wall = started.elapsed().as_secs_f64();
        anyhow::ensure!(status == 0, "{}: weir pipeline run exited with {status}:\n{stderr}", spec_path.display());
        let seconds = stderr
            .lines()
            .find_map(|l| l.strip_prefix("from the first event: ")?.split('s').next()?.parse::<f64>().ok())
            .unwrap_or(wall);
        // `weir pipeline run` says "<n> events in <s>s (<r> events/s): <m> outputs, …".
        let outputs = stderr
            .lines()
            .find_map(|l| l.split_once("): ")?.1.split(' ').next()?.parse::<u64>().ok())
            .with_context(|| format!("{}: no output count in:\n{stderr}", spec_path.display()))?;
        reports.push(Report {
            spec: name,
            mode: if a.via_topic { "topic" } else { "file" },
            events: a.events,
            outputs,
            seconds,
            cpu_seconds: usage.0,
            max_rss_kb: usage.1,
        });
    }
    Ok(reports)
}

/// The spec with its source replaced by the topic (a group of its own per spec).
fn with_topic_source(text: &str, bootstrap: &str, topic: &str, i: usize) -> anyhow::Result<String> {
    let mut doc: serde_norway::Value = serde_norway::from_str(text)?;
    let source = doc.get_mut("source").and_then(serde_norway::Value::as_mapping_mut).context("spec has no source")?;
    source.remove("jsonl");
    let kafka: serde_norway::Value = serde_norway::from_str(&format!(
        "{{brokers: {bootstrap:?}, topic: {topic:?}, group: \"weir-bench-pipeline-{}-{i}\"}}",
        std::process::id()
    ))?;
    source.insert("kafka".into(), kafka);
    Ok(serde_norway::to_string(&doc)?)
}

/// A SQL script with its source's `WITH (format = 'jsonl', path = 'nexmark.jsonl')` replaced by
/// the topic (as examples/nexmark/*.sql write it).
fn with_topic_source_sql(text: &str, bootstrap: &str, topic: &str, i: usize) -> anyhow::Result<String> {
    const FILE: &str = "WITH (format = 'jsonl', path = 'nexmark.jsonl')";
    anyhow::ensure!(text.matches(FILE).count() == 1, "--via-topic needs the script's source to say {FILE}");
    let group = format!("weir-bench-pipeline-{}-{i}", std::process::id());
    Ok(text.replace(
        FILE,
        &format!("WITH (format = 'json', topic = '{topic}', brokers = '{bootstrap}', group = '{group}')"),
    ))
}

/// Waits for the child, reading its stderr: (stderr, exit code, (CPU seconds, max RSS KB)).
fn wait(mut child: std::process::Child) -> anyhow::Result<(String, i32, (f64, i64))> {
    use std::io::Read;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr)?;
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, zero is a valid value; wait4 fills it for our own child,
    // which has not been waited for (std's Child is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(r == pid, "waiting for the pipeline: {}", std::io::Error::last_os_error());
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    Ok((stderr, code, (secs(usage.ru_utime) + secs(usage.ru_stime), usage.ru_maxrss)))
}
