//! Database sinks for rows (a SQL pipeline's SELECT list): one table column per output column,
//! rows inserted in the same transaction as the checkpoints that cover them. A restart resumes
//! from the last committed checkpoint, so the rows after it were never committed, and replaying
//! them writes each row once (exactly-once without a key).

use crate::sink::{check_table_name, Batch, Sink, SinkError};
use serde_json::Value;

/// A column's type in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    BigInt,
    Double,
    Text,
    Boolean,
}

impl ColumnType {
    fn sqlite(self) -> &'static str {
        match self {
            ColumnType::BigInt => "INTEGER",
            ColumnType::Double => "REAL",
            ColumnType::Text => "TEXT",
            ColumnType::Boolean => "INTEGER",
        }
    }
    fn postgres(self) -> &'static str {
        match self {
            ColumnType::BigInt => "BIGINT",
            ColumnType::Double => "DOUBLE PRECISION",
            ColumnType::Text => "TEXT",
            ColumnType::Boolean => "BOOLEAN",
        }
    }
}

/// One row's value for a column, checked against its type (never coerced silently).
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

fn cell(v: Option<&Value>, name: &str, ty: ColumnType) -> Result<Cell, SinkError> {
    let bad = |v: &Value| SinkError::Row(format!("column {name} ({ty:?}) cannot hold {v}"));
    Ok(match (v, ty) {
        (None | Some(Value::Null), _) => Cell::Null,
        (Some(Value::Number(n)), ColumnType::BigInt) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Cell::Int(i),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Cell::Int(f as i64),
            _ => return Err(bad(v.unwrap_or(&Value::Null))),
        },
        (Some(Value::Number(n)), ColumnType::Double) => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        (Some(Value::Bool(b)), ColumnType::Boolean) => Cell::Bool(*b),
        (Some(Value::String(s)), ColumnType::Text) => Cell::Text(s.clone()),
        // Nested values (a ROW column) are stored as their JSON text.
        (Some(other @ (Value::Object(_) | Value::Array(_))), ColumnType::Text) => Cell::Text(other.to_string()),
        (Some(other), _) => return Err(bad(other)),
    })
}

fn cells(batch: &Batch<'_>, columns: &[(String, ColumnType)]) -> Result<Vec<Vec<Cell>>, SinkError> {
    if !batch.results.is_empty() {
        return Err(SinkError::Row("a row sink got window results".into()));
    }
    batch
        .events
        .iter()
        .map(|ev| {
            let Value::Object(m) = &ev.value else {
                return Err(SinkError::Row(format!("a row is a JSON object, not {}", ev.value)));
            };
            columns.iter().map(|(n, t)| cell(m.get(n), n, *t)).collect()
        })
        .collect()
}

fn check(table: &str, columns: &[(String, ColumnType)]) -> Result<(), SinkError> {
    check_table_name(table)?;
    if columns.is_empty() {
        return Err(SinkError::Row("a row sink needs columns".into()));
    }
    for (c, _) in columns {
        check_table_name(c).map_err(|_| SinkError::ColumnName(c.clone()))?;
    }
    Ok(())
}

/// Rows into a SQLite table (created if missing), checkpoints in `weir_checkpoints`.
pub struct SqliteRows {
    conn: rusqlite::Connection,
    insert: String,
    columns: Vec<(String, ColumnType)>,
}

impl SqliteRows {
    pub fn open(path: &std::path::Path, table: &str, columns: &[(String, ColumnType)]) -> Result<Self, SinkError> {
        check(table, columns)?;
        let defs: Vec<String> = columns.iter().map(|(c, t)| format!("{c} {}", t.sqlite())).collect();
        let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let setup = format!(
            "CREATE TABLE IF NOT EXISTS {table} ({});
             CREATE TABLE IF NOT EXISTS weir_checkpoints (id TEXT PRIMARY KEY, data BLOB NOT NULL);",
            defs.join(", ")
        );
        let conn = crate::sqlite::open_wal(path, &setup)?;
        let insert = format!("INSERT INTO {table} ({}) VALUES ({})", names.join(", "), marks.join(", "));
        Ok(Self { conn, insert, columns: columns.to_vec() })
    }
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as V};
        Ok(ToSqlOutput::Owned(match self {
            Cell::Null => V::Null,
            Cell::Int(i) => V::Integer(*i),
            Cell::Float(f) => V::Real(*f),
            Cell::Text(s) => V::Text(s.clone()),
            Cell::Bool(b) => V::Integer(i64::from(*b)),
        }))
    }
}

impl Sink for SqliteRows {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let rows = cells(batch, &self.columns)?;
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&self.insert)?;
            for row in &rows {
                stmt.execute(rusqlite::params_from_iter(row.iter()))?;
            }
            crate::sqlite::store_checkpoints(&tx, batch.checkpoints)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn load_checkpoint(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        crate::sqlite::load_checkpoint(&self.conn, id)
    }

    fn clear_checkpoints(&mut self, prefix: &str) -> Result<(), SinkError> {
        crate::sqlite::clear_checkpoints(&self.conn, prefix)
    }
}

/// Rows into a PostgreSQL table (created if missing), checkpoints in `weir_checkpoints`; one
/// statement per 5,000 rows (arrays unnested server-side). A broken connection is re-opened
/// on the next write.
pub struct PostgresRows {
    conninfo: String,
    table: String,
    columns: Vec<(String, ColumnType)>,
    conn: Option<(postgres::Client, postgres::Statement, postgres::Statement)>,
}

impl PostgresRows {
    pub fn open(conninfo: &str, table: &str, columns: &[(String, ColumnType)]) -> Result<Self, SinkError> {
        check(table, columns)?;
        let mut s =
            Self { conninfo: conninfo.to_owned(), table: table.to_owned(), columns: columns.to_vec(), conn: None };
        s.connect()?;
        Ok(s)
    }

    fn connect(&mut self) -> Result<(), SinkError> {
        if self.conn.as_ref().is_some_and(|(c, _, _)| !c.is_closed()) {
            return Ok(());
        }
        let mut client = crate::postgres::connect(&self.conninfo)?;
        let t = &self.table;
        let defs: Vec<String> = self.columns.iter().map(|(c, ty)| format!("{c} {}", ty.postgres())).collect();
        client.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(7010656);
             CREATE TABLE IF NOT EXISTS {t} ({});
             CREATE TABLE IF NOT EXISTS weir_checkpoints (id TEXT PRIMARY KEY, data BYTEA NOT NULL,
                 updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
             COMMIT;",
            defs.join(", ")
        ))?;
        let names: Vec<&str> = self.columns.iter().map(|(c, _)| c.as_str()).collect();
        let arrays: Vec<String> =
            self.columns.iter().enumerate().map(|(i, (_, ty))| format!("${}::{}[]", i + 1, ty.postgres())).collect();
        let insert = client.prepare(&format!(
            "INSERT INTO {t} ({}) SELECT * FROM UNNEST({})",
            names.join(", "),
            arrays.join(", ")
        ))?;
        let checkpoint = client.prepare(
            "INSERT INTO weir_checkpoints (id, data) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, updated_at = now()",
        )?;
        self.conn = Some((client, insert, checkpoint));
        Ok(())
    }
}

/// One column of a chunk of rows, as the array PostgreSQL unnests.
enum Array {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
}

impl Array {
    fn of(rows: &[Vec<Cell>], i: usize, ty: ColumnType) -> Array {
        let col = rows.iter().map(|r| &r[i]);
        match ty {
            ColumnType::BigInt => Array::Int(col.map(|c| if let Cell::Int(v) = c { Some(*v) } else { None }).collect()),
            ColumnType::Double => {
                Array::Float(col.map(|c| if let Cell::Float(v) = c { Some(*v) } else { None }).collect())
            }
            ColumnType::Text => {
                Array::Text(col.map(|c| if let Cell::Text(v) = c { Some(v.clone()) } else { None }).collect())
            }
            ColumnType::Boolean => {
                Array::Bool(col.map(|c| if let Cell::Bool(v) = c { Some(*v) } else { None }).collect())
            }
        }
    }
    fn sql(&self) -> &(dyn postgres::types::ToSql + Sync) {
        match self {
            Array::Int(v) => v,
            Array::Float(v) => v,
            Array::Text(v) => v,
            Array::Bool(v) => v,
        }
    }
}

impl Sink for PostgresRows {
    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let rows = cells(batch, &self.columns)?;
        let result = (|| -> Result<(), SinkError> {
            self.connect()?;
            let columns = self.columns.clone();
            let Some((client, insert, checkpoint)) = self.conn.as_mut() else { return Ok(()) };
            let mut tx = client.transaction()?;
            for chunk in rows.chunks(5_000) {
                let arrays: Vec<Array> =
                    columns.iter().enumerate().map(|(i, (_, t))| Array::of(chunk, i, *t)).collect();
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = arrays.iter().map(Array::sql).collect();
                tx.execute(&*insert, &params)?;
            }
            for (id, data) in batch.checkpoints {
                tx.execute(&*checkpoint, &[id, data])?;
            }
            tx.commit()?;
            Ok(())
        })();
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn load_checkpoint(&mut self, id: &str) -> Result<Option<Vec<u8>>, SinkError> {
        self.connect()?;
        let Some((client, _, _)) = self.conn.as_mut() else { return Ok(None) };
        crate::postgres::load_checkpoint(client, id)
    }

    fn clear_checkpoints(&mut self, prefix: &str) -> Result<(), SinkError> {
        self.connect()?;
        let Some((client, _, _)) = self.conn.as_mut() else { return Ok(()) };
        crate::postgres::clear_checkpoints(client, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_stream::event::Event;

    #[test]
    fn sqlite_rows_and_checkpoints_commit_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let cols = vec![
            ("a".to_owned(), ColumnType::BigInt),
            ("b".to_owned(), ColumnType::Double),
            ("c".to_owned(), ColumnType::Text),
            ("d".to_owned(), ColumnType::Boolean),
        ];
        let mut s = SqliteRows::open(&path, "out", &cols).expect("opens");
        let events = vec![
            Event::new(None, serde_json::json!({"a": 1, "b": 2, "c": "x", "d": true}), 0),
            Event::new(None, serde_json::json!({"a": 3.0, "b": null, "c": {"n": 1}}), 0),
        ];
        let cps = vec![("p/0".to_owned(), vec![1u8, 2])];
        s.write(&Batch { events: &events, checkpoints: &cps, ..Batch::default() }).expect("writes");
        assert_eq!(s.load_checkpoint("p/0").expect("loads"), Some(vec![1, 2]));
        let rows: Vec<(i64, Option<f64>, String, Option<i64>)> = s
            .conn
            .prepare("SELECT a, b, c, d FROM out ORDER BY a")
            .expect("prepares")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("queries")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(rows, vec![(1, Some(2.0), "x".into(), Some(1)), (3, None, "{\"n\":1}".into(), None)]);
        // A value of the wrong type is refused, not coerced; nothing of the batch is written.
        let bad = vec![Event::new(None, serde_json::json!({"a": "seven"}), 0)];
        let e = s.write(&Batch { events: &bad, ..Batch::default() }).expect_err("refused");
        assert!(e.to_string().contains("column a"), "{e}");
        let n: i64 = s.conn.query_row("SELECT count(*) FROM out", [], |r| r.get(0)).expect("counts");
        assert_eq!(n, 2);
    }
}
