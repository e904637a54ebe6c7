//! Signal state: identities, sessions, pre-keys, signed pre-keys, sender
//! keys.

use std::sync::Arc;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::error::StoreError;
use whatsapp_rust::store::traits::SignalStore;

use super::{PgStore, Result, last_per_key};

/// `LIKE` patterns for a user's addresses: `user@…` (device 0) and
/// `user:dev@…`.
fn user_patterns(user: &str) -> (String, String) {
    let escaped = user
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    (format!("{escaped}@%"), format!("{escaped}:%"))
}

#[whatsapp_rust::async_trait]
impl SignalStore for PgStore {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.write(
            "INSERT INTO wa_identities (session, address, key) VALUES ($1, $2, $3)
             ON CONFLICT (session, address) DO UPDATE SET key = excluded.key",
            &[&&*self.session, &address, &&key[..]],
        )
        .await?;
        Ok(())
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        if identities.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(identities, |(address, _)| address.clone());
        let addresses: Vec<&str> = rows.iter().map(|(a, _)| &**a).collect();
        let keys: Vec<&[u8]> = rows.iter().map(|(_, k)| &k[..]).collect();
        self.write(
            "INSERT INTO wa_identities (session, address, key)
             SELECT $1, a, k FROM unnest($2::text[], $3::bytea[]) AS t(a, k)
             ON CONFLICT (session, address) DO UPDATE SET key = excluded.key",
            &[&&*self.session, &addresses, &keys],
        )
        .await?;
        Ok(())
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        let row = self
            .read_opt(
                "SELECT key FROM wa_identities WHERE session = $1 AND address = $2",
                &[&&*self.session, &address],
            )
            .await?;
        row.map(|row| {
            let key: Vec<u8> = row.get(0);
            <[u8; 32]>::try_from(key.as_slice()).map_err(|_| {
                StoreError::Validation(format!("identity key of {address} is {} bytes", key.len()))
            })
        })
        .transpose()
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_identities WHERE session = $1 AND address = $2",
            &[&&*self.session, &address],
        )
        .await?;
        Ok(())
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        let row = self
            .read_opt(
                "SELECT record FROM wa_sessions WHERE session = $1 AND address = $2",
                &[&&*self.session, &address],
            )
            .await?;
        Ok(row.map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.write(
            "INSERT INTO wa_sessions (session, address, record) VALUES ($1, $2, $3)
             ON CONFLICT (session, address) DO UPDATE SET record = excluded.record",
            &[&&*self.session, &address, &session],
        )
        .await?;
        Ok(())
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(sessions, |(address, _)| address.clone());
        let addresses: Vec<&str> = rows.iter().map(|(a, _)| &**a).collect();
        let records: Vec<&[u8]> = rows.iter().map(|(_, r)| &r[..]).collect();
        self.write(
            "INSERT INTO wa_sessions (session, address, record)
             SELECT $1, a, r FROM unnest($2::text[], $3::bytea[]) AS t(a, r)
             ON CONFLICT (session, address) DO UPDATE SET record = excluded.record",
            &[&&*self.session, &addresses, &records],
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_sessions WHERE session = $1 AND address = $2",
            &[&&*self.session, &address],
        )
        .await?;
        Ok(())
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        let row = self
            .read_opt(
                "SELECT 1 FROM wa_sessions WHERE session = $1 AND address = $2",
                &[&&*self.session, &address],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        let (at, dev) = user_patterns(user);
        let row = self
            .read_opt(
                "SELECT EXISTS (SELECT 1 FROM wa_sessions
                                WHERE session = $1 AND (address LIKE $2 OR address LIKE $3))
                     OR EXISTS (SELECT 1 FROM wa_identities
                                WHERE session = $1 AND (address LIKE $2 OR address LIKE $3))",
                &[&&*self.session, &at, &dev],
            )
            .await?;
        Ok(row.is_some_and(|row| row.get(0)))
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.write(
            "INSERT INTO wa_prekeys (session, id, key, uploaded) VALUES ($1, $2, $3, $4)
             ON CONFLICT (session, id) DO UPDATE SET key = excluded.key, uploaded = excluded.uploaded",
            &[&&*self.session, &(id as i32), &record, &uploaded],
        )
        .await?;
        Ok(())
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(keys, |(id, _)| *id);
        let ids: Vec<i32> = rows.iter().map(|(id, _)| *id as i32).collect();
        let records: Vec<&[u8]> = rows.iter().map(|(_, r)| &r[..]).collect();
        self.write(
            "INSERT INTO wa_prekeys (session, id, key, uploaded)
             SELECT $1, i, k, $4 FROM unnest($2::integer[], $3::bytea[]) AS t(i, k)
             ON CONFLICT (session, id) DO UPDATE SET key = excluded.key, uploaded = excluded.uploaded",
            &[&&*self.session, &ids, &records, &uploaded],
        )
        .await?;
        Ok(())
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        let row = self
            .read_opt(
                "SELECT key FROM wa_prekeys WHERE session = $1 AND id = $2",
                &[&&*self.session, &(id as i32)],
            )
            .await?;
        Ok(row.map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
        let rows = self
            .read_all(
                "SELECT id, key FROM wa_prekeys WHERE session = $1 AND id = ANY($2)",
                &[&&*self.session, &ids],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.get::<_, i32>(0) as u32,
                    Bytes::from(row.get::<_, Vec<u8>>(1)),
                )
            })
            .collect())
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // UPDATE, never an upsert: a key consumed meanwhile stays deleted.
        let ids: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
        self.write(
            "UPDATE wa_prekeys SET uploaded = true WHERE session = $1 AND id = ANY($2)",
            &[&&*self.session, &ids],
        )
        .await?;
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.write(
            "DELETE FROM wa_prekeys WHERE session = $1 AND id = $2",
            &[&&*self.session, &(id as i32)],
        )
        .await?;
        Ok(())
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let row = self
            .read_opt(
                "SELECT coalesce(max(id), 0) FROM wa_prekeys WHERE session = $1",
                &[&&*self.session],
            )
            .await?;
        Ok(row.map_or(0, |row| row.get::<_, i32>(0) as u32))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.write(
            "INSERT INTO wa_signed_prekeys (session, id, record) VALUES ($1, $2, $3)
             ON CONFLICT (session, id) DO UPDATE SET record = excluded.record",
            &[&&*self.session, &(id as i32), &record],
        )
        .await?;
        Ok(())
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        let row = self
            .read_opt(
                "SELECT record FROM wa_signed_prekeys WHERE session = $1 AND id = $2",
                &[&&*self.session, &(id as i32)],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let rows = self
            .read_all(
                "SELECT id, record FROM wa_signed_prekeys WHERE session = $1 ORDER BY id",
                &[&&*self.session],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get::<_, i32>(0) as u32, row.get(1)))
            .collect())
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.write(
            "DELETE FROM wa_signed_prekeys WHERE session = $1 AND id = $2",
            &[&&*self.session, &(id as i32)],
        )
        .await?;
        Ok(())
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.write(
            "INSERT INTO wa_sender_keys (session, address, record) VALUES ($1, $2, $3)
             ON CONFLICT (session, address) DO UPDATE SET record = excluded.record",
            &[&&*self.session, &address, &record],
        )
        .await?;
        Ok(())
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        if sender_keys.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(sender_keys, |(address, _)| address.clone());
        let addresses: Vec<&str> = rows.iter().map(|(a, _)| &**a).collect();
        let records: Vec<&[u8]> = rows.iter().map(|(_, r)| &r[..]).collect();
        self.write(
            "INSERT INTO wa_sender_keys (session, address, record)
             SELECT $1, a, r FROM unnest($2::text[], $3::bytea[]) AS t(a, r)
             ON CONFLICT (session, address) DO UPDATE SET record = excluded.record",
            &[&&*self.session, &addresses, &records],
        )
        .await?;
        Ok(())
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        let row = self
            .read_opt(
                "SELECT record FROM wa_sender_keys WHERE session = $1 AND address = $2",
                &[&&*self.session, &address],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_sender_keys WHERE session = $1 AND address = $2",
            &[&&*self.session, &address],
        )
        .await?;
        Ok(())
    }
}
