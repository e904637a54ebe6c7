//! Everything one session's WhatsApp store holds, in neither store's
//! format: read from one store, written into the other, and read back from
//! the copy to compare with the source.

use std::collections::BTreeMap;

use whatsapp_rust::store::traits::AppStateSyncKey;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::store::Device;

use super::tables::{Rows, TABLES};

/// The tables whose values each store encodes its own way; they are read
/// and written through the library's types.
#[cfg(test)]
pub const ENCODED_TABLES: [&str; 3] = ["wa_device", "wa_app_state_keys", "wa_app_state_versions"];

pub struct StoreImage {
    /// None for a store with no device row (never created).
    pub device: Option<Device>,
    /// By key id.
    pub app_state_keys: Vec<(Vec<u8>, AppStateSyncKey)>,
    /// By collection name.
    pub app_state_versions: Vec<(String, HashState)>,
    /// One entry per [`TABLES`], in that order, each sorted.
    pub tables: Vec<Rows>,
    /// What could not be copied, and why (rows the library itself reads as
    /// absent).
    pub warnings: Vec<String>,
}

/// The linked device, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceSummary {
    /// The phone number's device JID; none before pairing.
    pub jid: Option<String>,
    pub lid: Option<String>,
    pub push_name: String,
}

impl StoreImage {
    /// Rows per table, under the report's names.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        counts.insert("device".to_string(), u64::from(self.device.is_some()));
        counts.insert(
            "app_state_keys".to_string(),
            self.app_state_keys.len() as u64,
        );
        counts.insert(
            "app_state_versions".to_string(),
            self.app_state_versions.len() as u64,
        );
        for (table, rows) in TABLES.iter().zip(&self.tables) {
            counts.insert(table.name.to_string(), rows.len() as u64);
        }
        counts
    }

    pub fn device_summary(&self) -> Option<DeviceSummary> {
        self.device.as_ref().map(|d| DeviceSummary {
            jid: d.pn.as_ref().map(ToString::to_string),
            lid: d.lid.as_ref().map(ToString::to_string),
            push_name: d.push_name.clone(),
        })
    }

    /// How `copy` differs from this image, one sentence each; empty when
    /// the copy holds the same device and the same rows.
    pub fn differences(&self, copy: &StoreImage) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.device, &copy.device) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                if identity_public(a) != identity_public(b) || a.pn != b.pn || a.lid != b.lid {
                    out.push(format!(
                        "the copy is another device ({} vs {})",
                        describe(b),
                        describe(a)
                    ));
                } else if as_json(a) != as_json(b) {
                    out.push(format!(
                        "the copy's device {} differs from the source's in its keys or settings",
                        describe(b)
                    ));
                }
            }
            (Some(_), None) => out.push("the copy has no device".into()),
            (None, Some(_)) => out.push("the copy has a device the source has not".into()),
        }
        let keys = |image: &StoreImage| -> Vec<(Vec<u8>, serde_json::Value)> {
            image
                .app_state_keys
                .iter()
                .map(|(id, key)| (id.clone(), as_json(key)))
                .collect()
        };
        if keys(self) != keys(copy) {
            out.push(mismatch(
                "app_state_keys",
                self.app_state_keys.len(),
                copy.app_state_keys.len(),
            ));
        }
        let versions = |image: &StoreImage| -> Vec<(String, serde_json::Value)> {
            image
                .app_state_versions
                .iter()
                .map(|(name, state)| (name.clone(), as_json(state)))
                .collect()
        };
        if versions(self) != versions(copy) {
            out.push(mismatch(
                "app_state_versions",
                self.app_state_versions.len(),
                copy.app_state_versions.len(),
            ));
        }
        for ((table, ours), theirs) in TABLES.iter().zip(&self.tables).zip(&copy.tables) {
            if ours != theirs {
                out.push(mismatch(table.name, ours.len(), theirs.len()));
            }
        }
        out
    }
}

fn mismatch(table: &str, source: usize, copy: usize) -> String {
    if source == copy {
        format!("{table}: the copy's {copy} rows differ from the source's")
    } else {
        format!("{table}: the source has {source} rows, the copy {copy}")
    }
}

fn identity_public(device: &Device) -> Vec<u8> {
    device.identity_key.public_key.serialize().to_vec()
}

fn describe(device: &Device) -> String {
    match &device.pn {
        Some(pn) => pn.to_string(),
        None => "an unpaired device".to_string(),
    }
}

/// Values compared through their serde form: the library's types do not
/// all implement `PartialEq`, and the form is what the stores keep.
fn as_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
