//! libsignal-node's Signal state (1:1 `SessionRecord` v1 and group sender
//! keys, both as JSON) turned into whatsapp-rust's records. The library's
//! `legacy-session-interop` does the protocol work (chain roles, counter
//! offsets, archive order); this module only decodes the JSON into its model.

use serde_json::{Map, Value};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::libsignal::protocol::{
    IdentityKey, LegacyIndexedSessionV1, LegacySessionBaseKeyRoleV1, LegacySessionChainCounterV1,
    LegacySessionChainKeyV1, LegacySessionChainRoleV1, LegacySessionChainV1,
    LegacySessionDispositionV1, LegacySessionIndexV1, LegacySessionKeyPairV1,
    LegacySessionLocalContext, LegacySessionMessageKeyV1, LegacySessionPendingPreKeyV1,
    LegacySessionRatchetV1, LegacySessionRecordV1, LegacySessionV1, PublicKey,
    SenderChainKeyComponents, SenderKeyRecord, SenderKeyRecordComponents, SenderKeyStateComponents,
    SenderMessageKeyComponents, SenderSigningKeyComponents,
};

use super::encoding::{self, FieldResult};

/// wacore refuses a chain with more skipped keys than this.
const MAX_SKIPPED_KEYS: usize = 2000;

/// Our side of every session: libsignal-node does not store it.
#[derive(Clone, Copy)]
pub struct LocalIdentity {
    pub identity_public: [u8; 32],
    pub registration_id: u32,
}

pub struct ConvertedSession {
    pub record: Vec<u8>,
    /// The peer's identity, from the open session (sessions Baileys started
    /// have no identity-key file).
    pub remote_identity: Option<[u8; 32]>,
    pub warnings: Vec<String>,
}

/// Field path inside a file, for error messages.
fn at(path: &str, field: &str, why: impl std::fmt::Display) -> String {
    format!("field `{path}{field}`: {why}")
}

fn get<'a>(map: &'a Map<String, Value>, path: &str, field: &str) -> Result<&'a Value, String> {
    map.get(field)
        .filter(|v| !v.is_null())
        .ok_or_else(|| at(path, field, "missing"))
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("field `{path}`: not an object"))
}

fn field<T>(
    map: &Map<String, Value>,
    path: &str,
    name: &str,
    decode: impl Fn(&Value) -> FieldResult<T>,
) -> Result<T, String> {
    decode(get(map, path, name)?).map_err(|why| at(path, name, why))
}

fn key33(value: &Value) -> FieldResult<Bytes> {
    encoding::public_key_33(value).map(Bytes::from)
}

fn secret32(value: &Value) -> FieldResult<Bytes> {
    encoding::exact::<32>(value).map(|k| Bytes::copy_from_slice(&k))
}

/// A `session-*.json` file: `{"_sessions": {<base key>: {...}}, "version": "v1"}`.
pub fn convert_session(json: &Value, local: LocalIdentity) -> Result<ConvertedSession, String> {
    let root = object(json, "")?;
    if let Some(version) = root.get("version")
        && version != "v1"
    {
        return Err(format!("field `version`: {version}, only \"v1\" is known"));
    }
    let sessions = object(get(root, "", "_sessions")?, "_sessions")?;
    let mut warnings = Vec::new();
    let mut indexed = Vec::with_capacity(sessions.len());
    let mut remote_identity = None;
    for (index_key, session) in sessions {
        let path = format!("_sessions.{index_key}.");
        let session = decode_session(session, &path, &mut warnings)?;
        if session.index.disposition == LegacySessionDispositionV1::Current {
            remote_identity = Some(
                session.index.remote_identity_key[1..]
                    .try_into()
                    .expect("validated 33-byte key"),
            );
        }
        let index_key = encoding::public_key_33(&Value::String(index_key.clone()))
            .map_err(|why| format!("session key `{index_key}`: {why}"))?;
        indexed.push(LegacyIndexedSessionV1 {
            index_key: Bytes::from(index_key),
            session,
        });
    }
    let public = PublicKey::from_djb_public_key_bytes(&local.identity_public)
        .map_err(|e| format!("our identity key is unusable: {e}"))?;
    let context = LegacySessionLocalContext {
        identity_key: IdentityKey::new(public),
        registration_id: local.registration_id,
    };
    let record = LegacySessionRecordV1::from_indexed_sessions(indexed)
        .and_then(|record| record.into_session_record(context))
        .map_err(|e| format!("not a usable Signal session: {e}"))?;
    let record = record
        .serialize()
        .map_err(|e| format!("cannot store the session: {e}"))?;
    Ok(ConvertedSession {
        record,
        remote_identity,
        warnings,
    })
}

fn decode_session(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<LegacySessionV1, String> {
    let session = object(value, path.trim_end_matches('.'))?;
    let ratchet_path = format!("{path}currentRatchet.");
    let ratchet = object(get(session, path, "currentRatchet")?, &ratchet_path)?;
    let pair_path = format!("{ratchet_path}ephemeralKeyPair.");
    let pair = object(get(ratchet, &ratchet_path, "ephemeralKeyPair")?, &pair_path)?;
    let index_path = format!("{path}indexInfo.");
    let index = object(get(session, path, "indexInfo")?, &index_path)?;

    let role = field(index, &index_path, "baseKeyType", encoding::unsigned)?;
    let base_key_role = LegacySessionBaseKeyRoleV1::try_from(role)
        .map_err(|e| at(&index_path, "baseKeyType", e))?;
    let closed = field(index, &index_path, "closed", encoding::integer)?;
    let disposition = LegacySessionDispositionV1::from_closed_timestamp(closed)
        .map_err(|e| at(&index_path, "closed", e))?;
    let timestamp = |name| {
        field(index, &index_path, name, encoding::integer).map(|ms| u64::try_from(ms).unwrap_or(0))
    };

    let pending_pre_key = match session.get("pendingPreKey").filter(|v| !v.is_null()) {
        None => None,
        Some(pending) => {
            let pending_path = format!("{path}pendingPreKey.");
            let pending = object(pending, &pending_path)?;
            Some(LegacySessionPendingPreKeyV1 {
                pre_key_id: match pending.get("preKeyId").filter(|v| !v.is_null()) {
                    Some(id) => {
                        Some(encoding::unsigned(id).map_err(|w| at(&pending_path, "preKeyId", w))?)
                    }
                    None => None,
                },
                signed_pre_key_id: field(
                    pending,
                    &pending_path,
                    "signedKeyId",
                    encoding::unsigned,
                )?,
                base_key: field(pending, &pending_path, "baseKey", key33)?,
            })
        }
    };

    let chains_path = format!("{path}_chains");
    let chains = object(get(session, path, "_chains")?, &chains_path)?
        .iter()
        .map(|(ratchet_key, chain)| {
            decode_chain(
                ratchet_key,
                chain,
                &format!("{chains_path}.{ratchet_key}."),
                warnings,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(LegacySessionV1 {
        registration_id: field(session, path, "registrationId", encoding::unsigned)?,
        ratchet: LegacySessionRatchetV1 {
            key_pair: LegacySessionKeyPairV1 {
                public: field(pair, &pair_path, "pubKey", key33)?,
                private: field(pair, &pair_path, "privKey", secret32)?,
            },
            last_remote_ephemeral_key: field(
                ratchet,
                &ratchet_path,
                "lastRemoteEphemeralKey",
                key33,
            )?,
            previous_counter: field(ratchet, &ratchet_path, "previousCounter", encoding::integer)?,
            root_key: field(ratchet, &ratchet_path, "rootKey", secret32)?,
        },
        index: LegacySessionIndexV1 {
            base_key: field(index, &index_path, "baseKey", key33)?,
            base_key_role,
            disposition,
            used_at_ms: timestamp("used")?,
            created_at_ms: timestamp("created")?,
            remote_identity_key: field(index, &index_path, "remoteIdentityKey", key33)?,
        },
        chains,
        pending_pre_key,
    })
}

fn decode_chain(
    ratchet_key: &str,
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<LegacySessionChainV1, String> {
    let chain = object(value, path.trim_end_matches('.'))?;
    let ratchet_key = key33(&Value::String(ratchet_key.to_string()))
        .map_err(|why| format!("chain `{}`: {why}", path.trim_end_matches('.')))?;
    let role = field(chain, path, "chainType", encoding::unsigned)?;
    let role = LegacySessionChainRoleV1::try_from(role).map_err(|e| at(path, "chainType", e))?;
    let key_path = format!("{path}chainKey.");
    let chain_key = object(get(chain, path, "chainKey")?, &key_path)?;
    let counter = field(chain_key, &key_path, "counter", encoding::integer)?;
    let counter =
        LegacySessionChainCounterV1::new(counter).map_err(|e| at(&key_path, "counter", e))?;
    // A receiving chain that was closed keeps only its skipped keys.
    let key = match chain_key.get("key").filter(|v| !v.is_null()) {
        Some(key) => Some(secret32(key).map_err(|w| at(&key_path, "key", w))?),
        None => None,
    };
    let keys_path = format!("{path}messageKeys");
    let mut message_keys = match chain.get("messageKeys").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(keys) => object(keys, &keys_path)?
            .iter()
            .map(|(index, seed)| {
                let index = index
                    .parse::<u32>()
                    .map_err(|_| format!("field `{keys_path}`: index `{index}` is not a number"))?;
                let seed =
                    secret32(seed).map_err(|w| format!("field `{keys_path}.{index}`: {w}"))?;
                Ok(LegacySessionMessageKeyV1 { index, seed })
            })
            .collect::<Result<Vec<_>, String>>()?,
    };
    if message_keys.len() > MAX_SKIPPED_KEYS {
        // libsignal-node keeps more than wacore accepts; the oldest are the
        // least likely to be needed.
        message_keys.sort_unstable_by_key(|k| std::cmp::Reverse(k.index));
        warnings.push(format!(
            "{} skipped message keys in one chain: kept the newest {MAX_SKIPPED_KEYS}",
            message_keys.len()
        ));
        message_keys.truncate(MAX_SKIPPED_KEYS);
    }
    Ok(LegacySessionChainV1 {
        ratchet_key,
        role,
        chain_key: LegacySessionChainKeyV1 { counter, key },
        message_keys,
    })
}

/// A `sender-key-*.json` file: a Buffer holding JSON text, a list of states
/// oldest first (wacore keeps the current state first).
pub fn convert_sender_key(json: &Value) -> Result<Vec<u8>, String> {
    let text = encoding::bytes(json).map_err(|why| format!("content: {why}"))?;
    let states: Value = serde_json::from_slice(&text)
        .map_err(|e| format!("content is not the JSON list of sender-key states: {e}"))?;
    let states = states
        .as_array()
        .ok_or("content is not a list of sender-key states")?;
    let mut components = Vec::with_capacity(states.len());
    for (n, state) in states.iter().enumerate().rev() {
        let path = format!("[{n}].");
        let state = object(state, &path)?;
        let chain_path = format!("{path}senderChainKey.");
        let chain = object(get(state, &path, "senderChainKey")?, &chain_path)?;
        let signing_path = format!("{path}senderSigningKey.");
        let signing = object(get(state, &path, "senderSigningKey")?, &signing_path)?;
        // An empty private key means "not ours": only the sender can sign.
        let private = match signing.get("private").filter(|v| !v.is_null()) {
            None => None,
            Some(private) => {
                let raw = encoding::bytes(private).map_err(|w| at(&signing_path, "private", w))?;
                match raw.len() {
                    0 => None,
                    32 => Some(raw),
                    n => {
                        return Err(at(
                            &signing_path,
                            "private",
                            format!("{n} bytes where 32 are expected"),
                        ));
                    }
                }
            }
        };
        let keys = match state.get("senderMessageKeys").filter(|v| !v.is_null()) {
            None => Vec::new(),
            Some(keys) => keys
                .as_array()
                .ok_or_else(|| at(&path, "senderMessageKeys", "not a list"))?
                .iter()
                .map(|key| {
                    let key = object(key, &format!("{path}senderMessageKeys"))?;
                    let key_path = format!("{path}senderMessageKeys.");
                    Ok(SenderMessageKeyComponents {
                        iteration: field(key, &key_path, "iteration", encoding::unsigned)?,
                        seed: field(key, &key_path, "seed", encoding::exact::<32>)?.to_vec(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?,
        };
        components.push(SenderKeyStateComponents {
            key_id: field(state, &path, "senderKeyId", encoding::unsigned)?,
            chain_key: SenderChainKeyComponents {
                iteration: field(chain, &chain_path, "iteration", encoding::unsigned)?,
                seed: field(chain, &chain_path, "seed", encoding::exact::<32>)?.to_vec(),
            },
            signing_key: SenderSigningKeyComponents {
                public: field(signing, &signing_path, "public", encoding::public_key_33)?,
                private,
            },
            message_keys: keys,
        });
    }
    SenderKeyRecord::from_components(SenderKeyRecordComponents { states: components })
        .and_then(|record| record.serialize())
        .map_err(|e| format!("not a usable sender key: {e}"))
}
