//! A session's store in the data dir: whatsapp-rust's SQLite file
//! (`sessions/<id>/whatsapp.db`), read into an image and written from one.
//! The encoded tables go through the library's `SqliteStore` (its own
//! encodings), the plain ones through SQL.

use std::path::Path;

use anyhow::Context as _;
use whatsapp_rust::prelude::SqliteStore;
use whatsapp_rust::store::traits::{AppSyncStore, DeviceStore};

use super::image::StoreImage;
use super::tables::{self, SQLITE_DEVICE, TABLES};

fn utf8(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("store path {} is not UTF-8", path.display()))
}

/// The file as plain SQL, never created: the store must exist.
fn connect(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Everything in the store at `path`. The library opens it first, so a
/// store written by an older version is brought to the current layout, as
/// the engine would at start.
pub async fn read(path: &Path) -> anyhow::Result<StoreImage> {
    let store = SqliteStore::new(utf8(path)?)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the store {}: {e}", path.display()))?;
    let conn = connect(path)?;
    let mut warnings = Vec::new();

    let others: i64 = conn.query_row(
        "SELECT count(*) FROM device WHERE id <> ?1",
        [SQLITE_DEVICE],
        |row| row.get(0),
    )?;
    let mut other_rows = others;
    for table in TABLES {
        other_rows += tables::other_devices_rows(&conn, table)?;
    }
    for table in ["app_state_keys", "app_state_versions"] {
        other_rows += conn.query_row(
            &format!("SELECT count(*) FROM {table} WHERE device_id <> ?1"),
            [SQLITE_DEVICE],
            |row| row.get::<_, i64>(0),
        )?;
    }
    if other_rows > 0 {
        anyhow::bail!(
            "the store holds {other_rows} rows of other devices than device {SQLITE_DEVICE}, \
             which wabridge never writes: not copied, so that none is lost"
        );
    }

    let device = store
        .load()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the device: {e}"))?;

    let key_ids: Vec<Vec<u8>> = conn
        .prepare("SELECT key_id FROM app_state_keys WHERE device_id = ?1 ORDER BY key_id")?
        .query_map([SQLITE_DEVICE], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut app_state_keys = Vec::with_capacity(key_ids.len());
    for key_id in key_ids {
        match store
            .get_sync_key(&key_id)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read an app-state key: {e}"))?
        {
            Some(key) => app_state_keys.push((key_id, key)),
            // The library reads such a row as absent and asks the phone
            // for the key again: copying it would change nothing.
            None => warnings.push(format!(
                "app-state key {} does not decode (the library treats it as absent and \
                 asks the phone again): not copied",
                hex::encode(&key_id)
            )),
        }
    }

    let names: Vec<String> = conn
        .prepare("SELECT name FROM app_state_versions WHERE device_id = ?1 ORDER BY name")?
        .query_map([SQLITE_DEVICE], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut app_state_versions = Vec::with_capacity(names.len());
    for name in names {
        let state = store
            .get_version(&name)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read app-state version {name}: {e}"))?;
        app_state_versions.push((name, state));
    }

    let mut rows = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        rows.push(tables::read_sqlite(&conn, table)?);
    }
    Ok(StoreImage {
        device,
        app_state_keys,
        app_state_versions,
        tables: rows,
        warnings,
    })
}

/// Writes `image` into a new store at `path` (an empty file).
pub async fn write(path: &Path, image: &StoreImage) -> anyhow::Result<()> {
    {
        let store = SqliteStore::new(utf8(path)?)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the store: {e}"))?;
        let fail = |what: &'static str| {
            move |e: whatsapp_rust::store::error::StoreError| {
                anyhow::anyhow!("cannot write {what}: {e}")
            }
        };
        if let Some(device) = &image.device {
            store.create().await.map_err(fail("the device"))?;
            store.save(device).await.map_err(fail("the device"))?;
        }
        for (key_id, key) in &image.app_state_keys {
            store
                .set_sync_key(key_id, key.clone())
                .await
                .map_err(fail("app-state keys"))?;
        }
        for (name, state) in &image.app_state_versions {
            store
                .set_version(name, state.clone())
                .await
                .map_err(fail("app-state versions"))?;
        }
    }
    let mut conn = connect(path)?;
    let tx = conn.transaction()?;
    for (table, rows) in TABLES.iter().zip(&image.tables) {
        tables::write_sqlite(&tx, table, rows)?;
    }
    tx.commit()?;
    Ok(())
}
