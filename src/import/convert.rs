//! A read folder → everything whatsapp-rust's store needs, converted and
//! checked in memory. A dry run stops here, so it finds exactly the problems
//! a real import would.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::libsignal::store::record_helpers::new_pre_key_record;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::traits::{AppStateSyncKey, LidPnMappingEntry, TcTokenEntry};
use whatsapp_rust::waproto;
use whatsapp_rust::waproto::whatsapp as wa;

use super::address::{AuthFile, tc_token_user};
use super::creds::{self, CredsError, DeviceSummary};
use super::encoding;
use super::folder::{self, Listing};
use super::signal::{self, LocalIdentity};
use super::{Counts, Problem};

/// Where the mappings came from, as the library's LID↔PN table records it.
const LEARNED_FROM: &str = "baileys_import";

/// The old bridge's webhook settings for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub token: Option<String>,
}

/// A session converted and checked, ready to be written.
pub struct Prepared {
    pub device: Device,
    pub summary: DeviceSummary,
    /// (store address, record), in the shapes the store's batch writes take.
    pub sessions: Vec<(Arc<str>, Bytes)>,
    pub identities: Vec<(Arc<str>, [u8; 32])>,
    /// (id, record, uploaded to WhatsApp)
    pub pre_keys: Vec<(u32, Bytes, bool)>,
    pub sender_keys: Vec<(Arc<str>, Bytes)>,
    pub lid_mappings: Vec<LidPnMappingEntry>,
    pub sync_keys: Vec<(Vec<u8>, AppStateSyncKey)>,
    pub tc_tokens: Vec<(String, TcTokenEntry)>,
    pub webhook: Option<Webhook>,
    pub warnings: Vec<String>,
}

impl Prepared {
    pub fn counts(&self) -> Counts {
        Counts {
            sessions: self.sessions.len(),
            identities: self.identities.len(),
            pre_keys: self.pre_keys.len(),
            sender_keys: self.sender_keys.len(),
            lid_mappings: self.lid_mappings.len(),
            app_state_keys: self.sync_keys.len(),
            tc_tokens: self.tc_tokens.len(),
        }
    }
}

pub enum PrepareError {
    /// No `me` / `account` in creds.json: nothing to import.
    NeverPaired,
    Problems(Vec<Problem>),
}

pub fn prepare(dir: &Path, listing: Listing) -> Result<Prepared, PrepareError> {
    let creds_problem = |why: String| PrepareError::Problems(vec![Problem::new("creds.json", why)]);
    if !listing
        .files
        .iter()
        .any(|(_, kind)| *kind == AuthFile::Creds)
    {
        return Err(creds_problem(
            "missing: this is not a Baileys auth folder".into(),
        ));
    }
    let creds_json = folder::load(dir, "creds.json").map_err(creds_problem)?;
    let mut collector = match creds::convert(&creds_json) {
        Ok(imported) => Collector::new(imported),
        Err(CredsError::NeverPaired) => return Err(PrepareError::NeverPaired),
        Err(CredsError::Invalid(why)) => return Err(creds_problem(why)),
    };
    let mut problems = Vec::new();
    // One file at a time: only converted records stay in memory.
    for (name, kind) in &listing.files {
        if *kind == AuthFile::Creds {
            continue;
        }
        let converted = folder::load(dir, name).and_then(|json| collector.add(name, kind, &json));
        if let Err(why) = converted {
            problems.push(Problem::new(name.clone(), why));
        }
    }
    if !problems.is_empty() {
        return Err(PrepareError::Problems(problems));
    }
    let mut prepared = collector.finish();
    for name in &listing.unknown {
        prepared
            .warnings
            .push(format!("{name}: not a file Baileys writes; left out"));
    }
    Ok(prepared)
}

/// Gathers converted files; what depends on several files (identities,
/// LID mappings, tc-token keys) is settled in `finish`.
struct Collector {
    local: LocalIdentity,
    first_unuploaded_pre_key: u32,
    prepared: Prepared,
    identities: BTreeMap<String, [u8; 32]>,
    session_identities: BTreeMap<String, [u8; 32]>,
    phone_of_lid: BTreeMap<String, String>,
    /// (user, is a LID, token)
    tc_tokens: Vec<(String, bool, TcTokenEntry)>,
}

impl Collector {
    fn new(imported: creds::ImportedCreds) -> Collector {
        let identity_public = imported
            .device
            .identity_key
            .public_key
            .public_key_bytes()
            .try_into()
            .expect("a Curve25519 public key is 32 bytes");
        Collector {
            local: LocalIdentity {
                identity_public,
                registration_id: imported.device.registration_id,
            },
            first_unuploaded_pre_key: imported.first_unuploaded_pre_key,
            prepared: Prepared {
                device: imported.device,
                summary: imported.summary,
                sessions: Vec::new(),
                identities: Vec::new(),
                pre_keys: Vec::new(),
                sender_keys: Vec::new(),
                lid_mappings: Vec::new(),
                sync_keys: Vec::new(),
                tc_tokens: Vec::new(),
                webhook: None,
                warnings: Vec::new(),
            },
            identities: BTreeMap::new(),
            session_identities: BTreeMap::new(),
            phone_of_lid: BTreeMap::new(),
            tc_tokens: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, kind: &AuthFile, json: &Value) -> Result<(), String> {
        let prepared = &mut self.prepared;
        match kind {
            AuthFile::Creds | AuthFile::Unknown | AuthFile::NotNeeded => {}
            AuthFile::Session(address) => {
                let converted = signal::convert_session(json, self.local)?;
                let key = address.store_key();
                if let Some(identity) = converted.remote_identity {
                    self.session_identities.insert(key.clone(), identity);
                }
                prepared.warnings.extend(
                    converted
                        .warnings
                        .into_iter()
                        .map(|w| format!("{name}: {w}")),
                );
                prepared
                    .sessions
                    .push((key.into(), converted.record.into()));
            }
            AuthFile::Identity(address) => {
                let key =
                    encoding::public_key(json).map_err(|why| format!("identity key: {why}"))?;
                self.identities.insert(address.store_key(), key);
            }
            AuthFile::PreKey(id) => {
                let pair = creds::key_pair(json, "")?;
                let record = waproto::codec::pre_key_record_to_vec(&new_pre_key_record(*id, &pair));
                // Keep Baileys' ids: restarting at 1 would overwrite live keys.
                prepared
                    .pre_keys
                    .push((*id, record.into(), *id < self.first_unuploaded_pre_key));
            }
            AuthFile::SenderKey { group, sender } => {
                let record = signal::convert_sender_key(json)?;
                let name = format!("{group}:{}", sender.store_key());
                prepared.sender_keys.push((name.into(), record.into()));
            }
            AuthFile::LidOfPhone(pn) => {
                // A forward file (pn → lid) wins over a reverse one.
                self.phone_of_lid.insert(digits(json)?, pn.clone());
            }
            AuthFile::PhoneOfLid(lid) => {
                let pn = digits(json)?;
                self.phone_of_lid.entry(lid.clone()).or_insert(pn);
            }
            AuthFile::AppStateSyncKey(id) => {
                let id = encoding::bytes(&Value::String(id.clone()))
                    .map_err(|why| format!("key id in the file name: {why}"))?;
                prepared.sync_keys.push((id, sync_key(json)?));
            }
            AuthFile::TcToken(jid) => {
                let (user, is_lid) = tc_token_user(jid)?;
                self.tc_tokens.push((user, is_lid, tc_token(json)?));
            }
            AuthFile::WebhookConfig => prepared.webhook = webhook(json)?,
        }
        Ok(())
    }

    fn finish(self) -> Prepared {
        let Collector {
            mut prepared,
            mut identities,
            session_identities,
            phone_of_lid,
            tc_tokens,
            ..
        } = self;
        // Sessions Baileys started have no identity file: the open session
        // knows the peer's identity.
        for (address, key) in session_identities {
            identities.entry(address).or_insert(key);
        }
        prepared.identities = identities
            .into_iter()
            .map(|(address, key)| (address.into(), key))
            .collect();
        let now = chrono::Utc::now().timestamp();
        // tc-tokens are keyed by the contact's LID when one is known.
        let lid_of_phone: BTreeMap<&String, &String> =
            phone_of_lid.iter().map(|(lid, pn)| (pn, lid)).collect();
        prepared.tc_tokens = tc_tokens
            .into_iter()
            .map(|(user, is_lid, entry)| match is_lid {
                true => (user, entry),
                false => (
                    lid_of_phone.get(&user).map_or(user, |lid| (*lid).clone()),
                    entry,
                ),
            })
            .collect();
        prepared.lid_mappings = phone_of_lid
            .into_iter()
            .map(|(lid, phone_number)| LidPnMappingEntry {
                lid,
                phone_number,
                created_at: now,
                updated_at: now,
                learning_source: LEARNED_FROM.to_string(),
            })
            .collect();
        prepared
    }
}

fn digits(json: &Value) -> Result<String, String> {
    let text = match json {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("not a user number".into()),
    };
    let user = text.split(['@', ':']).next().unwrap_or_default();
    if (1..=20).contains(&user.len()) && user.bytes().all(|b| b.is_ascii_digit()) {
        Ok(user.to_string())
    } else {
        Err("not a user number".into())
    }
}

fn sync_key(json: &Value) -> Result<AppStateSyncKey, String> {
    let map = json.as_object().ok_or("not an app-state key")?;
    let key_data = encoding::bytes(map.get("keyData").unwrap_or(&Value::Null))
        .map_err(|why| format!("field `keyData`: {why}"))?;
    let fingerprint = match map.get("fingerprint").and_then(Value::as_object) {
        None => Vec::new(),
        Some(fp) => {
            let number = |name: &str| match fp.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => encoding::unsigned(v)
                    .map(Some)
                    .map_err(|why| format!("field `fingerprint.{name}`: {why}")),
            };
            let device_indexes = match fp.get("deviceIndexes").and_then(Value::as_array) {
                None => Vec::new(),
                Some(list) => list
                    .iter()
                    .map(encoding::unsigned)
                    .collect::<Result<_, _>>()
                    .map_err(|why| format!("field `fingerprint.deviceIndexes`: {why}"))?,
            };
            waproto::codec::app_state_sync_key_fingerprint_to_vec(
                &wa::message::AppStateSyncKeyFingerprint {
                    raw_id: number("rawId")?,
                    current_index: number("currentIndex")?,
                    device_indexes,
                },
            )
        }
    };
    let timestamp = match map.get("timestamp") {
        None | Some(Value::Null) => 0,
        Some(v) => encoding::integer(v).map_err(|why| format!("field `timestamp`: {why}"))?,
    };
    Ok(AppStateSyncKey {
        key_data,
        fingerprint,
        timestamp,
    })
}

fn tc_token(json: &Value) -> Result<TcTokenEntry, String> {
    let map = json.as_object().ok_or("not a tc-token")?;
    let token = encoding::bytes(map.get("token").unwrap_or(&Value::Null))
        .map_err(|why| format!("field `token`: {why}"))?;
    let time = |name: &str| match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => encoding::integer(v)
            .map(Some)
            .map_err(|why| format!("field `{name}`: {why}")),
    };
    Ok(TcTokenEntry {
        token,
        token_timestamp: time("timestamp")?.unwrap_or(0),
        sender_timestamp: time("senderTimestamp")?,
    })
}

fn webhook(json: &Value) -> Result<Option<Webhook>, String> {
    let map = json
        .as_object()
        .ok_or("not the old bridge's webhook settings")?;
    let text = |name: &str| match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("field `{name}`: not a string")),
    };
    let Some(url) = text("webhookUrl")? else {
        return Ok(None);
    };
    if !crate::session_files::is_webhook_url(&url) {
        return Err("field `webhookUrl`: not an http:// or https:// URL".into());
    }
    Ok(Some(Webhook {
        url,
        token: text("webhookToken")?,
    }))
}
