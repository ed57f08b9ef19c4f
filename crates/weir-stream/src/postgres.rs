//! PostgreSQL sink: window results upserted by (key, window start) in one transaction per
//! flush, together with the checkpoints (table `weir_checkpoints`). Replaying results after a
//! crash overwrites rows, never duplicates them; an early update never overwrites a final row.
//! A broken connection is re-opened on the next write.

use crate::sink::{check_table_name, Batch, Sink, SinkError};
use postgres::{Client, NoTls};

pub struct PostgresSink {
    conninfo: String,
    table: String,
    client: Option<Client>,
}

impl PostgresSink {
    /// Connects (with a 10 s connect timeout unless the conninfo sets one) and creates the
    /// tables.
    pub fn open(conninfo: &str, table: &str) -> Result<Self, SinkError> {
        check_table_name(table)?;
        let mut s = Self { conninfo: conninfo.to_owned(), table: table.to_owned(), client: None };
        s.client()?;
        Ok(s)
    }

    fn client(&mut self) -> Result<&mut Client, SinkError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let mut config: postgres::Config = self.conninfo.parse()?;
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(std::time::Duration::from_secs(10));
            }
            let mut client = config.connect(NoTls)?;
            let t = &self.table;
            // The lock makes concurrent instances' CREATE TABLE IF NOT EXISTS safe (they race
            // on the catalog otherwise).
            client.batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(7010656);
                 CREATE TABLE IF NOT EXISTS {t} (
                     key TEXT NOT NULL, window_start BIGINT NOT NULL, window_end BIGINT NOT NULL,
                     value DOUBLE PRECISION NOT NULL, count BIGINT NOT NULL, final BOOLEAN NOT NULL DEFAULT true,
                     PRIMARY KEY (key, window_start));
                 CREATE TABLE IF NOT EXISTS weir_checkpoints (id TEXT PRIMARY KEY, data BYTEA NOT NULL,
                     updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 COMMIT;"
            ))?;
            self.client = Some(client);
        }
        self.client.as_mut().ok_or_else(|| SinkError::Kafka("unreachable: client just set".into()))
    }
}

impl Sink for PostgresSink {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        if !batch.events.is_empty() {
            return Err(SinkError::NeedsWindow);
        }
        let t = self.table.clone();
        let result = (|| -> Result<(), SinkError> {
            let client = self.client()?;
            let mut tx = client.transaction()?;
            let upsert = tx.prepare(&format!(
                "INSERT INTO {t} (key, window_start, window_end, value, count, final) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (key, window_start) DO UPDATE SET window_end = EXCLUDED.window_end,
                 value = EXCLUDED.value, count = EXCLUDED.count, final = EXCLUDED.final
                 WHERE NOT {t}.final OR EXCLUDED.final"
            ))?;
            for r in batch.results {
                tx.execute(
                    &upsert,
                    &[&r.key, &r.window_start_ms, &r.window_end_ms, &r.value, &(r.count as i64), &r.is_final],
                )?;
            }
            if !batch.checkpoints.is_empty() {
                let cp = tx.prepare(
                    "INSERT INTO weir_checkpoints (id, data) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, updated_at = now()",
                )?;
                for (id, data) in batch.checkpoints {
                    tx.execute(&cp, &[id, data])?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        if result.is_err() {
            // Reconnect next time; a failed transaction left nothing behind.
            self.client = None;
        }
        result
    }

    fn load_checkpoint(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        let row = self.client()?.query_opt("SELECT data FROM weir_checkpoints WHERE id = $1", &[&id])?;
        Ok(row.map(|r| r.get(0)))
    }

    fn clear_checkpoints(&mut self, prefix: &str) -> Result<(), SinkError> {
        self.client()?.execute("DELETE FROM weir_checkpoints WHERE starts_with(id, $1)", &[&prefix])?;
        Ok(())
    }
}
