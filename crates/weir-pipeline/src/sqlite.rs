//! SQLite sink: window results upserted by (key, window start), so replaying a result after a
//! recovery overwrites the row instead of duplicating it. Checkpoints live in the same
//! database (table `weir_checkpoints`) and are written in the same transaction.

use crate::sink::{check_table_name, Batch, Sink};
use rusqlite::{params, Connection, OptionalExtension};
use weir_stream::event::WindowResult;

pub use crate::sink::SinkError;

pub struct SqliteSink {
    conn: Connection,
    upsert: String,
    retract: String,
    columns: usize,
}

impl SqliteSink {
    /// Opens (creating) the database, the results table and the checkpoint table.
    pub fn open(path: &std::path::Path, table: &str) -> Result<Self, SinkError> {
        Self::open_with(path, table, &["value".to_owned()])
    }

    /// With one aggregate column per name (the window's aggregates, in order).
    pub fn open_with(path: &std::path::Path, table: &str, columns: &[String]) -> Result<Self, SinkError> {
        check_table_name(table)?;
        crate::sink::check_columns(columns)?;
        // NUMERIC affinity: an integral result (a count, a sum of integers) is stored as an INTEGER,
        // others (an average) as REAL.
        let value_columns: String = columns.iter().map(|c| format!("{c} NUMERIC, ")).collect();
        let names: String = columns.iter().map(|c| format!("{c}, ")).collect();
        let marks: String = (0..columns.len()).map(|i| format!("?{}, ", i + 4)).collect();
        let sets: String = columns.iter().map(|c| format!("{c} = excluded.{c}, ")).collect();
        let (c, f) = (columns.len() + 4, columns.len() + 5);
        let setup = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 key TEXT NOT NULL, window_start INTEGER NOT NULL, window_end INTEGER NOT NULL,
                 {value_columns}count INTEGER NOT NULL, final INTEGER NOT NULL DEFAULT 1,
                 PRIMARY KEY (key, window_start));
             CREATE TABLE IF NOT EXISTS weir_checkpoints (id TEXT PRIMARY KEY, data BLOB NOT NULL);"
        );
        let conn = open_wal(path, &setup)?;
        // An early update never overwrites a final row (a replay may re-send early updates).
        let upsert = format!(
            "INSERT INTO {table} (key, window_start, window_end, {names}count, final) VALUES (?1, ?2, ?3, {marks}?{c}, ?{f})
             ON CONFLICT (key, window_start) DO UPDATE SET window_end = excluded.window_end,
             {sets}count = excluded.count, final = excluded.final
             WHERE NOT {table}.final OR excluded.final"
        );
        let retract = format!("DELETE FROM {table} WHERE key = ?1 AND window_start = ?2 AND NOT final");
        Ok(Self { conn, upsert, retract, columns: columns.len() })
    }

    /// Writes results in one transaction; returns once they are committed.
    pub fn write(&mut self, results: &[WindowResult]) -> Result<(), SinkError> {
        Sink::write(self, &Batch { results, ..Batch::default() })
    }
}

impl Sink for SqliteSink {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        if !batch.events.is_empty() {
            return Err(SinkError::NeedsWindow);
        }
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&self.upsert)?;
            let mut retract = tx.prepare_cached(&self.retract)?;
            for r in batch.results {
                if r.is_retraction() {
                    retract.execute(params![r.key, r.window_start_ms])?;
                } else {
                    let values: Vec<Option<f64>> =
                        (0..self.columns).map(|i| crate::sink::aggregate_value(r, i)).collect();
                    let mut p: Vec<&dyn rusqlite::ToSql> = vec![&r.key, &r.window_start_ms, &r.window_end_ms];
                    p.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
                    let count = r.count as i64;
                    let is_final = r.is_final();
                    p.push(&count);
                    p.push(&is_final);
                    stmt.execute(&p[..])?;
                }
            }
            store_checkpoints(&tx, batch.checkpoints)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn load_checkpoint(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        load_checkpoint(&self.conn, id)
    }

    fn clear_checkpoints(&mut self, prefix: &str) -> Result<(), SinkError> {
        clear_checkpoints(&self.conn, prefix)
    }
}

/// Opens the database in WAL mode and runs `setup` (CREATE TABLE IF NOT EXISTS …).
pub(crate) fn open_wal(path: &std::path::Path, setup: &str) -> Result<Connection, SinkError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let setup = format!("PRAGMA journal_mode=WAL;\n{setup}");
    // Switching to WAL needs the database to itself and SQLite does not wait for that (the
    // busy timeout does not apply): two instances opening at once retry, for up to 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn.execute_batch(&setup) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other?,
        }
    }
    Ok(conn)
}

/// Writes checkpoints inside the caller's transaction.
pub(crate) fn store_checkpoints(
    tx: &rusqlite::Transaction<'_>,
    checkpoints: &[(String, Vec<u8>)],
) -> Result<(), SinkError> {
    let mut cp = tx.prepare_cached(
        "INSERT INTO weir_checkpoints (id, data) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET data = excluded.data",
    )?;
    for (id, data) in checkpoints {
        cp.execute(params![id, data])?;
    }
    Ok(())
}

pub(crate) fn load_checkpoint(conn: &Connection, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
    Ok(conn.query_row("SELECT data FROM weir_checkpoints WHERE id = ?1", [id], |r| r.get(0)).optional()?)
}

pub(crate) fn clear_checkpoints(conn: &Connection, prefix: &str) -> Result<(), SinkError> {
    conn.execute("DELETE FROM weir_checkpoints WHERE substr(id, 1, length(?1)) = ?1", [prefix])?;
    Ok(())
}
