//! The linked device: one JSON row per session (`Device` is serde), the
//! fields it skips filled on load as the SQLite store fills them.

use std::sync::Arc;

use whatsapp_rust::store::traits::DeviceStore;
use whatsapp_rust::wacore::client_profile::ClientProfile;
use whatsapp_rust::wacore::stats::StorageResourceReport;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::device::DEVICE_PROPS;

use super::{PgStore, Result, serialization};

/// The id `create` reports: one device per session, the SQLite store's
/// default id.
const DEVICE_ID: i32 = 1;

impl PgStore {
    /// A device as its `wa_device.device` column holds it (JSON text, cast
    /// to jsonb on insert); `migrate-store` writes rows in a transaction of
    /// its own with this.
    pub fn encode_device(device: &Device) -> Result<String> {
        serde_json::to_string(device).map_err(serialization)
    }

    /// A device read back from `wa_device.device` (as text), with the
    /// fields the JSON skips filled as the SQLite store fills them.
    pub fn decode_device(json: &str) -> Result<Device> {
        let mut device: Device = serde_json::from_str(json).map_err(serialization)?;
        // Not serialized (`#[serde(skip)]`): the SQLite store loads these
        // as the library's defaults, and so do we.
        device.device_props = Arc::new(DEVICE_PROPS.clone());
        device.client_profile = ClientProfile::web();
        device.nct_salt_sync_seen = false;
        Ok(device)
    }

    async fn insert_device(&self, device: &Device, replace: bool) -> Result<()> {
        let json = Self::encode_device(device)?;
        let sql = if replace {
            "INSERT INTO wa_device (session, device) VALUES ($1, $2::text::jsonb)
             ON CONFLICT (session) DO UPDATE SET device = excluded.device"
        } else {
            "INSERT INTO wa_device (session, device) VALUES ($1, $2::text::jsonb)"
        };
        self.write(sql, &[&&*self.session, &json]).await?;
        Ok(())
    }
}

#[whatsapp_rust::async_trait]
impl DeviceStore for PgStore {
    async fn save(&self, device: &Device) -> Result<()> {
        self.insert_device(device, true).await
    }

    async fn load(&self) -> Result<Option<Device>> {
        let row = self
            .read_opt(
                "SELECT device::text FROM wa_device WHERE session = $1",
                &[&&*self.session],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let json: String = row.get(0);
        Self::decode_device(&json).map(Some)
    }

    async fn exists(&self) -> Result<bool> {
        let row = self
            .read_opt(
                "SELECT 1 FROM wa_device WHERE session = $1",
                &[&&*self.session],
            )
            .await?;
        Ok(row.is_some())
    }

    /// A fresh device row (an error if the session has one, as in SQLite).
    async fn create(&self) -> Result<i32> {
        self.insert_device(&Device::new(), false).await?;
        Ok(DEVICE_ID)
    }

    async fn resource_report(&self) -> StorageResourceReport {
        // The data lives in the database, not in this process.
        StorageResourceReport {
            memory_bytes: Some(0),
            ..StorageResourceReport::default()
        }
    }
}
