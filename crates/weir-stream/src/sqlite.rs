//! SQLite sink: window results upserted by (key, window start), so replaying a result after a
//! recovery overwrites the row instead of duplicating it.

use crate::event::WindowResult;
use rusqlite::{params, Connection};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("invalid table name {0:?}: use letters, digits and _")]
    TableName(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub struct SqliteSink {
    conn: Connection,
    upsert: String,
}

impl SqliteSink {
    /// Opens (creating) the database and the results table.
    pub fn open(path: &std::path::Path, table: &str) -> Result<Self, SinkError> {
        if table.is_empty() || !table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(SinkError::TableName(table.to_owned()));
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS {table} (
                 key TEXT NOT NULL, window_start INTEGER NOT NULL, window_end INTEGER NOT NULL,
                 value REAL NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (key, window_start));"
        ))?;
        let upsert = format!(
            "INSERT INTO {table} (key, window_start, window_end, value, count) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key, window_start) DO UPDATE SET window_end = excluded.window_end,
             value = excluded.value, count = excluded.count"
        );
        Ok(Self { conn, upsert })
    }

    /// Writes results in one transaction; returns once they are committed.
    pub fn write(&mut self, results: &[WindowResult]) -> Result<(), SinkError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&self.upsert)?;
            for r in results {
                stmt.execute(params![r.key, r.window_start_ms, r.window_end_ms, r.value, r.count as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
