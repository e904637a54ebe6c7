//! The two per-message buffers the SQLite store keeps beside the Signal
//! state: pending inbound messages (the durability hook's buffer) and sent
//! messages (for retry receipts). Part of `ProtocolStore` (`protocol.rs`
//! delegates here).

use whatsapp_rust::store::traits::{PendingInboundKey, PendingInboundRow};

use super::{PgStore, Result, last_per_key, now_secs};

impl PgStore {
    pub(super) async fn pending_store(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.pending_store_batch(&[PendingInboundRow {
            chat,
            sender,
            id,
            message,
        }])
        .await
    }

    pub(super) async fn pending_get(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        let row = self
            .read_opt(
                "SELECT message FROM wa_pending_inbound
                 WHERE session = $1 AND chat = $2 AND sender = $3 AND id = $4",
                &[&&*self.session, &chat, &sender, &id],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    pub(super) async fn pending_delete(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.pending_delete_batch(&[PendingInboundKey { chat, sender, id }])
            .await
    }

    pub(super) async fn pending_delete_expired(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .write(
                "DELETE FROM wa_pending_inbound WHERE session = $1 AND inserted_at < $2",
                &[&&*self.session, &cutoff_timestamp],
            )
            .await?;
        Ok(deleted as u32)
    }

    pub(super) async fn pending_store_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(rows, |r| (r.chat, r.sender, r.id));
        let chats: Vec<&str> = rows.iter().map(|r| r.chat).collect();
        let senders: Vec<&str> = rows.iter().map(|r| r.sender).collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.id).collect();
        let messages: Vec<&[u8]> = rows.iter().map(|r| r.message).collect();
        // A replace, as the SQLite store's: a re-buffered message restarts
        // its retention clock.
        self.write(
            "INSERT INTO wa_pending_inbound (session, chat, sender, id, message, inserted_at)
             SELECT $1, c, s, i, m, $6
             FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[]) AS t(c, s, i, m)
             ON CONFLICT (session, chat, sender, id) DO UPDATE
                SET message = excluded.message, inserted_at = excluded.inserted_at",
            &[
                &&*self.session,
                &chats,
                &senders,
                &ids,
                &messages,
                &now_secs(),
            ],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn pending_delete_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let chats: Vec<&str> = keys.iter().map(|k| k.chat).collect();
        let senders: Vec<&str> = keys.iter().map(|k| k.sender).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.id).collect();
        self.write(
            "DELETE FROM wa_pending_inbound p
             USING unnest($2::text[], $3::text[], $4::text[]) AS k(c, s, i)
             WHERE p.session = $1 AND p.chat = k.c AND p.sender = k.s AND p.id = k.i",
            &[&&*self.session, &chats, &senders, &ids],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn sent_store(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        // A replace, as the SQLite store's: the row's age restarts.
        self.write(
            "INSERT INTO wa_sent_messages (session, chat_jid, message_id, payload, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session, chat_jid, message_id) DO UPDATE
                SET payload = excluded.payload, created_at = excluded.created_at",
            &[
                &&*self.session,
                &chat_jid,
                &message_id,
                &payload,
                &now_secs(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Takes the message out (read and delete in one statement), so two
    /// retry receipts cannot both resend it.
    pub(super) async fn sent_take(
        &self,
        chat_jid: &str,
        message_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn().await?;
        let tx = self.fenced(&mut conn).await?;
        let statement = tx
            .prepare_cached(
                "DELETE FROM wa_sent_messages
                 WHERE session = $1 AND chat_jid = $2 AND message_id = $3
                 RETURNING payload",
            )
            .await
            .map_err(super::db)?;
        let row = tx
            .query_opt(&statement, &[&&*self.session, &chat_jid, &message_id])
            .await
            .map_err(super::db)?;
        tx.commit().await.map_err(super::db)?;
        Ok(row.map(|row| row.get(0)))
    }

    pub(super) async fn sent_delete_expired(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .write(
                "DELETE FROM wa_sent_messages WHERE session = $1 AND created_at < $2",
                &[&&*self.session, &cutoff_timestamp],
            )
            .await?;
        Ok(deleted as u32)
    }
}
