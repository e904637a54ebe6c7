//! Message secrets (to decrypt poll votes, reactions, edits and bot replies
//! to our messages).

use std::collections::HashMap;
use std::sync::Arc;

use whatsapp_rust::store::traits::{
    MsgSecretEntry, MsgSecretStore, merge_msg_secret_expiry, merge_msg_secret_message_ts,
};

use super::{PgStore, Result, now_secs};

#[whatsapp_rust::async_trait]
impl MsgSecretStore for PgStore {
    /// One upsert for the batch. On a key already stored the later deadline
    /// wins (0, never, beats all) and a known parent time is kept, as the
    /// library's merge functions say; duplicates inside the batch are merged
    /// the same way first. Returns the number of entries given, as SQLite.
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let given = entries.len();
        let mut merged: Vec<MsgSecretEntry> = Vec::with_capacity(given);
        let mut index: HashMap<(Arc<str>, Arc<str>, Arc<str>), usize> = HashMap::new();
        for entry in entries {
            let key = (
                entry.chat.clone(),
                entry.sender.clone(),
                entry.msg_id.clone(),
            );
            match index.get(&key) {
                Some(&at) => {
                    let kept = &mut merged[at];
                    kept.secret = entry.secret;
                    kept.expires_at = merge_msg_secret_expiry(kept.expires_at, entry.expires_at);
                    kept.message_ts =
                        merge_msg_secret_message_ts(kept.message_ts, entry.message_ts);
                }
                None => {
                    index.insert(key, merged.len());
                    merged.push(entry);
                }
            }
        }
        let chats: Vec<&str> = merged.iter().map(|e| &*e.chat).collect();
        let senders: Vec<&str> = merged.iter().map(|e| &*e.sender).collect();
        let ids: Vec<&str> = merged.iter().map(|e| &*e.msg_id).collect();
        let secrets: Vec<&[u8]> = merged.iter().map(|e| &e.secret[..]).collect();
        let expires: Vec<i64> = merged.iter().map(|e| e.expires_at).collect();
        let times: Vec<i64> = merged.iter().map(|e| e.message_ts).collect();
        self.write(
            "INSERT INTO wa_msg_secrets
                (session, chat, sender, msg_id, secret, created_at, expires_at, message_ts)
             SELECT $1, c, s, i, k, $2, e, t
             FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[], $7::bigint[], $8::bigint[])
                AS u(c, s, i, k, e, t)
             ON CONFLICT (session, chat, sender, msg_id) DO UPDATE
                SET secret = excluded.secret,
                    created_at = excluded.created_at,
                    expires_at = CASE
                        WHEN wa_msg_secrets.expires_at = 0 OR excluded.expires_at = 0 THEN 0
                        ELSE greatest(wa_msg_secrets.expires_at, excluded.expires_at) END,
                    message_ts = greatest(wa_msg_secrets.message_ts, excluded.message_ts)",
            &[
                &&*self.session,
                &now_secs(),
                &chats,
                &senders,
                &ids,
                &secrets,
                &expires,
                &times,
            ],
        )
        .await?;
        Ok(given)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        let row = self
            .read_opt(
                "SELECT secret, message_ts FROM wa_msg_secrets
                 WHERE session = $1 AND chat = $2 AND sender = $3 AND msg_id = $4",
                &[&&*self.session, &chat, &sender, &msg_id],
            )
            .await?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .write(
                "DELETE FROM wa_msg_secrets
                 WHERE session = $1 AND expires_at <> 0 AND expires_at <= $2",
                &[&&*self.session, &cutoff_timestamp],
            )
            .await?;
        Ok(deleted as u32)
    }
}
