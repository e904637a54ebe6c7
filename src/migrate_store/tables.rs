//! The tables of whatsapp-rust's store that hold plain values. They have
//! the same columns under the same names in the library's SQLite file
//! (rows of device 1, the one device a wabridge store holds) and in
//! `pg_store`'s schema (rows keyed by `session`), so they copy cell by cell
//! without the library. The three whose values each store encodes its own
//! way (the device, app-state keys and collection versions) go through the
//! library instead (`image.rs`).

use anyhow::Context as _;
use tokio_postgres::types::ToSql;

/// The device id of every row in a wabridge session's SQLite store: the
/// library's default, the one `SqliteStore::new` reads and writes.
pub const SQLITE_DEVICE: i64 = 1;

/// Rows per INSERT into PostgreSQL: big tables (pre-keys, tombstones) go in
/// a few statements, each small enough for the server's parameter limits.
const PG_CHUNK: usize = 5_000;

/// What a column holds, as both stores type it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    OptText,
    Bytes,
    /// `integer` in PostgreSQL.
    Int,
    /// `bigint` in PostgreSQL.
    BigInt,
    OptBigInt,
    /// `boolean` in PostgreSQL, 0/1 in SQLite.
    Bool,
}

impl Kind {
    fn pg_array(self) -> &'static str {
        match self {
            Kind::Text | Kind::OptText => "text[]",
            Kind::Bytes => "bytea[]",
            Kind::Int => "integer[]",
            Kind::BigInt | Kind::OptBigInt => "bigint[]",
            Kind::Bool => "boolean[]",
        }
    }
}

/// One table in both stores.
#[derive(Debug)]
pub struct Table {
    /// Its name in reports.
    pub name: &'static str,
    pub sqlite: &'static str,
    pub pg: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

use Kind::*;

/// Every plain table; with `wa_device`, `wa_app_state_keys` and
/// `wa_app_state_versions` these are all of `pg_store::SESSION_TABLES`
/// (a unit test keeps it so).
pub const TABLES: &[Table] = &[
    Table {
        name: "identities",
        sqlite: "identities",
        pg: "wa_identities",
        columns: &[("address", Text), ("key", Bytes)],
    },
    Table {
        name: "signal_sessions",
        sqlite: "sessions",
        pg: "wa_sessions",
        columns: &[("address", Text), ("record", Bytes)],
    },
    Table {
        name: "prekeys",
        sqlite: "prekeys",
        pg: "wa_prekeys",
        columns: &[("id", Int), ("key", Bytes), ("uploaded", Bool)],
    },
    Table {
        name: "signed_prekeys",
        sqlite: "signed_prekeys",
        pg: "wa_signed_prekeys",
        columns: &[("id", Int), ("record", Bytes)],
    },
    Table {
        name: "sender_keys",
        sqlite: "sender_keys",
        pg: "wa_sender_keys",
        columns: &[("address", Text), ("record", Bytes)],
    },
    Table {
        name: "app_state_mutation_macs",
        sqlite: "app_state_mutation_macs",
        pg: "wa_app_state_mutation_macs",
        columns: &[
            ("name", Text),
            ("index_mac", Bytes),
            ("version", BigInt),
            ("value_mac", Bytes),
        ],
    },
    Table {
        name: "sender_key_devices",
        sqlite: "sender_key_devices",
        pg: "wa_sender_key_devices",
        columns: &[
            ("group_jid", Text),
            ("device_jid", Text),
            ("has_key", Bool),
            ("updated_at", BigInt),
        ],
    },
    Table {
        name: "lid_pn_mappings",
        sqlite: "lid_pn_mapping",
        pg: "wa_lid_pn_mapping",
        columns: &[
            ("lid", Text),
            ("phone_number", Text),
            ("created_at", BigInt),
            ("learning_source", Text),
            ("updated_at", BigInt),
        ],
    },
    Table {
        name: "base_keys",
        sqlite: "base_keys",
        pg: "wa_base_keys",
        columns: &[
            ("address", Text),
            ("message_id", Text),
            ("base_key", Bytes),
            ("created_at", BigInt),
        ],
    },
    Table {
        name: "device_lists",
        sqlite: "device_registry",
        pg: "wa_device_registry",
        columns: &[
            ("user_id", Text),
            ("devices_json", Text),
            ("timestamp", BigInt),
            ("phash", OptText),
            ("raw_id", OptBigInt),
            ("updated_at", BigInt),
        ],
    },
    Table {
        name: "group_metadata",
        sqlite: "group_metadata",
        pg: "wa_group_metadata",
        columns: &[("group_jid", Text), ("info", Bytes), ("updated_at", BigInt)],
    },
    Table {
        name: "tc_tokens",
        sqlite: "tc_tokens",
        pg: "wa_tc_tokens",
        columns: &[
            ("jid", Text),
            ("token", Bytes),
            ("token_timestamp", BigInt),
            ("sender_timestamp", OptBigInt),
            ("updated_at", BigInt),
        ],
    },
    Table {
        name: "sent_messages",
        sqlite: "sent_messages",
        pg: "wa_sent_messages",
        columns: &[
            ("chat_jid", Text),
            ("message_id", Text),
            ("payload", Bytes),
            ("created_at", BigInt),
        ],
    },
    Table {
        name: "pending_inbound",
        sqlite: "pending_inbound_messages",
        pg: "wa_pending_inbound",
        columns: &[
            ("chat", Text),
            ("sender", Text),
            ("id", Text),
            ("message", Bytes),
            ("inserted_at", BigInt),
        ],
    },
    Table {
        name: "message_secrets",
        sqlite: "msg_secrets",
        pg: "wa_msg_secrets",
        columns: &[
            ("chat", Text),
            ("sender", Text),
            ("msg_id", Text),
            ("secret", Bytes),
            ("created_at", BigInt),
            ("expires_at", BigInt),
            ("message_ts", BigInt),
        ],
    },
];

/// One value, in neither store's types. Ordered, so that two copies of a
/// table compare as sorted lists of rows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

pub type Rows = Vec<Vec<Cell>>;

impl Table {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every row of `table` in a session's SQLite store, sorted.
pub fn read_sqlite(conn: &rusqlite::Connection, table: &Table) -> anyhow::Result<Rows> {
    let sql = format!(
        "SELECT {} FROM {} WHERE device_id = ?1",
        table.column_list(),
        table.sqlite
    );
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement
        .query_map([SQLITE_DEVICE], |row| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| sqlite_cell(row, i, *kind))
                .collect::<rusqlite::Result<Vec<Cell>>>()
        })?
        .collect::<rusqlite::Result<Rows>>()
        .with_context(|| format!("reading {}", table.sqlite))?;
    rows.sort();
    Ok(rows)
}

fn sqlite_cell(row: &rusqlite::Row<'_>, i: usize, kind: Kind) -> rusqlite::Result<Cell> {
    Ok(match kind {
        Text => Cell::Text(row.get(i)?),
        OptText => row
            .get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text),
        Bytes => Cell::Bytes(row.get(i)?),
        Int | BigInt => Cell::Int(row.get(i)?),
        OptBigInt => row.get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int),
        Bool => Cell::Bool(row.get::<_, i64>(i)? != 0),
    })
}

/// Rows of a table in a SQLite store that belong to another device than
/// [`SQLITE_DEVICE`] (none in a store wabridge wrote).
pub fn other_devices_rows(conn: &rusqlite::Connection, table: &Table) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE device_id <> ?1",
        table.sqlite
    );
    Ok(conn.query_row(&sql, [SQLITE_DEVICE], |row| row.get(0))?)
}

/// Inserts `rows` into `table` of a SQLite store, as device 1.
pub fn write_sqlite(
    tx: &rusqlite::Transaction<'_>,
    table: &Table,
    rows: &Rows,
) -> anyhow::Result<()> {
    let placeholders: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}, device_id) VALUES ({}, {SQLITE_DEVICE})",
        table.sqlite,
        table.column_list(),
        placeholders.join(", ")
    );
    let mut statement = tx.prepare(&sql)?;
    for row in rows {
        statement
            .execute(rusqlite::params_from_iter(row.iter().map(sqlite_value)))
            .with_context(|| format!("writing {}", table.sqlite))?;
    }
    Ok(())
}

fn sqlite_value(cell: &Cell) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match cell {
        Cell::Null => Value::Null,
        Cell::Bool(b) => Value::Integer(i64::from(*b)),
        Cell::Int(n) => Value::Integer(*n),
        Cell::Text(s) => Value::Text(s.clone()),
        Cell::Bytes(b) => Value::Blob(b.clone()),
    }
}

/// Every row of `table` for `session` in PostgreSQL, sorted.
pub async fn read_pg(
    client: &tokio_postgres::Transaction<'_>,
    table: &Table,
    session: &str,
) -> anyhow::Result<Rows> {
    let sql = format!(
        "SELECT {} FROM {} WHERE session = $1",
        table.column_list(),
        table.pg
    );
    let mut rows = client
        .query(&sql, &[&session])
        .await
        .with_context(|| format!("reading {}", table.pg))?
        .iter()
        .map(|row| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| pg_cell(row, i, *kind))
                .collect::<Result<Vec<Cell>, tokio_postgres::Error>>()
        })
        .collect::<Result<Rows, _>>()
        .with_context(|| format!("reading {}", table.pg))?;
    rows.sort();
    Ok(rows)
}

fn pg_cell(row: &tokio_postgres::Row, i: usize, kind: Kind) -> Result<Cell, tokio_postgres::Error> {
    Ok(match kind {
        Text => Cell::Text(row.try_get(i)?),
        OptText => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text),
        Bytes => Cell::Bytes(row.try_get(i)?),
        Int => Cell::Int(i64::from(row.try_get::<_, i32>(i)?)),
        BigInt => Cell::Int(row.try_get(i)?),
        OptBigInt => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Cell::Null, Cell::Int),
        Bool => Cell::Bool(row.try_get(i)?),
    })
}

/// One column of a batch, as the array PostgreSQL's `unnest` takes.
enum Column {
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
    Bytes(Vec<Vec<u8>>),
    Int(Vec<i32>),
    BigInt(Vec<i64>),
    OptBigInt(Vec<Option<i64>>),
    Bool(Vec<bool>),
}

impl Column {
    fn new(kind: Kind, rows: usize) -> Column {
        match kind {
            Text => Column::Text(Vec::with_capacity(rows)),
            OptText => Column::OptText(Vec::with_capacity(rows)),
            Bytes => Column::Bytes(Vec::with_capacity(rows)),
            Int => Column::Int(Vec::with_capacity(rows)),
            BigInt => Column::BigInt(Vec::with_capacity(rows)),
            OptBigInt => Column::OptBigInt(Vec::with_capacity(rows)),
            Bool => Column::Bool(Vec::with_capacity(rows)),
        }
    }

    /// Appends `cell`; an error when it is not what the column holds.
    fn push(&mut self, cell: &Cell) -> anyhow::Result<()> {
        match (self, cell) {
            (Column::Text(v), Cell::Text(s)) => v.push(s.clone()),
            (Column::OptText(v), Cell::Text(s)) => v.push(Some(s.clone())),
            (Column::OptText(v), Cell::Null) => v.push(None),
            (Column::Bytes(v), Cell::Bytes(b)) => v.push(b.clone()),
            (Column::Int(v), Cell::Int(n)) => v.push(
                i32::try_from(*n).with_context(|| format!("{n} does not fit an integer column"))?,
            ),
            (Column::BigInt(v), Cell::Int(n)) => v.push(*n),
            (Column::OptBigInt(v), Cell::Int(n)) => v.push(Some(*n)),
            (Column::OptBigInt(v), Cell::Null) => v.push(None),
            (Column::Bool(v), Cell::Bool(b)) => v.push(*b),
            (_, cell) => anyhow::bail!("a value of the wrong type: {cell:?}"),
        }
        Ok(())
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Text(v) => v,
            Column::OptText(v) => v,
            Column::Bytes(v) => v,
            Column::Int(v) => v,
            Column::BigInt(v) => v,
            Column::OptBigInt(v) => v,
            Column::Bool(v) => v,
        }
    }
}

/// Inserts `rows` into `table` for `session`, inside the caller's
/// transaction.
pub async fn write_pg(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    session: &str,
    rows: &Rows,
) -> anyhow::Result<()> {
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("${}::{}", i + 2, kind.pg_array()))
        .collect();
    let sql = format!(
        "INSERT INTO {} (session, {}) SELECT $1, * FROM unnest({})",
        table.pg,
        table.column_list(),
        arrays.join(", ")
    );
    for chunk in rows.chunks(PG_CHUNK) {
        let mut columns: Vec<Column> = table
            .columns
            .iter()
            .map(|(_, kind)| Column::new(*kind, chunk.len()))
            .collect();
        for row in chunk {
            for ((column, cell), (name, _)) in columns.iter_mut().zip(row).zip(table.columns) {
                column
                    .push(cell)
                    .with_context(|| format!("{}.{name}", table.pg))?;
            }
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&session];
        params.extend(columns.iter().map(Column::param));
        tx.execute(&sql, &params)
            .await
            .with_context(|| format!("writing {}", table.pg))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::whatsapp::pg_store::SESSION_TABLES;

    /// A table added to `pg_store` must be added here (or to the tables
    /// the library encodes), or a migration would leave it behind.
    #[test]
    fn the_tables_are_every_table_of_the_store() {
        let mut covered: Vec<&str> = TABLES.iter().map(|t| t.pg).collect();
        covered.extend(super::super::image::ENCODED_TABLES);
        covered.sort();
        let mut all = SESSION_TABLES.to_vec();
        all.sort();
        assert_eq!(covered, all);
    }
}
