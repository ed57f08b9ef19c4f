//! `weir`: the broker and its command-line tools in one binary.

mod bench_pipeline;
mod client;
mod config;
mod data_cmd;
mod data_dir;
mod group_cmd;
mod output;
mod position;
mod status_cmd;
mod topic_cmd;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use output::Output;
use std::path::PathBuf;
use std::sync::Arc;
use weir_broker::Broker;
use weir_log::{FsStorage, PooledStorage, SystemClock};
use weir_server::Server;

#[derive(Debug, Parser)]
#[command(name = "weir", version, about = "A Kafka-protocol log broker and stream processor in one binary")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. info or weir_server=debug
    #[arg(long, global = true, env = "WEIR_LOG", default_value = "info")]
    log: String,
    /// Log lines as text (coloured on a terminal unless NO_COLOR is set) or as JSON objects,
    /// one a line, for log shippers
    #[arg(long, global = true, env = "WEIR_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker: Kafka protocol on 127.0.0.1:9092, data in ./data.
    Serve {
        /// TOML file with settings; flags and WEIR_* variables override it
        #[arg(long, env = "WEIR_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<config::ServeSettings>,
    },
    /// Topics: create, list, describe, delete, alter.
    Topic {
        /// Broker to talk to
        #[arg(long, short = 'b', env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
        bootstrap: String,
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
        output: Output,
        #[command(subcommand)]
        command: topic_cmd::TopicCommand,
    },
    /// Produce lines of stdin or a file as records.
    Produce {
        #[arg(long, short = 'b', env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(flatten)]
        args: data_cmd::ProduceArgs,
    },
    /// Print records of a topic.
    Consume {
        #[arg(long, short = 'b', env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(flatten)]
        args: data_cmd::ConsumeArgs,
    },
    /// Load any Kafka-protocol broker and report throughput and latency percentiles.
    Bench(BenchArgs),
    /// Stream-processing pipelines from YAML specs (or SQL scripts, *.sql).
    Pipeline {
        #[command(subcommand)]
        command: PipelineCommand,
    },
    /// Streaming SQL pipelines: CREATE SOURCE, CREATE VIEW, CREATE SINK … AS SELECT (docs/SQL.md);
    /// or `weir sql "SELECT … FROM topic …"`, a query over topics' current contents.
    #[command(args_conflicts_with_subcommands = true)]
    Sql {
        #[command(subcommand)]
        command: Option<SqlCommand>,
        /// An ad-hoc query: each table it names is a topic (JSON values), read to its current end
        query: Option<String>,
        /// Broker for an ad-hoc query
        #[arg(long, short = 'b', env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Output format of an ad-hoc query
        #[arg(long, short = 'o', value_enum, default_value = "table")]
        output: Output,
    },
    /// Consumer groups: list, describe (with lag), reset-offsets, delete.
    Group {
        /// Broker to talk to
        #[arg(long, short = 'b', env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
        bootstrap: String,
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
        output: Output,
        #[command(subcommand)]
        command: group_cmd::GroupCommand,
    },
    /// A running broker at a glance: version, listeners, topics, groups and disk use.
    Status(status_cmd::StatusArgs),
    /// Print a shell completion script for bash, zsh or fish.
    ///
    /// e.g. `weir completions bash > ~/.local/share/bash-completion/completions/weir`, or
    /// `weir completions zsh > ~/.zfunc/_weir`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Large request frames (up to --max-frame-bytes) must go back to the OS when freed, or the
/// in-flight byte bound would not bound memory: glibc raises its mmap threshold after each
/// freed large chunk and then keeps such buffers in its heap arenas. Fixing the threshold at
/// 1 MiB makes every frame buffer above it an mmap that munmap returns at once
/// (tests/e2e/test_hostile.py measures the flood case).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn fix_malloc_mmap_threshold() {
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread
    // exists, and a failure (0) leaves the default behaviour.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_malloc_mmap_threshold() {}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BenchMode {
    Produce,
    Consume,
    E2e,
    /// Nexmark queries on the stream engine (generator in-process, or via a topic with --via-topic)
    Nexmark,
    /// YAML specs (--spec, e.g. examples/nexmark/*.yaml) through `weir pipeline run` over --events
    /// generated Nexmark events, from a file or (--via-topic) a topic: events/s, CPU, peak RSS
    Pipeline,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    #[arg(value_enum)]
    mode: BenchMode,
    #[arg(long, short = 'b', env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic (default: weir-bench; e2e uses a fresh weir-bench-e2e-<pid> so it reads from the start)
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic if the bench creates it
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Message size in bytes
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Producer batch size in bytes
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: usize,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// all, 1 or 0
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy or lz4
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long)]
    idempotence: bool,
    /// How long to run: 10s, 2m, 500ms; a bare number is seconds
    #[arg(long, default_value = "10s", value_parser = duration_seconds)]
    duration: std::time::Duration,
    /// Stop after this many messages (--messages is the earlier spelling)
    #[arg(long, short = 'c', alias = "messages")]
    count: Option<u64>,
    /// Target messages per second (all producers); unlimited by default
    #[arg(long)]
    rate: Option<u64>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
    /// The same as -o json (earlier spelling)
    #[arg(long, hide = true)]
    json: bool,
    /// Nexmark: queries to run, comma-separated (q0,q1,q2,q3,q4,q5,q7,q8,q11), or all
    #[arg(long, default_value = "all")]
    query: String,
    /// Nexmark: events to generate
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Nexmark: generator rate in event time (events per second of event time)
    #[arg(long, default_value_t = 10_000)]
    event_rate: usize,
    /// Nexmark and pipeline: produce the events to a topic on --bootstrap and read them back from it
    #[arg(long)]
    via_topic: bool,
    /// Pipeline: a spec to run (repeat for several); each reads `nexmark.jsonl`
    #[arg(long)]
    spec: Vec<PathBuf>,
    /// Nexmark: write the generated events to this file as JSON lines (the `nexmark` crate's
    /// format, `{"Bid": {...}}`), the input of examples/nexmark, and exit
    #[arg(long)]
    write_jsonl: Option<PathBuf>,
}

/// `--duration`: the one duration syntax, a bare number being seconds.
fn duration_seconds(text: &str) -> Result<std::time::Duration, String> {
    weir_stream::duration::parse(text, weir_stream::duration::BareNumber::Seconds).map_err(|e| e.to_string())
}

impl BenchArgs {
    fn json(&self) -> bool {
        self.json || self.output == Output::Json
    }
}

fn nexmark(a: &BenchArgs) -> anyhow::Result<()> {
    if let Some(path) = &a.write_jsonl {
        use std::io::Write;
        let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
        for e in weir_pipeline::nexmark::generator(a.event_rate).take(a.events) {
            writeln!(out, "{}", weir_pipeline::nexmark::to_crate_json(&e))?;
        }
        out.flush()?;
        eprintln!("wrote {} to {}", output::counted(a.events as u64, "Nexmark event"), path.display());
        return Ok(());
    }
    let queries: Vec<&str> = if a.query == "all" {
        weir_pipeline::nexmark::QUERIES.to_vec()
    } else {
        a.query.split(',').map(str::trim).collect()
    };
    let reports = if a.via_topic {
        let (produce_secs, r) = weir_bench::nexmark_via_topic(&a.bootstrap, &queries, a.events, a.event_rate)?;
        eprintln!(
            "produced {} in {produce_secs:.2}s ({:.0} events/s)",
            output::counted(a.events as u64, "event"),
            a.events as f64 / produce_secs
        );
        r
    } else {
        weir_bench::nexmark_in_process(&queries, a.events, a.event_rate)?
    };
    if a.json() {
        println!("{}", serde_json::Value::Array(reports.iter().map(weir_bench::NexmarkReport::to_json).collect()));
    } else {
        println!(
            "{:<6} {:<11} {:>10} {:>10} {:>9} {:>14}",
            "query", "mode", "events", "outputs", "seconds", "events/s/core"
        );
        for r in &reports {
            println!(
                "{:<6} {:<11} {:>10} {:>10} {:>9.2} {:>14.0}",
                r.query,
                r.mode,
                r.events,
                r.outputs,
                r.seconds,
                r.events_per_second()
            );
        }
    }
    Ok(())
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if let BenchMode::Pipeline = a.mode {
        return bench_pipeline::run(&bench_pipeline::Args {
            specs: &a.spec,
            events: a.events,
            event_rate: a.event_rate,
            via_topic: a.via_topic,
            bootstrap: &a.bootstrap,
            json: a.json(),
        });
    }
    if let BenchMode::Nexmark = a.mode {
        return nexmark(&a);
    }
    let json = a.json();
    let cfg = weir_bench::BenchConfig {
        mode: match a.mode {
            BenchMode::Produce => weir_bench::Mode::Produce,
            BenchMode::Consume => weir_bench::Mode::Consume,
            BenchMode::E2e | BenchMode::Nexmark | BenchMode::Pipeline => weir_bench::Mode::E2e,
        },
        bootstrap: a.bootstrap,
        topic: a.topic.unwrap_or_else(|| match a.mode {
            BenchMode::E2e => format!("weir-bench-e2e-{}", std::process::id()),
            _ => "weir-bench".to_owned(),
        }),
        partitions: a.partitions,
        producers: a.producers,
        consumers: a.consumers,
        message_bytes: a.size,
        batch_bytes: a.batch_bytes,
        linger_ms: a.linger_ms,
        acks: a.acks,
        compression: a.compression,
        idempotence: a.idempotence,
        duration: a.duration,
        messages: a.count,
        rate: a.rate,
    };
    let report = weir_bench::run(&cfg)?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum PipelineCommand {
    /// Parse the spec and compile its expressions; errors name the line.
    Validate { spec: PathBuf },
    /// Run the spec: a JSON Lines source to its end; a Kafka source until SIGINT/SIGTERM
    /// (a final checkpoint is written before exiting).
    Run {
        spec: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// How `pipeline run` and `sql run` run.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Rewind a Kafka source: `earliest`, `latest` (skip what is there), or a duration back
    /// from now (`2h`, `30m`). Resets the group's offsets and forgets the pipeline's
    /// checkpoints; run it with no other instance of the group active.
    #[arg(long, default_value = "committed", value_parser = pipeline_start)]
    from: weir_pipeline::kafka::StartFrom,
    /// Stop once every assigned partition is read to its end (bounded runs, benchmarks).
    #[arg(long)]
    until_end: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9645 or :9645; port 0 picks one)
    #[arg(long, value_parser = config::parse_listen)]
    metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum SqlCommand {
    /// Parse, type-check and plan the script; errors name the line and column.
    Validate { file: PathBuf },
    /// Print the plan: the steps the script compiles to, and its stages.
    Explain { file: PathBuf },
    /// Run the script, as `weir pipeline run` runs a spec (same flags).
    Run {
        file: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
}

fn sql(cmd: SqlCommand) -> anyhow::Result<()> {
    match cmd {
        SqlCommand::Validate { file } => pipeline(PipelineCommand::Validate { spec: file }),
        SqlCommand::Run { file, run } => pipeline(PipelineCommand::Run { spec: file, run }),
        SqlCommand::Explain { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let compiled = weir_pipeline::sql::load(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!("{}: pipeline {:?}", file.display(), compiled.pipeline.spec.name);
            for (i, line) in compiled.explain.iter().enumerate() {
                println!("{:>3}. {line}", i + 1);
            }
            Ok(())
        }
    }
}

/// `weir sql "SELECT …"`: the answer as a table (or JSON).
fn sql_query(query: &str, bootstrap: &str, output: Output) -> anyhow::Result<()> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let work = std::env::temp_dir().join(format!("weir-sql-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let answer = weir_pipeline::sql::query_topics(query, bootstrap, &work);
    let _ = std::fs::remove_dir_all(&work);
    let answer = answer.map_err(|e| anyhow::anyhow!("{e}"))?;
    match output {
        Output::Json => {
            let rows: Vec<serde_json::Value> = answer.rows.into_iter().map(serde_json::Value::Object).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Output::Table => {
            let cell = |v: Option<&serde_json::Value>| match v {
                None | Some(serde_json::Value::Null) => "NULL".to_owned(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            let cells: Vec<Vec<String>> =
                answer.rows.iter().map(|r| answer.columns.iter().map(|c| cell(r.get(c))).collect()).collect();
            let widths: Vec<usize> = answer
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.chars().count()]).max().unwrap_or(0))
                .collect();
            let line = |vals: &[String]| {
                let parts: Vec<String> = vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
                println!("{}", parts.join("  ").trim_end());
            };
            line(&answer.columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>());
            for r in &cells {
                line(r);
            }
            eprintln!(
                "{} (from {})",
                output::counted(answer.rows.len() as u64, "row"),
                output::counted(answer.records, "record")
            );
        }
    }
    Ok(())
}

/// A YAML spec, or a SQL script (`.sql`), compiled.
fn load_pipeline(path: &std::path::Path, text: &str) -> anyhow::Result<weir_pipeline::yaml::Compiled> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql")) {
        return weir_pipeline::sql::load(text)
            .map(|c| c.pipeline)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    weir_pipeline::yaml::load(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `pipeline run --from`: the pipeline's own positions plus `latest`/`end`, as everywhere else.
fn pipeline_start(text: &str) -> Result<weir_pipeline::kafka::StartFrom, String> {
    match text {
        "latest" | "end" => Ok(weir_pipeline::kafka::StartFrom::End),
        t => t.parse().map_err(|_| {
            format!(
                "{t:?}: use committed, earliest (or beginning), latest (or end) or a duration back from now (2h, 30m)"
            )
        }),
    }
}

fn pipeline(cmd: PipelineCommand) -> anyhow::Result<()> {
    let (path, run) = match &cmd {
        PipelineCommand::Validate { spec } => (spec, false),
        PipelineCommand::Run { spec, .. } => (spec, true),
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let compiled = load_pipeline(path, &text)?;
    if !run {
        println!("{}: pipeline {:?} is valid", path.display(), compiled.spec.name);
        return Ok(());
    }
    let base = path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let mut opts = weir_pipeline::yaml::RunOptions::default();
    if let PipelineCommand::Run { run, .. } = cmd {
        opts.from = run.from;
        opts.stop_at_end = run.until_end;
        if let Some(addr) = run.metrics_listen {
            serve_pipeline_metrics(addr)?;
        }
    }
    stop_on_signal(opts.stop.clone());
    let started = std::time::Instant::now();
    let bounded = compiled.spec.bounded();
    let stats = weir_pipeline::yaml::run(compiled, &base, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "{} in {secs:.2}s ({:.0} events/s): {}, {}, {} dropped",
        output::counted(stats.events, "event"),
        stats.events as f64 / secs,
        output::counted(stats.results, "output"),
        output::counted(stats.dead_letters, "dead letter"),
        output::counted(stats.duplicates, "duplicate")
    );
    if stats.repartitioned > 0 {
        eprintln!("{} read back from repartition topics", output::counted(stats.repartitioned, "record"));
    }
    if bounded && stats.events > 0 && stats.dead_letters >= stats.events {
        anyhow::bail!("every event went to the dead letters: check the spec's time field and expressions");
    }
    if stats.active_ms > 0 {
        let secs = stats.active_ms as f64 / 1000.0;
        eprintln!("from the first event: {secs:.3}s ({:.0} events/s)", stats.events as f64 / secs);
    }
    Ok(())
}

/// Serves the pipeline's metrics on a background thread; returns once the port is bound.
fn serve_pipeline_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    eprintln!("weir: pipeline metrics on http://{}/metrics", listener.local_addr()?);
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(|| async {
                    ([("content-type", "text/plain; version=0.0.4")], weir_pipeline::metrics::render())
                }),
            );
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "metrics server stopped");
            }
        });
    });
    Ok(())
}

/// Sets `stop` on SIGINT or SIGTERM (a pipeline then checkpoints and exits).
fn stop_on_signal(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        stop.store(true, std::sync::atomic::Ordering::Release);
    });
}

fn main() -> std::process::ExitCode {
    fix_malloc_mmap_threshold();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("weir: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?)
        .with_writer(std::io::stderr);
    match format {
        // Colour only on a terminal, and never with NO_COLOR (https://no-color.org).
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
            .init(),
        // One object a line, the event's fields beside `timestamp`, `level` and `target`.
        LogFormat::Json => logs.json().flatten_event(true).with_ansi(false).init(),
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(&cli.log, cli.log_format)?;
    match cli.command {
        Command::Serve { config, settings } => serve(settings.with_file(config.as_deref())?),
        Command::Group { bootstrap, output, command } => group_cmd::run(&bootstrap, output, command),
        Command::Pipeline { command } => pipeline(command),
        Command::Sql { command: Some(command), .. } => sql(command),
        Command::Sql { command: None, query: Some(q), bootstrap, output } => sql_query(&q, &bootstrap, output),
        Command::Sql { command: None, query: None, .. } => {
            anyhow::bail!("weir sql run|validate|explain FILE.sql, or weir sql \"SELECT … FROM topic\"")
        }
        Command::Bench(args) => bench(args),
        Command::Topic { bootstrap, output, command } => topic_cmd::run(&bootstrap, output, command),
        Command::Produce { bootstrap, args } => data_cmd::produce(&bootstrap, args),
        Command::Consume { bootstrap, args } => data_cmd::consume(&bootstrap, args),
        Command::Status(args) => status_cmd::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "weir", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn serve(settings: config::ServeSettings) -> anyhow::Result<()> {
    let broker_config = settings.broker_config()?;
    let server_config = settings.server_config();
    let http_config = settings.http_config();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    // First the ports: a port in use must fail before anything is written (no ./data, no
    // __consumer_offsets left behind).
    let (kafka_listener, http_listener) = runtime.block_on(async {
        let kafka = tokio::net::TcpListener::bind(server_config.listen)
            .await
            .with_context(|| format!("binding the Kafka listener on {}", server_config.listen))?;
        let http = tokio::net::TcpListener::bind(http_config.listen)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", http_config.listen))?;
        anyhow::Ok((kafka, http))
    })?;
    // Then one owner per data directory. Held until the process exits.
    let lock = data_dir::lock(&broker_config.data_dir)?;
    tracing::info!(lock_file = %lock.path.display(), pid = std::process::id(), "data directory locked");
    let fd_limit = match data_dir::raise_fd_limit() {
        Ok((before, now)) => {
            tracing::info!(soft_before = before, limit = now, "open file limit (RLIMIT_NOFILE)");
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open file limit");
            None
        }
    };
    // Segment files share half the descriptors; the rest are for connections and the
    // short-lived files of checkpoints and directory syncs.
    let open_files_max = settings
        .open_files_max
        .unwrap_or_else(|| fd_limit.map_or(4096, |l| (l / 2).min(1 << 20) as usize))
        .max(weir_log::OPEN_FILES_MIN);
    tracing::info!(open_files_max, "segment files kept open at most (least recently used are closed)");
    if fd_limit.is_some_and(|l| open_files_max as u64 >= l) {
        tracing::warn!(
            open_files_max,
            limit = fd_limit,
            "--open-files-max is not below the open file limit: opening partitions can fail with EMFILE"
        );
    }
    let storage = Arc::new(PooledStorage::new(Arc::new(FsStorage), open_files_max));
    runtime.block_on(async move {
        let data_dir = broker_config.data_dir.clone();
        let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config, storage, Arc::new(SystemClock)))
            .await?
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;
        let broker = Arc::new(broker);
        // One append signal for both front ends: a Kafka fetch wakes on an HTTP produce and
        // an HTTP long poll on a Kafka produce.
        let appended = tokio::sync::watch::channel(0u64).0;
        let server = Server::from_listener(kafka_listener, server_config, broker.clone(), appended.clone())
            .context("starting the Kafka listener")?;
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sources: Vec<weir_http::MetricsSource> = vec![weir_server::metrics::render, weir_log::metrics::render];
        let http = weir_http::HttpServer::from_listener(
            http_listener,
            http_config,
            broker.clone(),
            appended,
            ready.clone(),
            sources,
        );
        // Scripts and tests read the bound addresses from these lines.
        println!("weir: kafka listening on {}", server.local_addr()?);
        println!("weir: http listening on {}", http.local_addr()?);
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let kafka = tokio::spawn(server.run(stopped(stop_rx.clone())));
        let http = tokio::spawn(http.run(stopped(stop_rx)));
        shutdown_signal().await;
        ready.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = stop_tx.send(true);
        kafka.await??;
        http.await??;
        tokio::task::spawn_blocking(move || broker.close()).await?.context("flushing logs on shutdown")?;
        tracing::info!("shut down cleanly");
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
