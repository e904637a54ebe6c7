//! What the library keeps to follow WhatsApp Web: sender-key distribution
//! per device, LID↔PN mappings, base keys of retried sessions, device lists,
//! group metadata, trusted-contact tokens; and (delegated to `buffers.rs`)
//! the sent-message and pending-inbound buffers.

use whatsapp_rust::store::traits::{
    DeviceInfo, DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow,
    ProtocolStore, TcTokenEntry,
};

use super::{PgStore, Result, last_per_key, now_secs, serialization};

fn lid_entry(row: &tokio_postgres::Row) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: row.get(0),
        phone_number: row.get(1),
        created_at: row.get(2),
        learning_source: row.get(3),
        updated_at: row.get(4),
    }
}

const LID_COLUMNS: &str = "lid, phone_number, created_at, learning_source, updated_at";

#[whatsapp_rust::async_trait]
impl ProtocolStore for PgStore {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let rows = self
            .read_all(
                "SELECT device_jid, has_key FROM wa_sender_key_devices
                 WHERE session = $1 AND group_jid = $2",
                &[&&*self.session, &group_jid],
            )
            .await?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(entries, |(device, _)| *device);
        let devices: Vec<&str> = rows.iter().map(|(d, _)| *d).collect();
        let has_key: Vec<bool> = rows.iter().map(|(_, h)| *h).collect();
        self.write(
            "INSERT INTO wa_sender_key_devices (session, group_jid, device_jid, has_key, updated_at)
             SELECT $1, $2, d, h, $3 FROM unnest($4::text[], $5::boolean[]) AS t(d, h)
             ON CONFLICT (session, group_jid, device_jid) DO UPDATE
                SET has_key = excluded.has_key, updated_at = excluded.updated_at",
            &[&&*self.session, &group_jid, &now_secs(), &devices, &has_key],
        )
        .await?;
        Ok(())
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_sender_key_devices WHERE session = $1 AND group_jid = $2",
            &[&&*self.session, &group_jid],
        )
        .await?;
        Ok(())
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        self.write(
            "DELETE FROM wa_sender_key_devices WHERE session = $1 AND device_jid = ANY($2)",
            &[&&*self.session, &device_jids],
        )
        .await?;
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.write(
            "DELETE FROM wa_sender_key_devices WHERE session = $1",
            &[&&*self.session],
        )
        .await?;
        Ok(())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        let row = self
            .read_opt(
                &format!(
                    "SELECT {LID_COLUMNS} FROM wa_lid_pn_mapping WHERE session = $1 AND lid = $2"
                ),
                &[&&*self.session, &lid],
            )
            .await?;
        Ok(row.as_ref().map(lid_entry))
    }

    /// The most recently updated LID for the number.
    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let row = self
            .read_opt(
                &format!(
                    "SELECT {LID_COLUMNS} FROM wa_lid_pn_mapping
                     WHERE session = $1 AND phone_number = $2
                     ORDER BY updated_at DESC LIMIT 1"
                ),
                &[&&*self.session, &phone],
            )
            .await?;
        Ok(row.as_ref().map(lid_entry))
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.put_lid_mappings(std::slice::from_ref(entry)).await
    }

    /// An update keeps the row's `created_at`, as in SQLite.
    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(entries, |e| e.lid.as_str());
        // A row first inserted by this batch keeps the first duplicate's
        // creation time, as row-by-row inserts would.
        let first_created = |lid: &str| {
            entries
                .iter()
                .find(|e| e.lid == lid)
                .map_or(0, |e| e.created_at)
        };
        let lids: Vec<&str> = rows.iter().map(|e| e.lid.as_str()).collect();
        let phones: Vec<&str> = rows.iter().map(|e| e.phone_number.as_str()).collect();
        let created: Vec<i64> = rows.iter().map(|e| first_created(&e.lid)).collect();
        let sources: Vec<&str> = rows.iter().map(|e| e.learning_source.as_str()).collect();
        let updated: Vec<i64> = rows.iter().map(|e| e.updated_at).collect();
        self.write(
            "INSERT INTO wa_lid_pn_mapping
                (session, lid, phone_number, created_at, learning_source, updated_at)
             SELECT $1, l, p, c, s, u
             FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
                AS t(l, p, c, s, u)
             ON CONFLICT (session, lid) DO UPDATE
                SET phone_number = excluded.phone_number,
                    learning_source = excluded.learning_source,
                    updated_at = excluded.updated_at",
            &[
                &&*self.session,
                &lids,
                &phones,
                &created,
                &sources,
                &updated,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        let rows = self
            .read_all(
                &format!("SELECT {LID_COLUMNS} FROM wa_lid_pn_mapping WHERE session = $1"),
                &[&&*self.session],
            )
            .await?;
        Ok(rows.iter().map(lid_entry).collect())
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.write(
            "INSERT INTO wa_base_keys (session, address, message_id, base_key, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session, address, message_id) DO UPDATE SET base_key = excluded.base_key",
            &[
                &&*self.session,
                &address,
                &message_id,
                &base_key,
                &now_secs(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        let row = self
            .read_opt(
                "SELECT base_key FROM wa_base_keys
                 WHERE session = $1 AND address = $2 AND message_id = $3",
                &[&&*self.session, &address, &message_id],
            )
            .await?;
        Ok(row.is_some_and(|row| row.get::<_, Vec<u8>>(0) == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_base_keys WHERE session = $1 AND address = $2 AND message_id = $3",
            &[&&*self.session, &address, &message_id],
        )
        .await?;
        Ok(())
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(&records, |r| r.user.as_str());
        let users: Vec<&str> = rows.iter().map(|r| r.user.as_str()).collect();
        let devices = rows
            .iter()
            .map(|r| serde_json::to_string(&r.devices))
            .collect::<std::result::Result<Vec<String>, _>>()
            .map_err(serialization)?;
        let timestamps: Vec<i64> = rows.iter().map(|r| r.timestamp).collect();
        let phashes: Vec<Option<&str>> = rows.iter().map(|r| r.phash.as_deref()).collect();
        let raw_ids: Vec<Option<i64>> = rows.iter().map(|r| r.raw_id.map(i64::from)).collect();
        self.write(
            "INSERT INTO wa_device_registry
                (session, user_id, devices_json, timestamp, phash, raw_id, updated_at)
             SELECT $1, u, d, t, p, r, $2
             FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[])
                AS x(u, d, t, p, r)
             ON CONFLICT (session, user_id) DO UPDATE
                SET devices_json = excluded.devices_json, timestamp = excluded.timestamp,
                    phash = excluded.phash, raw_id = excluded.raw_id,
                    updated_at = excluded.updated_at",
            &[
                &&*self.session,
                &now_secs(),
                &users,
                &devices,
                &timestamps,
                &phashes,
                &raw_ids,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        let row = self
            .read_opt(
                "SELECT user_id, devices_json, timestamp, phash, raw_id FROM wa_device_registry
                 WHERE session = $1 AND user_id = $2",
                &[&&*self.session, &user],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let devices: Vec<DeviceInfo> =
            serde_json::from_str(row.get::<_, &str>(1)).map_err(serialization)?;
        Ok(Some(DeviceListRecord {
            user: row.get(0),
            devices,
            timestamp: row.get(2),
            phash: row.get(3),
            raw_id: row.get::<_, Option<i64>>(4).map(|r| r as u32),
        }))
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_device_registry WHERE session = $1 AND user_id = $2",
            &[&&*self.session, &user],
        )
        .await?;
        Ok(())
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        let row = self
            .read_opt(
                "SELECT info FROM wa_group_metadata WHERE session = $1 AND group_jid = $2",
                &[&&*self.session, &group_jid],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.write(
            "INSERT INTO wa_group_metadata (session, group_jid, info, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (session, group_jid) DO UPDATE
                SET info = excluded.info, updated_at = excluded.updated_at",
            &[&&*self.session, &group_jid, &blob, &now_secs()],
        )
        .await?;
        Ok(())
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_group_metadata WHERE session = $1 AND group_jid = $2",
            &[&&*self.session, &group_jid],
        )
        .await?;
        Ok(())
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        let row = self
            .read_opt(
                "SELECT token, token_timestamp, sender_timestamp FROM wa_tc_tokens
                 WHERE session = $1 AND jid = $2",
                &[&&*self.session, &jid],
            )
            .await?;
        Ok(row.map(|row| TcTokenEntry {
            token: row.get(0),
            token_timestamp: row.get(1),
            sender_timestamp: row.get(2),
        }))
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.write(
            "INSERT INTO wa_tc_tokens
                (session, jid, token, token_timestamp, sender_timestamp, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (session, jid) DO UPDATE
                SET token = excluded.token, token_timestamp = excluded.token_timestamp,
                    sender_timestamp = excluded.sender_timestamp,
                    updated_at = excluded.updated_at",
            &[
                &&*self.session,
                &jid,
                &entry.token,
                &entry.token_timestamp,
                &entry.sender_timestamp,
                &now_secs(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_tc_tokens WHERE session = $1 AND jid = $2",
            &[&&*self.session, &jid],
        )
        .await?;
        Ok(())
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        let rows = self
            .read_all(
                "SELECT jid FROM wa_tc_tokens WHERE session = $1",
                &[&&*self.session],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let deleted = self
            .write(
                "DELETE FROM wa_tc_tokens
                 WHERE session = $1
                   AND (length(token) = 0 OR token_timestamp < $2)
                   AND (sender_timestamp IS NULL OR sender_timestamp < $3)",
                &[&&*self.session, &token_cutoff, &sender_cutoff],
            )
            .await?;
        Ok(deleted as u32)
    }

    /// Newer wins, atomically: the token pair is replaced only over a
    /// placeholder or an older token; the sender bucket is kept.
    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        self.write(
            "INSERT INTO wa_tc_tokens
                (session, jid, token, token_timestamp, sender_timestamp, updated_at)
             VALUES ($1, $2, $3, $4, NULL, $5)
             ON CONFLICT (session, jid) DO UPDATE
                SET token = excluded.token, token_timestamp = excluded.token_timestamp,
                    updated_at = excluded.updated_at
                WHERE length(wa_tc_tokens.token) = 0
                   OR excluded.token_timestamp >= wa_tc_tokens.token_timestamp",
            &[&&*self.session, &jid, &token, &token_timestamp, &now_secs()],
        )
        .await?;
        Ok(())
    }

    /// Advance-only, atomically; a placeholder row when there is none.
    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        self.write(
            "INSERT INTO wa_tc_tokens
                (session, jid, token, token_timestamp, sender_timestamp, updated_at)
             VALUES ($1, $2, ''::bytea, $3, $3, $4)
             ON CONFLICT (session, jid) DO UPDATE
                SET sender_timestamp = greatest(wa_tc_tokens.sender_timestamp, excluded.sender_timestamp),
                    updated_at = excluded.updated_at",
            &[&&*self.session, &jid, &sender_timestamp, &now_secs()],
        )
        .await?;
        Ok(())
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.sent_store(chat_jid, message_id, payload).await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        self.sent_take(chat_jid, message_id).await
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.sent_delete_expired(cutoff_timestamp).await
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.pending_store(chat, sender, id, message).await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.pending_get(chat, sender, id).await
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.pending_delete(chat, sender, id).await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.pending_delete_expired(cutoff_timestamp).await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        self.pending_store_batch(rows).await
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        self.pending_delete_batch(keys).await
    }
}
