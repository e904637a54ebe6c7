//! Writes a converted session into a fresh whatsapp-rust SqliteStore, the
//! same file the engine opens (`sessions/<id>/whatsapp.db`).

use std::path::Path;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::prelude::SqliteStore;
use whatsapp_rust::store::traits::{AppSyncStore, DeviceStore, ProtocolStore, SignalStore};

use super::convert::Prepared;

pub async fn write(prepared: &Prepared, db: &Path) -> Result<(), String> {
    let path = db
        .to_str()
        .ok_or_else(|| format!("store path {} is not UTF-8", db.display()))?;
    let store = SqliteStore::new(path)
        .await
        .map_err(|e| format!("cannot create the store: {e}"))?;
    let fail = |what: &'static str| {
        move |e: whatsapp_rust::store::error::StoreError| format!("cannot write {what}: {e}")
    };
    store.create().await.map_err(fail("the device"))?;
    store
        .save(&prepared.device)
        .await
        .map_err(fail("the device"))?;

    store
        .put_sessions_batch(&prepared.sessions)
        .await
        .map_err(fail("sessions"))?;
    store
        .put_identities_batch(&prepared.identities)
        .await
        .map_err(fail("identities"))?;
    for uploaded in [true, false] {
        let keys: Vec<(u32, Bytes)> = prepared
            .pre_keys
            .iter()
            .filter(|(_, _, up)| *up == uploaded)
            .map(|(id, record, _)| (*id, record.clone()))
            .collect();
        store
            .store_prekeys_batch(&keys, uploaded)
            .await
            .map_err(fail("pre-keys"))?;
    }
    store
        .put_sender_keys_batch(&prepared.sender_keys)
        .await
        .map_err(fail("sender keys"))?;
    store
        .put_lid_mappings(&prepared.lid_mappings)
        .await
        .map_err(fail("LID mappings"))?;
    for (id, key) in &prepared.sync_keys {
        store
            .set_sync_key(id, key.clone())
            .await
            .map_err(fail("app-state keys"))?;
    }
    for (user, entry) in &prepared.tc_tokens {
        store
            .put_tc_token(user, entry)
            .await
            .map_err(fail("tc-tokens"))?;
    }
    Ok(())
}
