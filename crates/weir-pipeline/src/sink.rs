//! Sinks: where a pipeline's window results (or pass-through events) go, together with the
//! checkpoints that say how far the source was read when they were written.
//!
//! A sink's `write` is the commit point of the checkpoint → flush → offset-commit loop: when it
//! returns, the results and the checkpoints are both durable. Database sinks store the
//! checkpoints in the same transaction as the results (table `weir_checkpoints`), so the two
//! never disagree; other sinks flush their output first and then write checkpoint files.
//! Results are upserted by (key, window start): replaying them after a crash overwrites rows
//! and never duplicates them, and an early (non-final) update never overwrites a final row.

use std::io::Write;
use std::path::{Path, PathBuf};
use weir_stream::event::{Event, WindowResult};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("invalid table name {0:?}: use letters, digits and _")]
    TableName(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", postgres_detail(.0))]
    Postgres(#[from] postgres::Error),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid aggregate column name {0:?}: use letters, digits and _, and not key, window_start, window_end, count or final")]
    ColumnName(String),
    #[error("this sink stores window results; the pipeline has no window")]
    NeedsWindow,
    #[error("{0}")]
    Row(String),
}

/// One flush: everything produced since the previous one, and the state that covers it.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    pub results: &'a [WindowResult],
    pub events: &'a [Event],
    /// (checkpoint id, serialized checkpoint).
    pub checkpoints: &'a [(String, Vec<u8>)],
}

pub trait Sink: Send {
    /// Makes the batch durable: results and checkpoints together.
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError>;
    /// Where a sink that is not a database keeps checkpoints (the methods below use it;
    /// database sinks keep them in their own transaction and override those instead).
    fn checkpoint_store(&mut self) -> Option<&mut dyn CheckpointStore> {
        None
    }
    /// The last checkpoint stored under `id`.
    fn load_checkpoint(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        self.checkpoint_store().map_or(Ok(None), |c| c.load(id))
    }
    /// Forgets every checkpoint whose id starts with `prefix` (a rewind with `--from`).
    fn clear_checkpoints(&mut self, prefix: &str) -> Result<(), SinkError> {
        self.checkpoint_store().map_or(Ok(()), |c| c.clear(prefix))
    }
    /// Partitions moved: read checkpoints afresh (another instance may have written them).
    fn refresh_checkpoints(&mut self) -> Result<(), SinkError> {
        self.checkpoint_store().map_or(Ok(()), |c| c.refresh())
    }
}

/// Where sinks that are not databases keep checkpoints: files, or a topic every instance of
/// the pipeline can read (`kafka::CheckpointTopic`).
pub trait CheckpointStore: Send {
    /// Durable when it returns.
    fn store(&mut self, checkpoints: &[(String, Vec<u8>)]) -> Result<(), SinkError>;
    fn load(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError>;
    fn clear(&mut self, prefix: &str) -> Result<(), SinkError>;
    /// Drops what was read before, so the next `load` sees other instances' writes.
    fn refresh(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl CheckpointStore for Box<dyn CheckpointStore> {
    fn store(&mut self, checkpoints: &[(String, Vec<u8>)]) -> Result<(), SinkError> {
        (**self).store(checkpoints)
    }
    fn load(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        (**self).load(id)
    }
    fn clear(&mut self, prefix: &str) -> Result<(), SinkError> {
        (**self).clear(prefix)
    }
    fn refresh(&mut self) -> Result<(), SinkError> {
        (**self).refresh()
    }
}

impl CheckpointStore for CheckpointDir {
    fn store(&mut self, checkpoints: &[(String, Vec<u8>)]) -> Result<(), SinkError> {
        CheckpointDir::store(self, checkpoints)
    }
    fn load(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        CheckpointDir::load(self, id)
    }
    fn clear(&mut self, prefix: &str) -> Result<(), SinkError> {
        CheckpointDir::clear(self, prefix)
    }
}

/// The server's message ("db error" alone says nothing).
fn postgres_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            format!("{}: {}{}", db.severity(), db.message(), db.detail().map(|d| format!(" ({d})")).unwrap_or_default())
        }
        None => e.to_string(),
    }
}

pub(crate) fn check_table_name(table: &str) -> Result<(), SinkError> {
    if table.is_empty() || !table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(SinkError::TableName(table.to_owned()));
    }
    Ok(())
}

/// Aggregate column names: like table names, and none of the fixed columns.
pub(crate) fn check_columns(columns: &[String]) -> Result<(), SinkError> {
    for c in columns {
        check_table_name(c).map_err(|_| SinkError::ColumnName(c.clone()))?;
        if ["key", "window_start", "window_end", "count", "final"].contains(&c.as_str()) {
            return Err(SinkError::ColumnName(c.clone()));
        }
    }
    Ok(())
}

/// Aggregate `i` of a result (0 = the primary one); None for an empty min/max/avg (NaN).
pub(crate) fn aggregate_value(r: &WindowResult, i: usize) -> Option<f64> {
    let v = if i == 0 { Some(r.value) } else { r.extra.get(i - 1).copied() };
    v.filter(|v| !v.is_nan())
}

/// Checkpoints as files in a directory: one file per id, replaced atomically (write, fsync,
/// rename, fsync the directory).
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
}

impl CheckpointDir {
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io { path: dir.to_owned(), source })?;
        Ok(Self { dir: dir.to_owned() })
    }

    fn file(&self, id: &str) -> PathBuf {
        let name: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        self.dir.join(format!("{name}.json"))
    }

    pub fn store(&self, checkpoints: &[(String, Vec<u8>)]) -> Result<(), SinkError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SinkError::Io { path, source }
        };
        for (id, data) in checkpoints {
            let path = self.file(id);
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(data).map_err(io(&tmp))?;
            f.sync_data().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
        }
        if !checkpoints.is_empty() {
            std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        }
        Ok(())
    }

    pub fn load(&self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        let path = self.file(id);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SinkError::Io { path, source }),
        }
    }

    pub fn clear(&self, prefix: &str) -> Result<(), SinkError> {
        let stem = self.file(prefix);
        let stem = stem.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let entries =
            std::fs::read_dir(&self.dir).map_err(|source| SinkError::Io { path: self.dir.clone(), source })?;
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with(&stem)) {
                std::fs::remove_file(e.path()).map_err(|source| SinkError::Io { path: e.path(), source })?;
            }
        }
        Ok(())
    }
}

/// Opens an output file for appending, or empty with `truncate`; creates it if missing.
pub(crate) fn open_output(path: &Path, truncate: bool) -> Result<std::fs::File, SinkError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    options.open(path).map_err(|source| SinkError::Io { path: path.to_owned(), source })
}

/// The JSON line written for a window result.
pub fn result_json(r: &WindowResult) -> serde_json::Value {
    result_json_named(r, &[])
}

/// The JSON line for a window result whose aggregates have these names (none: `value`).
pub fn result_json_named(r: &WindowResult, names: &[String]) -> serde_json::Value {
    if r.is_retraction() {
        return serde_json::json!({"key": r.key, "window_start": r.window_start_ms, "retract": true});
    }
    let mut m = serde_json::Map::new();
    m.insert("key".into(), r.key.clone().into());
    m.insert("window_start".into(), r.window_start_ms.into());
    m.insert("window_end".into(), r.window_end_ms.into());
    if names.is_empty() {
        m.insert("value".into(), serde_json::json!(r.value));
    }
    for (i, name) in names.iter().enumerate() {
        m.insert(name.clone(), aggregate_value(r, i).map_or(serde_json::Value::Null, weir_stream::event::number));
    }
    m.insert("count".into(), r.count.into());
    m.insert("final".into(), r.is_final().into());
    serde_json::Value::Object(m)
}

/// The JSON line written for a pass-through event: `{"key": …, "timestamp": …, "value": …}`.
pub fn event_json(ev: &Event) -> serde_json::Value {
    serde_json::json!({"key": ev.key, "timestamp": ev.timestamp_ms, "value": ev.value})
}

/// Writes `event_json(ev)` and a newline, serialized from the event in place (no copy of
/// its value).
pub fn write_event_line(out: &mut (impl Write + ?Sized), ev: &Event) -> std::io::Result<()> {
    if let Some(raw) = &ev.raw {
        // The value as it came (it was decoded from this text and not changed since).
        out.write_all(b"{\"key\":")?;
        serde_json::to_writer(&mut *out, &ev.key)?;
        write!(out, ",\"timestamp\":{},\"value\":", ev.timestamp_ms)?;
        out.write_all(raw.as_bytes())?;
        return out.write_all(b"}\n");
    }
    #[derive(serde::Serialize)]
    struct Line<'a> {
        key: &'a Option<String>,
        timestamp: i64,
        value: &'a serde_json::Value,
    }
    serde_json::to_writer(&mut *out, &Line { key: &ev.key, timestamp: ev.timestamp_ms, value: &ev.value })?;
    out.write_all(b"\n")
}

/// An event's value alone as a JSON line (its text as it came, when unchanged).
pub fn write_value_line(out: &mut (impl Write + ?Sized), ev: &Event) -> std::io::Result<()> {
    match &ev.raw {
        Some(raw) => out.write_all(raw.as_bytes())?,
        None => serde_json::to_writer(&mut *out, &ev.value)?,
    }
    out.write_all(b"\n")
}

/// JSON Lines to a file (appended, fsynced on every write) or to stdout; checkpoints in a dir.
pub struct JsonlSink {
    /// Aggregate names of the results.
    pub names: Vec<String>,
    /// Write each event's value alone (a SQL row), not `{key, timestamp, value}`.
    pub rows: bool,
    out: Box<dyn Write + Send>,
    file: Option<std::fs::File>,
    path: PathBuf,
    checkpoints: Box<dyn CheckpointStore>,
}

impl JsonlSink {
    /// Appends to `path`; with `truncate`, starts it empty (a bounded input's one-shot run).
    pub fn file(path: &Path, checkpoints: impl CheckpointStore + 'static, truncate: bool) -> Result<Self, SinkError> {
        let f = open_output(path, truncate)?;
        let clone = f.try_clone().map_err(|source| SinkError::Io { path: path.to_owned(), source })?;
        Ok(Self {
            names: Vec::new(),
            rows: false,
            out: Box::new(std::io::BufWriter::new(f)),
            file: Some(clone),
            path: path.to_owned(),
            checkpoints: Box::new(checkpoints),
        })
    }

    pub fn stdout(checkpoints: impl CheckpointStore + 'static) -> Self {
        Self {
            names: Vec::new(),
            rows: false,
            out: Box::new(std::io::stdout()),
            file: None,
            path: PathBuf::from("stdout"),
            checkpoints: Box::new(checkpoints),
        }
    }
}

impl Sink for JsonlSink {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let io = |source| SinkError::Io { path: self.path.clone(), source };
        (|| -> std::io::Result<()> {
            for r in batch.results {
                writeln!(self.out, "{}", result_json_named(r, &self.names))?;
            }
            for ev in batch.events {
                if self.rows {
                    write_value_line(&mut self.out, ev)?;
                } else {
                    write_event_line(&mut self.out, ev)?;
                }
            }
            self.out.flush()?;
            if let Some(f) = &self.file {
                f.sync_data()?;
            }
            Ok(())
        })()
        .map_err(io)?;
        self.checkpoints.store(batch.checkpoints)
    }

    fn checkpoint_store(&mut self) -> Option<&mut dyn CheckpointStore> {
        Some(&mut self.checkpoints)
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn event_lines_are_the_event_json() {
        let values = [serde_json::json!({"b": [1, 2.5, "x"], "a": {"z": null, "y": true}}), serde_json::json!("s\n\"")];
        for (key, value) in [None, Some("k\u{e9}")].into_iter().zip(values) {
            let ev = Event::new(key, value, -5);
            let mut out = Vec::new();
            write_event_line(&mut out, &ev).expect("writes");
            assert_eq!(String::from_utf8(out).expect("utf-8"), format!("{}\n", event_json(&ev)));
        }
    }
}
