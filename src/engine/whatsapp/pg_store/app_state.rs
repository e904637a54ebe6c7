//! App-state sync: keys, collection versions, mutation MACs.

use std::collections::HashMap;

use whatsapp_rust::store::traits::{AppStateSyncKey, AppSyncStore};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;

use super::{PgStore, Result, last_per_key};

/// A collection's state as stored: a format byte, the version, the
/// mismatch flag, the 128-byte hash, then each index → value as
/// length-prefixed bytes (big-endian lengths). JSON would spell every byte
/// of a map that holds one entry per synced item as a decimal number.
const STATE_FORMAT: u8 = 1;

fn encode_state(state: &HashState) -> Vec<u8> {
    let entries: usize = state
        .index_value_map
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum();
    let mut out = Vec::with_capacity(1 + 8 + 1 + 128 + 4 + entries);
    out.push(STATE_FORMAT);
    out.extend_from_slice(&state.version.to_be_bytes());
    out.push(u8::from(state.mac_mismatch_fatal));
    out.extend_from_slice(&state.hash);
    out.extend_from_slice(&(state.index_value_map.len() as u32).to_be_bytes());
    for (index, value) in &state.index_value_map {
        out.extend_from_slice(&(index.len() as u32).to_be_bytes());
        out.extend_from_slice(index.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

fn decode_state(bytes: &[u8]) -> std::result::Result<HashState, String> {
    let mut rest = bytes;
    let mut take = |n: usize| -> std::result::Result<&[u8], String> {
        if rest.len() < n {
            return Err(format!("truncated at byte {}", bytes.len() - rest.len()));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let format = take(1)?[0];
    if format != STATE_FORMAT {
        return Err(format!("unknown format {format}"));
    }
    let mut state = HashState {
        version: u64::from_be_bytes(take(8)?.try_into().unwrap()),
        mac_mismatch_fatal: take(1)?[0] != 0,
        ..HashState::default()
    };
    state.hash.copy_from_slice(take(128)?);
    let count = u32::from_be_bytes(take(4)?.try_into().unwrap());
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().unwrap()) as usize;
        let index = String::from_utf8(take(len)?.to_vec()).map_err(|e| e.to_string())?;
        let len = u32::from_be_bytes(take(4)?.try_into().unwrap()) as usize;
        let value = take(len)?.to_vec();
        state.index_value_map.insert(index, value);
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes past the end", rest.len()));
    }
    Ok(state)
}

impl PgStore {
    /// A collection's state as `wa_app_state_versions.state` holds it, for
    /// `migrate-store`, which writes rows in a transaction of its own.
    pub fn encode_app_state_version(state: &HashState) -> Vec<u8> {
        encode_state(state)
    }

    /// A `wa_app_state_versions.state` read back; an error for bytes that
    /// are not a state this store wrote.
    pub fn decode_app_state_version(bytes: &[u8]) -> std::result::Result<HashState, String> {
        decode_state(bytes)
    }
}

#[whatsapp_rust::async_trait]
impl AppSyncStore for PgStore {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        let row = self
            .read_opt(
                "SELECT key_data, fingerprint, timestamp FROM wa_app_state_keys
                 WHERE session = $1 AND key_id = $2",
                &[&&*self.session, &key_id],
            )
            .await?;
        Ok(row.map(|row| AppStateSyncKey {
            key_data: row.get(0),
            fingerprint: row.get(1),
            timestamp: row.get(2),
        }))
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.write(
            "INSERT INTO wa_app_state_keys (session, key_id, key_data, fingerprint, timestamp)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session, key_id) DO UPDATE
                SET key_data = excluded.key_data, fingerprint = excluded.fingerprint,
                    timestamp = excluded.timestamp",
            &[
                &&*self.session,
                &key_id,
                &key.key_data,
                &key.fingerprint,
                &key.timestamp,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        let row = self
            .read_opt(
                "SELECT state FROM wa_app_state_versions WHERE session = $1 AND name = $2",
                &[&&*self.session, &name],
            )
            .await?;
        let Some(row) = row else {
            return Ok(HashState::default());
        };
        let data: Vec<u8> = row.get(0);
        // As the SQLite store: a state that does not decode resets the
        // collection, which then re-syncs from version 0.
        Ok(decode_state(&data).unwrap_or_else(|e| {
            tracing::warn!(
                collection = name,
                "app-state version does not decode ({e}); re-syncing it"
            );
            HashState::default()
        }))
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        let data = encode_state(&state);
        self.write(
            "INSERT INTO wa_app_state_versions (session, name, state) VALUES ($1, $2, $3)
             ON CONFLICT (session, name) DO UPDATE SET state = excluded.state",
            &[&&*self.session, &name, &data],
        )
        .await?;
        Ok(())
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        if mutations.is_empty() {
            return Ok(());
        }
        let rows = last_per_key(mutations, |m| m.index_mac.clone());
        let index_macs: Vec<&[u8]> = rows.iter().map(|m| &m.index_mac[..]).collect();
        let value_macs: Vec<&[u8]> = rows.iter().map(|m| &m.value_mac[..]).collect();
        self.write(
            "INSERT INTO wa_app_state_mutation_macs (session, name, index_mac, version, value_mac)
             SELECT $1, $2, i, $3, v FROM unnest($4::bytea[], $5::bytea[]) AS t(i, v)
             ON CONFLICT (session, name, index_mac) DO UPDATE
                SET version = excluded.version, value_mac = excluded.value_mac",
            &[
                &&*self.session,
                &name,
                &(version as i64),
                &index_macs,
                &value_macs,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        let row = self
            .read_opt(
                "SELECT value_mac FROM wa_app_state_mutation_macs
                 WHERE session = $1 AND name = $2 AND index_mac = $3",
                &[&&*self.session, &name, &index_mac],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        if index_macs.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: Vec<&[u8]> = index_macs.iter().map(|m| &m[..]).collect();
        let rows = self
            .read_all(
                "SELECT index_mac, value_mac FROM wa_app_state_mutation_macs
                 WHERE session = $1 AND name = $2 AND index_mac = ANY($3)",
                &[&&*self.session, &name, &wanted],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let index: Vec<u8> = row.get(0);
                Some((<[u8; 32]>::try_from(index.as_slice()).ok()?, row.get(1)))
            })
            .collect())
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        if index_macs.is_empty() {
            return Ok(());
        }
        let macs: Vec<&[u8]> = index_macs.iter().map(|m| &m[..]).collect();
        self.write(
            "DELETE FROM wa_app_state_mutation_macs
             WHERE session = $1 AND name = $2 AND index_mac = ANY($3)",
            &[&&*self.session, &name, &macs],
        )
        .await?;
        Ok(())
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.write(
            "DELETE FROM wa_app_state_mutation_macs WHERE session = $1 AND name = $2",
            &[&&*self.session, &name],
        )
        .await?;
        Ok(())
    }

    /// The greatest key id, as the SQLite store (not the last one set).
    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        let row = self
            .read_opt(
                "SELECT key_id FROM wa_app_state_keys WHERE session = $1
                 ORDER BY key_id DESC LIMIT 1",
                &[&&*self.session],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_as_written_and_a_damaged_one_is_refused() {
        let mut state = HashState {
            version: 42,
            mac_mismatch_fatal: true,
            ..HashState::default()
        };
        state.hash = [7; 128];
        state.index_value_map.insert("idx-é".into(), vec![1, 2, 3]);
        state.index_value_map.insert(String::new(), Vec::new());
        let bytes = encode_state(&state);
        let back = decode_state(&bytes).unwrap();
        assert_eq!(back.version, 42);
        assert!(back.mac_mismatch_fatal);
        assert_eq!(back.hash, [7; 128]);
        assert_eq!(back.index_value_map, state.index_value_map);
        assert!(decode_state(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_state(&[bytes.as_slice(), &[0]].concat()).is_err());
        assert!(decode_state(&[2]).is_err());
        let empty = decode_state(&encode_state(&HashState::default())).unwrap();
        assert_eq!(empty.version, 0);
        assert!(empty.index_value_map.is_empty());
    }
}
