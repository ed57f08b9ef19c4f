//! PostgreSQL sink: window results upserted by (key, window start) in one transaction per
//! flush, together with the checkpoints (table `weir_checkpoints`). Replaying results after a
//! crash overwrites rows, never duplicates them; an early update never overwrites a final row.
//! A broken connection is re-opened on the next write.

use crate::sink::{check_table_name, Batch, Sink, SinkError};
use postgres::{Client, NoTls, Statement};

pub struct PostgresSink {
    conninfo: String,
    table: String,
    /// Aggregate columns, in result order (`value` for single-aggregate windows).
    columns: Vec<String>,
    conn: Option<Conn>,
}

/// A connection with the sink's two statements, prepared once when it opens.
struct Conn {
    client: Client,
    /// Upserts one array per column, unnested server-side.
    upsert: Statement,
    /// Deletes withdrawn early updates (never a final row).
    retract: Statement,
    checkpoint: Statement,
}

impl PostgresSink {
    /// Connects (with a 10 s connect timeout unless the conninfo sets one) and creates the
    /// tables.
    pub fn open(conninfo: &str, table: &str) -> Result<Self, SinkError> {
        Self::open_with(conninfo, table, &["value".to_owned()])
    }

    /// With one aggregate column per name (the window's aggregates, in order).
    pub fn open_with(conninfo: &str, table: &str, columns: &[String]) -> Result<Self, SinkError> {
        check_table_name(table)?;
        crate::sink::check_columns(columns)?;
        let mut s =
            Self { conninfo: conninfo.to_owned(), table: table.to_owned(), columns: columns.to_vec(), conn: None };
        s.conn()?;
        Ok(s)
    }

    /// The open connection, or a new one when there is none or it broke.
    fn conn(&mut self) -> Result<&mut Conn, SinkError> {
        let conn = match self.conn.take() {
            Some(c) if !c.client.is_closed() => c,
            _ => self.connect()?,
        };
        Ok(self.conn.insert(conn))
    }

    fn connect(&self) -> Result<Conn, SinkError> {
        let mut client = connect(&self.conninfo)?;
        let t = &self.table;
        // NULL for an empty min/max/avg.
        let value_columns: String = self.columns.iter().map(|c| format!("{c} DOUBLE PRECISION, ")).collect();
        let names: String = self.columns.iter().map(|c| format!("{c}, ")).collect();
        let arrays: String = (0..self.columns.len()).map(|i| format!("${}::float8[], ", i + 4)).collect();
        let sets: String = self.columns.iter().map(|c| format!("{c} = EXCLUDED.{c}, ")).collect();
        let (c, f) = (self.columns.len() + 4, self.columns.len() + 5);
        // The lock makes concurrent instances' CREATE TABLE IF NOT EXISTS safe (they race
        // on the catalog otherwise).
        client.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(7010656);
             CREATE TABLE IF NOT EXISTS {t} (
                 key TEXT NOT NULL, window_start BIGINT NOT NULL, window_end BIGINT NOT NULL,
                 {value_columns} count BIGINT NOT NULL, final BOOLEAN NOT NULL DEFAULT true,
                 PRIMARY KEY (key, window_start));
             CREATE TABLE IF NOT EXISTS weir_checkpoints (id TEXT PRIMARY KEY, data BYTEA NOT NULL,
                 updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
             COMMIT;"
        ))?;
        let upsert = client.prepare(&format!(
            "INSERT INTO {t} (key, window_start, window_end, {names}count, final)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], {arrays}${c}::bigint[], ${f}::bool[])
             ON CONFLICT (key, window_start) DO UPDATE SET window_end = EXCLUDED.window_end,
             {sets}count = EXCLUDED.count, final = EXCLUDED.final
             WHERE NOT {t}.final OR EXCLUDED.final"
        ))?;
        let checkpoint = client.prepare(
            "INSERT INTO weir_checkpoints (id, data) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, updated_at = now()",
        )?;
        let retract = client.prepare(&format!(
            "DELETE FROM {t} WHERE NOT final AND (key, window_start) IN
             (SELECT * FROM UNNEST($1::text[], $2::bigint[]))"
        ))?;
        Ok(Conn { client, upsert, retract, checkpoint })
    }
}

/// A client for a libpq-style connection string, with a 10 s connect timeout unless it sets one.
pub(crate) fn connect(conninfo: &str) -> Result<Client, SinkError> {
    let mut config: postgres::Config = conninfo.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    Ok(config.connect(NoTls)?)
}

pub(crate) fn load_checkpoint(client: &mut Client, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
    let row = client.query_opt("SELECT data FROM weir_checkpoints WHERE id = $1", &[&id])?;
    Ok(row.map(|r| r.get(0)))
}

pub(crate) fn clear_checkpoints(client: &mut Client, prefix: &str) -> Result<(), SinkError> {
    client.execute("DELETE FROM weir_checkpoints WHERE starts_with(id, $1)", &[&prefix])?;
    Ok(())
}

impl Sink for PostgresSink {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        if !batch.events.is_empty() {
            return Err(SinkError::NeedsWindow);
        }
        let columns = self.columns.len();
        let result = (|| -> Result<(), SinkError> {
            let Conn { client, upsert, retract, checkpoint } = self.conn()?;
            let mut tx = client.transaction()?;
            // One statement per 5,000 rows instead of a round trip per row. A statement may not
            // touch a row twice, so keep one result per (key, window start): the last, but
            // never an early update or a retraction over a final one.
            let mut latest: std::collections::HashMap<(&str, i64), &weir_stream::WindowResult> =
                std::collections::HashMap::with_capacity(batch.results.len());
            for r in batch.results {
                let slot = latest.entry((r.key.as_str(), r.window_start_ms)).or_insert(r);
                if r.is_final() || !slot.is_final() {
                    *slot = r;
                }
            }
            let (retractions, rows): (Vec<&weir_stream::WindowResult>, Vec<_>) =
                latest.into_values().partition(|r| r.is_retraction());
            for chunk in retractions.chunks(5_000) {
                let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
                let starts: Vec<i64> = chunk.iter().map(|r| r.window_start_ms).collect();
                tx.execute(&*retract, &[&keys, &starts])?;
            }
            for chunk in rows.chunks(5_000) {
                let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
                let starts: Vec<i64> = chunk.iter().map(|r| r.window_start_ms).collect();
                let ends: Vec<i64> = chunk.iter().map(|r| r.window_end_ms).collect();
                let values: Vec<Vec<Option<f64>>> =
                    (0..columns).map(|i| chunk.iter().map(|r| crate::sink::aggregate_value(r, i)).collect()).collect();
                let counts: Vec<i64> = chunk.iter().map(|r| r.count as i64).collect();
                let finals: Vec<bool> = chunk.iter().map(|r| r.is_final()).collect();
                let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&keys, &starts, &ends];
                params.extend(values.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)));
                params.push(&counts);
                params.push(&finals);
                tx.execute(&*upsert, &params)?;
            }
            for (id, data) in batch.checkpoints {
                tx.execute(&*checkpoint, &[id, data])?;
            }
            tx.commit()?;
            Ok(())
        })();
        if result.is_err() {
            // Reconnect next time; a failed transaction left nothing behind.
            self.conn = None;
        }
        result
    }

    fn load_checkpoint(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        load_checkpoint(&mut self.conn()?.client, id)
    }

    fn clear_checkpoints(&mut self, prefix: &str) -> Result<(), SinkError> {
        clear_checkpoints(&mut self.conn()?.client, prefix)
    }
}
