//! `weir produce` and `weir consume` over the Kafka protocol.

use crate::client::{s, Client};
use crate::output::counted;
use crate::position::{Bare, Position};
use crate::topic_cmd::{error_name, metadata, offsets};
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};
use weir_broker::partitioner::partition_for_key;
use weir_log::BatchBuilder;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    topic: String,
    /// Read lines from this file instead of stdin
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    /// Split each line into key and value at the first occurrence of this string
    #[arg(long, short = 'K')]
    key_separator: Option<String>,
    /// Each line is a JSON record: {"key": ..., "value": ..., "headers": {...}, "partition": n}
    #[arg(long)]
    json: bool,
    /// Send every record to this partition (default: murmur2 of the key, like Kafka clients)
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Records per batch
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
}

/// `weir consume -o`: how each record is printed.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum RecordOutput {
    /// The value only
    Value,
    /// partition, offset, timestamp, key, value and headers (k=v,…), tab-separated
    #[value(alias = "full")]
    Table,
    /// One JSON object per record, with its headers
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Only this partition (default: all)
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Where to start: earliest (or beginning), latest (or end: new records only), an offset,
    /// a duration back from now (30s, 5m, 2h, 1d) or time:<ms since the epoch>
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Keep waiting for new records instead of stopping at the end
    #[arg(long)]
    follow: bool,
    /// Stop after this many records (--max is the earlier spelling)
    #[arg(long, short = 'c', alias = "max")]
    count: Option<u64>,
    /// Start from this group's committed offsets and commit progress to it (the group must
    /// have no active members)
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// How to print records [default: value]
    #[arg(long, short = 'o', value_enum, conflicts_with = "format")]
    output: Option<RecordOutput>,
    /// kcat-style format: %k key, %v (or %s) value, %o offset, %T timestamp (ms), %p partition,
    /// %t topic, %h headers (k=v,…), %K/%S key/value length in bytes, %% a percent sign;
    /// \n, \t and \\ escapes. A newline is added when the format has none. (The words
    /// value, full and json are read as -o, their earlier spelling.)
    #[arg(long, short = 'f')]
    format: Option<String>,
}

/// One piece of a `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Key,
    Value,
    Offset,
    Timestamp,
    Partition,
    Topic,
    Headers,
    KeyLen,
    ValueLen,
}

/// How `weir consume` prints records, decided once from -o/-f.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Printer {
    Named(RecordOutput),
    Template(Vec<Piece>),
}

impl Printer {
    fn from_args(output: Option<RecordOutput>, format: Option<&str>) -> anyhow::Result<Printer> {
        let named = |w: &str| RecordOutput::from_str(w, false).ok();
        Ok(match (output, format) {
            (Some(o), _) => Printer::Named(o),
            (None, None) => Printer::Named(RecordOutput::Value),
            (None, Some(f)) => match named(f) {
                Some(o) if !f.contains('%') => Printer::Named(o),
                _ => Printer::Template(parse_template(f)?),
            },
        })
    }
}

/// Compiles a kcat-style format string; unknown `%x` and `\x` are errors, so a typo is not
/// printed a million times.
fn parse_template(f: &str) -> anyhow::Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = f.chars();
    let mut newline = false;
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let piece = match chars.next() {
                    Some('%') => {
                        text.push('%');
                        continue;
                    }
                    Some('k') => Piece::Key,
                    Some('v' | 's') => Piece::Value,
                    Some('o') => Piece::Offset,
                    Some('T') => Piece::Timestamp,
                    Some('p') => Piece::Partition,
                    Some('t') => Piece::Topic,
                    Some('h') => Piece::Headers,
                    Some('K') => Piece::KeyLen,
                    Some('S') => Piece::ValueLen,
                    other => bail!(
                        "--format {f:?}: unknown %{} (use %k %v %o %T %p %t %h %K %S or %%)",
                        other.map(String::from).unwrap_or_default()
                    ),
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
            }
            '\\' => match chars.next() {
                Some('n') => {
                    text.push('\n');
                    newline = true;
                }
                Some('t') => text.push('\t'),
                Some('r') => text.push('\r'),
                Some('\\') => text.push('\\'),
                other => bail!(
                    "--format {f:?}: unknown escape \\{} (use \\n \\t \\r or \\\\)",
                    other.map(String::from).unwrap_or_default()
                ),
            },
            '\n' => {
                text.push('\n');
                newline = true;
            }
            c => text.push(c),
        }
    }
    if !newline {
        text.push('\n');
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// A progress line on a terminal, refreshed at most once a second.
struct Progress {
    started: Instant,
    last: Instant,
    tty: bool,
    verb: &'static str,
}

impl Progress {
    fn new(verb: &'static str) -> Self {
        let now = Instant::now();
        Self { started: now, last: now, tty: std::io::stderr().is_terminal(), verb }
    }
    fn tick(&mut self, n: u64) {
        if self.tty && self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            eprint!("\r{} {} ({:.0}/s)   ", self.verb, counted(n, "record"), n as f64 / secs);
        }
    }
    fn done(&self, n: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        if self.tty {
            eprint!("\r");
        }
        eprintln!("{} {} in {secs:.2}s ({:.0} records/s)", self.verb, counted(n, "record"), n as f64 / secs);
    }
}

struct Pending {
    builders: BTreeMap<i32, BatchBuilder>,
    records: usize,
}

fn send(c: &mut Client, topic: &str, pending: &mut Pending) -> anyhow::Result<()> {
    if pending.records == 0 {
        return Ok(());
    }
    let mut left: Vec<i32> = pending.builders.iter().filter(|(_, b)| !b.is_empty()).map(|(p, _)| *p).collect();
    // One request per partition leader. A partition whose leader moved (the batch was not
    // written) is sent again to the new leader, a few times with a growing pause.
    const ATTEMPTS: u32 = 5;
    for attempt in 1..=ATTEMPTS {
        let mut moved = Vec::new();
        for (node, parts) in c.by_leader(topic, left.iter().copied())? {
            let partitions = parts
                .iter()
                .map(|p| {
                    produce_request::PartitionProduceData::default()
                        .with_index(*p)
                        .with_records(Some(Bytes::from(pending.builders[p].build())))
                })
                .collect();
            let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_data(partitions),
            ]);
            let ResponseKind::Produce(r) = c.call_node(node, ApiKey::Produce, 9, RequestKind::Produce(req))? else {
                bail!("unexpected response")
            };
            for t in &r.responses {
                for p in &t.partition_responses {
                    if p.error_code == 0 {
                        continue;
                    }
                    if crate::client::is_leader_error(p.error_code) && attempt < ATTEMPTS {
                        moved.push(p.index);
                        continue;
                    }
                    bail!(
                        "producing to {topic}/{}: {} {}",
                        p.index,
                        error_name(p.error_code),
                        p.error_message.as_deref().unwrap_or("")
                    );
                }
            }
        }
        if moved.is_empty() {
            break;
        }
        c.forget_leaders(topic);
        std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
        left = moved;
    }
    pending.builders.values_mut().for_each(BatchBuilder::clear);
    pending.records = 0;
    Ok(())
}

pub fn produce(bootstrap: &str, a: ProduceArgs) -> anyhow::Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let partitions = crate::topic_cmd::metadata_for_produce(&mut c, &a.topic)?;
    if let Some(p) = a.partition.filter(|p| !(0..partitions).contains(p)) {
        bail!("topic {} has no partition {p}", a.topic);
    }
    let input: Box<dyn BufRead> = match &a.file {
        Some(f) => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut pending = Pending { builders: BTreeMap::new(), records: 0 };
    let mut progress = Progress::new("produced");
    let (mut total, mut round_robin) = (0u64, 0i32);
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading input")?;
        let now = weir_log::SystemClock::unix_ms();
        let (key, value, headers, explicit): (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, String)>, Option<i32>) =
            if a.json {
                let v: Value = serde_json::from_str(&line).with_context(|| format!("line {}: invalid JSON", n + 1))?;
                let key = v.get("key").and_then(Value::as_str).map(|k| k.as_bytes().to_vec());
                let value = match v.get("value") {
                    None | Some(Value::Null) => None,
                    Some(x) => Some(serde_json::to_vec(x)?),
                };
                let headers = v
                    .get("headers")
                    .and_then(Value::as_object)
                    .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                    .unwrap_or_default();
                (key, value, headers, v.get("partition").and_then(Value::as_i64).map(|p| p as i32))
            } else {
                match a.key_separator.as_deref().and_then(|sep| line.split_once(sep)) {
                    Some((k, v)) => (Some(k.as_bytes().to_vec()), Some(v.as_bytes().to_vec()), Vec::new(), None),
                    None => (None, Some(line.into_bytes()), Vec::new(), None),
                }
            };
        let partition = match (a.partition.or(explicit), &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => round_robin,
        };
        let hdrs: Vec<(&[u8], Option<&[u8]>)> =
            headers.iter().map(|(k, v)| (k.as_bytes(), Some(v.as_bytes()))).collect();
        pending.builders.entry(partition).or_default().push_with_headers(now, key.as_deref(), value.as_deref(), &hdrs);
        pending.records += 1;
        total += 1;
        if pending.records >= a.batch_records {
            send(&mut c, &a.topic, &mut pending)?;
            // Records without key stick to one partition per batch, like Kafka's sticky partitioner.
            round_robin = (round_robin + 1) % partitions.max(1);
            progress.tick(total);
        }
    }
    send(&mut c, &a.topic, &mut pending)?;
    progress.done(total);
    Ok(())
}

/// The offsets a partition holds: [start, end) with `end` the next to be written.
fn range_text(topic: &str, p: i32, start: i64, end: i64) -> String {
    if start >= end {
        format!("{topic} partition {p} holds no records (its next offset is {end})")
    } else {
        format!(
            "{topic} partition {p} holds offsets {start} to {} ({})",
            end - 1,
            counted((end - start) as u64, "record")
        )
    }
}

/// Refuses an explicit offset outside a partition's records, naming the valid range. The end
/// itself is allowed: reading from it waits for the next record.
fn check_offset(c: &mut Client, topic: &str, parts: &[i32], count: i32, offset: i64) -> anyhow::Result<()> {
    let starts = offsets(c, topic, count, -2)?;
    let ends = offsets(c, topic, count, -1)?;
    for &p in parts {
        let (start, end) = (starts[p as usize], ends[p as usize]);
        let more = if parts.len() > 1 { " (name one partition with -p)" } else { "" };
        if offset > end {
            bail!(
                "--from {offset} is past the end: {}; use an offset in that range{more}, --from latest for \
                 new records only, or --from earliest",
                range_text(topic, p, start, end)
            );
        }
        if offset < start {
            bail!(
                "--from {offset} is before the start (older records were deleted by retention): {}; use an \
                 offset in that range{more} or --from earliest",
                range_text(topic, p, start, end)
            );
        }
    }
    Ok(())
}

fn start_offsets(c: &mut Client, a: &ConsumeArgs, parts: &[i32], count: i32) -> anyhow::Result<BTreeMap<i32, i64>> {
    let now = weir_log::SystemClock::unix_ms();
    let from = Position::parse(&a.from, Bare::Offset, now).map_err(|e| anyhow::anyhow!("--from {e}"))?;
    let mut out = BTreeMap::new();
    match from.list_offsets_timestamp() {
        None => {
            let Position::Offset(o) = from else { bail!("--from {:?} is not an offset", a.from) };
            // With a group, committed offsets win where they exist; check only the others.
            if a.group.is_none() {
                check_offset(c, &a.topic, parts, count, o)?;
            }
            for p in parts {
                out.insert(*p, o);
            }
        }
        Some(ts) => {
            let found = offsets(c, &a.topic, count, ts)?;
            let ends = if ts >= 0 { offsets(c, &a.topic, count, -1)? } else { Vec::new() };
            for p in parts {
                let o = found[*p as usize];
                out.insert(*p, if o < 0 { ends.get(*p as usize).copied().unwrap_or(0) } else { o });
            }
        }
    }
    if let Some(g) = &a.group {
        let req = OffsetFetchRequest::default().with_group_id(GroupId(s(g))).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(&a.topic)))
                .with_partition_indexes(parts.to_vec()),
        ]));
        let ResponseKind::OffsetFetch(r) = c.call_group(g, ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(req))?
        else {
            bail!("unexpected response")
        };
        for t in &r.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 {
                    out.insert(p.partition_index, p.committed_offset);
                }
            }
        }
    }
    Ok(out)
}

/// Headers as `k=v,k2=v2` (kcat's %h).
fn write_headers(out: &mut impl Write, r: &weir_log::record::Record<'_>) -> std::io::Result<()> {
    for (i, (k, v)) in r.headers().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(k)?;
        out.write_all(b"=")?;
        out.write_all(v.unwrap_or_default())?;
    }
    Ok(())
}

/// Where a record was read, for printing.
struct At<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
}

fn print_record(
    out: &mut impl Write,
    printer: &Printer,
    at: &At<'_>,
    r: &weir_log::record::Record<'_>,
) -> std::io::Result<()> {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let (partition, offset, ts) = (at.partition, at.offset, at.timestamp);
    match printer {
        Printer::Named(RecordOutput::Value) => {
            out.write_all(r.value.unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Printer::Named(RecordOutput::Table) => {
            write!(out, "{partition}\t{offset}\t{ts}\t")?;
            out.write_all(r.key.unwrap_or_default())?;
            out.write_all(b"\t")?;
            out.write_all(r.value.unwrap_or_default())?;
            out.write_all(b"\t")?;
            write_headers(out, r)?;
            out.write_all(b"\n")
        }
        Printer::Named(RecordOutput::Json) => {
            let value = r.value.map(|v| {
                serde_json::from_slice::<Value>(v)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(v).into_owned()))
            });
            let headers: serde_json::Map<String, Value> = r
                .headers()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), text(v).map_or(Value::Null, Value::String)))
                .collect();
            writeln!(
                out,
                "{}",
                json!({"partition": partition, "offset": offset, "timestamp": ts, "key": text(r.key), "value": value,
                       "headers": headers})
            )
        }
        Printer::Template(pieces) => {
            for piece in pieces {
                match piece {
                    Piece::Text(t) => out.write_all(t.as_bytes())?,
                    Piece::Key => out.write_all(r.key.unwrap_or_default())?,
                    Piece::Value => out.write_all(r.value.unwrap_or_default())?,
                    Piece::Offset => write!(out, "{offset}")?,
                    Piece::Timestamp => write!(out, "{ts}")?,
                    Piece::Partition => write!(out, "{partition}")?,
                    Piece::Topic => out.write_all(at.topic.as_bytes())?,
                    Piece::Headers => write_headers(out, r)?,
                    Piece::KeyLen => write!(out, "{}", r.key.map_or(-1, |k| k.len() as i64))?,
                    Piece::ValueLen => write!(out, "{}", r.value.map_or(-1, |v| v.len() as i64))?,
                }
            }
            Ok(())
        }
    }
}

pub fn consume(bootstrap: &str, a: ConsumeArgs) -> anyhow::Result<()> {
    let printer = Printer::from_args(a.output, a.format.as_deref())?;
    let mut c = Client::connect(bootstrap)?;
    let [(_, count, _)] = metadata(&mut c, Some(&[a.topic.as_str()]))?[..] else {
        bail!("topic {} does not exist", a.topic)
    };
    let parts: Vec<i32> = match a.partition {
        Some(p) if (0..count).contains(&p) => vec![p],
        Some(p) => bail!("topic {} has no partition {p}", a.topic),
        None => (0..count).collect(),
    };
    let mut next = start_offsets(&mut c, &a, &parts, count)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut progress = Progress::new("consumed");
    let mut total = 0u64;
    // Leader moves seen in a row (reset by any good partition answer).
    let mut leader_moves = 0u64;
    'fetching: loop {
        let mut at_end = true;
        // One fetch per partition leader, each waiting at most 500 ms for data.
        for (node, leads) in c.by_leader(&a.topic, next.keys().copied())? {
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(8 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(TopicName(s(&a.topic)))
                    .with_partitions(
                        leads
                            .iter()
                            .map(|p| {
                                fetch_request::FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(next[p])
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    )]);
            let ResponseKind::Fetch(r) = c.call_node(node, ApiKey::Fetch, 12, RequestKind::Fetch(req))? else {
                bail!("unexpected response")
            };
            for t in &r.responses {
                for p in &t.partitions {
                    if p.error_code == ResponseError::OffsetOutOfRange.code() {
                        let o = next.get(&p.partition_index).copied().unwrap_or(0);
                        let range = range_text(&a.topic, p.partition_index, p.log_start_offset, p.high_watermark);
                        bail!("offset {o} is out of range: {range}; use --from earliest or --from latest");
                    }
                    if crate::client::is_leader_error(p.error_code) && leader_moves < 5 {
                        // The leader moved: ask Metadata again and fetch from the new one.
                        leader_moves += 1;
                        c.forget_leaders(&a.topic);
                        std::thread::sleep(Duration::from_millis(100 * leader_moves));
                        at_end = false;
                        continue;
                    }
                    if p.error_code != 0 {
                        bail!("fetching {}/{}: {}", a.topic, p.partition_index, error_name(p.error_code));
                    }
                    leader_moves = 0;
                    let offset = next.get_mut(&p.partition_index).context("response for a partition not asked for")?;
                    let mut data = p.records.clone().unwrap_or_default();
                    while data.len() >= weir_log::batch::HEADER_LEN {
                        // A broker may cut the last batch at the response's size limit (Kafka
                        // does): the rest comes with the next fetch.
                        let head = weir_log::batch::BatchHeader::parse(&data)
                            .map_err(|e| anyhow::anyhow!("corrupt batch from the broker: {e}"))?;
                        if head.total_len() > data.len() {
                            break;
                        }
                        let h = weir_log::batch::validate_stored(&data)
                            .map_err(|e| anyhow::anyhow!("corrupt batch from the broker: {e}"))?;
                        let batch = data.split_to(h.total_len());
                        if h.is_control() {
                            // Transaction markers are not records.
                            *offset = (*offset).max(h.last_offset() + 1);
                            continue;
                        }
                        let mut stop = false;
                        weir_log::codec::for_each_record(&batch, &h, |rec| {
                            let o = h.base_offset + i64::from(rec.offset_delta);
                            if o < *offset || stop {
                                return;
                            }
                            let ts = h.record_timestamp(rec.timestamp_delta);
                            let at = At { topic: &a.topic, partition: p.partition_index, offset: o, timestamp: ts };
                            let _ = print_record(&mut out, &printer, &at, rec);
                            total += 1;
                            *offset = o + 1;
                            stop = a.count.is_some_and(|m| total >= m);
                        })?;
                        if stop {
                            break 'fetching;
                        }
                        *offset = (*offset).max(h.last_offset() + 1);
                    }
                    if *offset < p.high_watermark {
                        at_end = false;
                    }
                }
            }
        }
        out.flush()?;
        commit(&mut c, &a, &next)?;
        progress.tick(total);
        if at_end && !a.follow {
            break;
        }
    }
    out.flush()?;
    commit(&mut c, &a, &next)?;
    progress.done(total);
    Ok(())
}

fn commit(c: &mut Client, a: &ConsumeArgs, next: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
    let Some(g) = &a.group else { return Ok(()) };
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(g)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(&a.topic)))
            .with_partitions(
                next.iter()
                    .map(|(p, o)| {
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                    })
                    .collect(),
            )]);
    let ResponseKind::OffsetCommit(r) = c.call_group(g, ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req))?
    else {
        bail!("unexpected response")
    };
    for t in &r.topics {
        for p in &t.partitions {
            match p.error_code {
                0 => {}
                c if c == ResponseError::RebalanceInProgress.code() || c == ResponseError::IllegalGeneration.code() => {
                    bail!(
                    "group {g} has active members: `weir consume --group` commits only for groups nobody else is in"
                )
                }
                code => bail!("committing to group {g}: {}", error_name(code)),
            }
        }
    }
    Ok(())
}
