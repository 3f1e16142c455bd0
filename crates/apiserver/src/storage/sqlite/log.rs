//! The revision log: schema and every SQL statement of the SQLite backend.
//!
//! One row per change (kine's layout): `id` is the revision, the newest row of a name is the
//! key's current state, and a delete appends a tombstone row (`deleted = 1`) carrying the last
//! value. `sqlite_sequence` holds the store revision (AUTOINCREMENT never reuses an id, even
//! after compaction deleted the newest rows), and `meta` holds the compacted revision.
//!
//! Names are stored as BLOBs so that prefix ranges compare bytes exactly as etcd does.
//! Everything here is synchronous; [`super::SqliteStorage`] runs it on blocking threads.

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::storage::interface::{
    prefix_end, Event, EventType, KeyValue, ListOptions, ListResult, Revision, StorageError,
};

/// Schema, created on open if missing. The store revision starts at 1 as in a fresh etcd, so
/// that no list or write ever reports revision 0 (which the API reserves for "any").
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name BLOB NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'log', 1 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'log');
INSERT OR IGNORE INTO meta (key, value) VALUES ('compact_revision', 0);
";

/// Maps a rusqlite error to [`StorageError::Sqlite`] with what was being done.
pub(super) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StorageError {
    move |source| StorageError::Sqlite { context, source }
}

/// Opens a connection with the pragmas every connection needs (WAL, busy timeout).
pub(super) fn open_connection(path: &std::path::Path) -> Result<Connection, StorageError> {
    let conn = Connection::open(path).map_err(sql("open database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql("set busy timeout"))?;
    // journal_mode answers with a row, so it is read rather than executed.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sql("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::Backend(format!(
            "sqlite refused WAL journal mode (got {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL;")
        .map_err(sql("set synchronous mode"))?;
    // Without the query planner stability guarantee, SQLite marks every `column = ?`
    // parameter as one that may change the plan, and clearing the bindings (which the
    // statement cache does each time a statement goes back) then expires the statement: every
    // cached statement was parsed and planned again on each use.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(sql("enable the query planner stability guarantee"))?;
    Ok(conn)
}

/// Creates the schema if it is missing.
pub(super) fn init_schema(conn: &Connection) -> Result<(), StorageError> {
    conn.execute_batch(SCHEMA).map_err(sql("create schema"))
}

/// One row of the log.
#[derive(Debug)]
pub(super) struct Row {
    pub id: Revision,
    pub name: String,
    pub created: bool,
    pub deleted: bool,
    pub create_revision: Revision,
    pub prev_revision: Revision,
    pub value: Vec<u8>,
}

impl Row {
    /// The key as it is after this row (its value at revision `id`).
    pub fn key_value(&self) -> KeyValue {
        KeyValue {
            key: self.name.clone(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.id,
        }
    }
}

const ROW_COLUMNS: &str = "id, name, created, deleted, create_revision, prev_revision, value";

fn name_from(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
    })
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: row.get(0)?,
        name: name_from(row.get(1)?)?,
        created: row.get(2)?,
        deleted: row.get(3)?,
        create_revision: row.get(4)?,
        prev_revision: row.get(5)?,
        value: row.get(6)?,
    })
}

fn latest_sql() -> String {
    format!("SELECT {ROW_COLUMNS} FROM log WHERE name = ?1 ORDER BY id DESC LIMIT 1")
}

/// The newest row of `key` (which may be a tombstone), if any.
pub(super) fn latest(conn: &Connection, key: &str) -> Result<Option<Row>, StorageError> {
    conn.prepare_cached(&latest_sql())
        .and_then(|mut stmt| stmt.query_row(params![key.as_bytes()], read_row).optional())
        .map_err(sql("read latest row"))
}

/// The store revision: the id of the last row ever written.
pub(super) fn current_revision(conn: &Connection) -> Result<Revision, StorageError> {
    // Cached: every append reads it, and parsing it each time was a tenth of the writer's work.
    conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'log'")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(sql("read current revision"))
}

/// Runs a statement that takes no parameters and answers no rows through the statement cache
/// (`SAVEPOINT`, `RELEASE`: each write runs both).
pub(super) fn execute_cached(conn: &Connection, statement: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.execute([]).map(|_| ())
}

/// What one `wal_checkpoint` did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checkpoint {
    /// Another connection held a lock the checkpoint needed, so it stopped early.
    pub busy: bool,
    /// Pages in the WAL.
    pub wal_pages: i64,
    /// Pages of the WAL now copied into the database file.
    pub copied: i64,
}

/// Runs `PRAGMA wal_checkpoint`: passive (copies what it can without waiting for anyone), or
/// with `restart` also waiting (through the busy handler, holding off writers) until no reader
/// is using the WAL, so that the next write starts it from the beginning. SQLite reports a
/// checkpoint that could not finish in `busy`, not as an error.
pub(super) fn checkpoint(conn: &Connection, restart: bool) -> Result<Checkpoint, StorageError> {
    let statement = if restart {
        "PRAGMA wal_checkpoint(RESTART)"
    } else {
        "PRAGMA wal_checkpoint(PASSIVE)"
    };
    conn.query_row(statement, [], |row| {
        Ok(Checkpoint {
            busy: row.get::<_, i64>(0)? != 0,
            wal_pages: row.get(1)?,
            copied: row.get(2)?,
        })
    })
    .map_err(sql("checkpoint the wal"))
}

/// The compacted revision: history before it is gone.
pub(super) fn compacted_revision(conn: &Connection) -> Result<Revision, StorageError> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'compact_revision'",
        [],
        |row| row.get(0),
    )
    .map_err(sql("read compacted revision"))
}

/// Checks that the store can still be read at `revision`.
fn check_readable(conn: &Connection, revision: Revision) -> Result<Revision, StorageError> {
    let current = current_revision(conn)?;
    if revision > current {
        return Err(StorageError::FutureRevision {
            requested: revision,
            current,
        });
    }
    let compacted = compacted_revision(conn)?;
    if revision < compacted {
        return Err(StorageError::Compacted {
            requested: revision,
            compacted,
        });
    }
    Ok(current)
}

/// The `WHERE` clause and its parameters for names under `prefix` (and after `start_after`).
fn name_range(prefix: &str, start_after: Option<&str>) -> (String, Vec<Vec<u8>>) {
    let mut clause = String::new();
    let mut values = Vec::new();
    match start_after {
        Some(after) if after >= prefix => {
            clause.push_str("name > ?");
            values.push(after.as_bytes().to_vec());
        }
        _ => {
            clause.push_str("name >= ?");
            values.push(prefix.as_bytes().to_vec());
        }
    }
    if let Some(end) = prefix_end(prefix.as_bytes()) {
        clause.push_str(" AND name < ?");
        values.push(end);
    }
    (clause, values)
}

/// The list query over the names matching `range`; its parameters are the range's bounds, the
/// revision and the limit. It walks the `(name, id)` index in name order and keeps each row
/// that is its name's newest at the revision (one index seek each), so `LIMIT` ends the walk
/// early: a page costs its own rows, not the whole range. (Grouping the range by name first
/// materialised and sorted all of it for every page: 300 ms a page at 200,000 events
/// when timed beside this query, which took 2 ms.)
fn list_sql(range: &str) -> String {
    format!(
        "SELECT l.id, l.name, l.create_revision, l.value FROM log AS l \
         WHERE {range} \
         AND l.id = (SELECT MAX(x.id) FROM log AS x WHERE x.name = l.name AND x.id <= ?) \
         AND l.deleted = 0 ORDER BY l.name LIMIT ?"
    )
}

/// Lists live keys under `prefix` at `opts.revision` (or now), inside one read transaction.
pub(super) fn list(
    conn: &mut Connection,
    prefix: &str,
    opts: &ListOptions,
) -> Result<ListResult, StorageError> {
    let tx = conn.transaction().map_err(sql("begin list"))?;
    let revision = match opts.effective_revision() {
        Some(revision) => {
            check_readable(&tx, revision)?;
            revision
        }
        None => current_revision(&tx)?,
    };
    let (range, mut bounds) = name_range(prefix, opts.start_after.as_deref());
    // LIMIT -1 means no limit; one extra row tells whether more follow.
    let limit = opts
        .effective_limit()
        .and_then(|n| i64::try_from(n).ok())
        .map_or(-1, |n| n.saturating_add(1));
    let query = list_sql(&range);
    let mut params: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    for bound in bounds.drain(..) {
        params.push(Box::new(bound));
    }
    params.push(Box::new(revision));
    params.push(Box::new(limit));
    let mut items = {
        let mut stmt = tx.prepare_cached(&query).map_err(sql("prepare list"))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |row| {
                Ok(KeyValue {
                    mod_revision: row.get(0)?,
                    key: name_from(row.get(1)?)?,
                    create_revision: row.get(2)?,
                    value: row.get(3)?,
                })
            })
            .map_err(sql("run list"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(sql("read list rows"))?
    };
    tx.finish().map_err(sql("end list"))?;
    let more = match opts.effective_limit() {
        Some(n) if items.len() > n => {
            items.truncate(n);
            true
        }
        _ => false,
    };
    Ok(ListResult {
        items,
        revision,
        more,
    })
}

/// Counts live keys under `prefix`.
pub(super) fn count(conn: &Connection, prefix: &str) -> Result<i64, StorageError> {
    let (range, bounds) = name_range(prefix, None);
    let query = format!(
        "SELECT COUNT(*) FROM log AS l \
         JOIN (SELECT MAX(id) AS id FROM log WHERE {range} GROUP BY name) AS m \
         ON l.id = m.id WHERE l.deleted = 0"
    );
    conn.prepare_cached(&query)
        .and_then(|mut stmt| {
            stmt.query_row(rusqlite::params_from_iter(bounds.iter()), |row| row.get(0))
        })
        .map_err(sql("count keys"))
}

/// What a write appends.
pub(super) struct Append<'a> {
    pub key: &'a str,
    pub created: bool,
    pub deleted: bool,
    /// `None` for a create: the new row's own revision.
    pub create_revision: Option<Revision>,
    pub prev_revision: Revision,
    pub value: Vec<u8>,
}

/// Appends one row inside the writer's transaction and returns it.
pub(super) fn append(tx: &Transaction<'_>, row: Append<'_>) -> Result<Row, StorageError> {
    // Writers are serialised, so the next id is known before the insert and a create can
    // record its own revision as create_revision in a single statement.
    let id = current_revision(tx)? + 1;
    let create_revision = row.create_revision.unwrap_or(id);
    tx.prepare_cached(
        "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            row.key.as_bytes(),
            row.created,
            row.deleted,
            create_revision,
            row.prev_revision,
            row.value,
        ])
    })
    .map_err(sql("append row"))?;
    Ok(Row {
        id,
        name: row.key.to_string(),
        created: row.created,
        deleted: row.deleted,
        create_revision,
        prev_revision: row.prev_revision,
        value: row.value,
    })
}

/// Turns a row (and the row it replaced, when still kept) into a watch event.
pub(super) fn event_of(row: &Row, prev: Option<KeyValue>) -> Event {
    if row.deleted {
        // A tombstone carries the last value, so prev is known even after compaction.
        let prev = KeyValue {
            key: row.name.clone(),
            value: row.value.clone(),
            create_revision: row.create_revision,
            mod_revision: row.prev_revision,
        };
        Event {
            event_type: EventType::Deleted,
            kv: row.key_value(),
            prev: Some(prev),
        }
    } else if row.created {
        Event {
            event_type: EventType::Added,
            kv: row.key_value(),
            prev: None,
        }
    } else {
        Event {
            event_type: EventType::Modified,
            kv: row.key_value(),
            prev,
        }
    }
}

/// One chunk of a watch replay: see [`events_after`].
pub(super) struct Replay {
    /// Events in revision order.
    pub events: Vec<Event>,
    /// Every event under the prefix up to this revision is in `events`.
    pub covered: Revision,
    /// True when `covered` is the store revision (the replay reached the present); false when
    /// `limit` cut the chunk short and another chunk follows.
    pub complete: bool,
}

/// At most `limit` events under `prefix` with revision > `after`, read in one transaction.
pub(super) fn events_after(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<Replay, StorageError> {
    let tx = conn.transaction().map_err(sql("begin replay"))?;
    let compacted = compacted_revision(&tx)?;
    if after.saturating_add(1) < compacted {
        return Err(StorageError::Compacted {
            requested: after,
            compacted,
        });
    }
    let high = current_revision(&tx)?;
    let (range, bounds) = name_range(prefix, None);
    let range = range.replace("name", "l.name");
    let query = format!(
        "SELECT l.id, l.name, l.created, l.deleted, l.create_revision, l.prev_revision, l.value, \
         p.id, p.create_revision, p.value \
         FROM log AS l LEFT JOIN log AS p ON p.id = l.prev_revision AND p.deleted = 0 \
         WHERE l.id > ? AND l.id <= ? AND {range} ORDER BY l.id LIMIT ?"
    );
    let mut params: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(after), Box::new(high)];
    for bound in bounds {
        params.push(Box::new(bound));
    }
    params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
    let events: Vec<Event> = {
        let mut stmt = tx.prepare_cached(&query).map_err(sql("prepare replay"))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                let row = read_row(r)?;
                let prev_id: Option<Revision> = r.get(7)?;
                let prev = match prev_id {
                    Some(id) => Some(KeyValue {
                        key: row.name.clone(),
                        value: r.get(9)?,
                        create_revision: r.get(8)?,
                        mod_revision: id,
                    }),
                    None => None,
                };
                Ok(event_of(&row, prev))
            })
            .map_err(sql("run replay"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(sql("read replay rows"))?
    };
    tx.finish().map_err(sql("end replay"))?;
    if events.len() >= limit {
        if let Some(last) = events.last() {
            let covered = last.revision();
            return Ok(Replay {
                events,
                covered,
                complete: false,
            });
        }
    }
    Ok(Replay {
        events,
        covered: high,
        complete: true,
    })
}

/// Drops history before `revision` inside the writer's transaction, the store being compacted
/// to `from` already: every row older than `revision` that a newer row (at or before
/// `revision`) supersedes, and every older tombstone. The state at `revision` and every event
/// from `revision` on stay readable.
pub(super) fn compact(
    tx: &Transaction<'_>,
    from: Revision,
    revision: Revision,
) -> Result<usize, StorageError> {
    // A row is superseded once a later row of its name exists at or before `revision`: that is
    // the row whose `prev_revision` names it, so only the rows written since the last
    // compaction (`from`) are read, not every surviving row. Tombstones before `revision` go.
    let superseded = tx
        .execute(
            "DELETE FROM log WHERE id IN (SELECT prev_revision FROM log \
             WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)",
            params![from, revision],
        )
        .map_err(sql("delete compacted rows"))?;
    let tombstones = tx
        .execute(
            "DELETE FROM log WHERE id >= ?1 AND id < ?2 AND deleted = 1",
            params![from, revision],
        )
        .map_err(sql("delete compacted tombstones"))?;
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'compact_revision'",
        params![revision],
    )
    .map_err(sql("record compacted revision"))?;
    Ok(superseded + tombstones)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_page_walks_the_index_in_order_without_sorting_the_range() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let conn = open_connection(&dir.path().join("db"))?;
        init_schema(&conn)?;
        for start_after in [None, Some("/registry/pods/a/b")] {
            let (range, _) = name_range("/registry/pods/", start_after);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", list_sql(&range)))?;
            let unbound = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
            let plan = stmt
                .query_map(rusqlite::params_from_iter(unbound), |row| {
                    row.get::<_, String>(3)
                })?
                .collect::<Result<Vec<_>, _>>()?
                .join("; ");
            assert!(
                plan.contains("USING INDEX log_name_id")
                    && !plan.contains("TEMP B-TREE")
                    && !plan.contains("MATERIALIZE"),
                "plan: {plan}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_cached_statement_is_not_prepared_again_for_new_bindings() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let conn = open_connection(&dir.path().join("db"))?;
        init_schema(&conn)?;
        for key in ["/registry/a", "/registry/b", "/registry/a", "/registry/c"] {
            assert!(latest(&conn, key)?.is_none());
        }
        let stmt = conn.prepare_cached(&latest_sql())?;
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "each new key re-planned the statement"
        );
        Ok(())
    }
}
