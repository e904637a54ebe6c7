//! Simulated people who write to the linked device: each has a Signal
//! identity and builds sessions from the pre-keys the client uploaded, the
//! way a real phone does after fetching them from the server, so what the
//! real client receives is a genuine `pkmsg` / `msg` it has to decrypt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use wacore::libsignal::protocol::{
    CiphertextMessage, Direction, GenericSignedPreKey, IdentityChange, IdentityKey,
    IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord,
    PreKeySignalMessage, PreKeyStore, ProtocolAddress, PublicKey, SenderKeyName, SenderKeyRecord,
    SenderKeyStore, SessionRecord, SessionStore, SignalMessage, SignedPreKeyId, SignedPreKeyRecord,
    SignedPreKeyStore, Timestamp, UsePQRatchet, create_sender_key_distribution_message,
    group_encrypt, message_decrypt, message_encrypt, process_prekey_bundle,
};
use wacore::messages::MessageUtils;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::NodeContent;
use waproto::buffa::Message as _;
use waproto::whatsapp as wa;

type SignalResult<T> = wacore::libsignal::protocol::error::Result<T>;

/// The public half of a device's keys, as its pre-key upload told them.
#[derive(Debug, Clone)]
pub struct UploadedKeys {
    pub registration_id: u32,
    pub identity: [u8; 32],
    pub signed_pre_key: (u32, [u8; 32], Vec<u8>),
    /// One-time pre-keys not handed out yet (each serves one new session).
    pub one_time: Vec<(u32, [u8; 32])>,
}

impl UploadedKeys {
    /// Reads `<iq xmlns="encrypt" type="set">`'s children; None if this IQ
    /// is not a pre-key upload.
    pub fn from_upload(iq: &Node) -> Option<UploadedKeys> {
        let bytes = |node: &Node| match &node.content {
            Some(NodeContent::Bytes(b)) => Some(b.clone()),
            _ => None,
        };
        let child_bytes = |node: &Node, tag: &str| node.get_optional_child(tag).and_then(bytes);
        let id24 = |b: Vec<u8>| -> Option<u32> {
            (b.len() == 3).then(|| u32::from_be_bytes([0, b[0], b[1], b[2]]))
        };
        let key32 = |b: Vec<u8>| -> Option<[u8; 32]> { b.try_into().ok() };
        let registration = child_bytes(iq, "registration")?;
        let registration_id = u32::from_be_bytes(registration.try_into().ok()?);
        let identity = key32(child_bytes(iq, "identity")?)?;
        let skey = iq.get_optional_child("skey")?;
        let signed_pre_key = (
            id24(child_bytes(skey, "id")?)?,
            key32(child_bytes(skey, "value")?)?,
            child_bytes(skey, "signature")?,
        );
        let one_time = iq
            .get_optional_child("list")?
            .children()
            .unwrap_or_default()
            .iter()
            .filter_map(|key| {
                Some((
                    id24(child_bytes(key, "id")?)?,
                    key32(child_bytes(key, "value")?)?,
                ))
            })
            .collect();
        Some(UploadedKeys {
            registration_id,
            identity,
            signed_pre_key,
            one_time,
        })
    }

    /// `<digest>` answering the device's key-bundle check: what the server
    /// holds for it (one-time pre-keys not handed out yet), with the SHA-1
    /// the device recomputes from its own copies to see that they match.
    pub fn digest(&self) -> Node {
        let id24 = |id: u32| id.to_be_bytes()[1..].to_vec();
        let (skey_id, skey_value, skey_signature) = &self.signed_pre_key;
        let one_time_values: Vec<&[u8]> = self.one_time.iter().map(|(_, v)| &v[..]).collect();
        let hash = wacore::prekeys::compute_key_bundle_digest(
            &self.identity,
            skey_value,
            skey_signature,
            &one_time_values,
        );
        let leaf = |tag: &'static str, bytes: Vec<u8>| NodeBuilder::new(tag).bytes(bytes).build();
        NodeBuilder::new("digest")
            .children([
                leaf("registration", self.registration_id.to_be_bytes().to_vec()),
                leaf("type", vec![5]),
                leaf("identity", self.identity.to_vec()),
                NodeBuilder::new("skey")
                    .children([
                        leaf("id", id24(*skey_id)),
                        leaf("value", skey_value.to_vec()),
                        leaf("signature", skey_signature.clone()),
                    ])
                    .build(),
                NodeBuilder::new("list")
                    .children(self.one_time.iter().map(|(id, _)| leaf("id", id24(*id))))
                    .build(),
                leaf("hash", hash),
            ])
            .build()
    }
}

/// Who writes, as the server addresses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// LID digits: how the server names the sender when it hides numbers.
    pub lid: String,
    /// Phone digits.
    pub pn: String,
    pub name: String,
}

impl Person {
    fn new(lid: &str, pn: &str, name: &str) -> Person {
        Person {
            lid: lid.into(),
            pn: pn.into(),
            name: name.into(),
        }
    }

    pub fn asha() -> Person {
        Person::new("260477250707536", "919075167132", "Asha")
    }

    pub fn ben() -> Person {
        Person::new("100000000000009", "447700900123", "Ben")
    }

    pub fn carla() -> Person {
        Person::new("200000000000077", "15550001111", "Carla")
    }

    pub fn dev() -> Person {
        Person::new("300000000000005", "4915112345678", "Dev")
    }

    /// Person `n` of a crowd (a benchmark's contacts and group members):
    /// LID `7` and `n` in 14 digits, number `4917` and `n` in 8 digits,
    /// name `Person <n>`. Distinct people for distinct `n`, and none of
    /// them is one of the named people above or the simulated account.
    pub fn numbered(n: u32) -> Person {
        assert!(n < 100_000_000, "numbered people have 8 digits");
        Person {
            lid: format!("7{n:014}"),
            pn: format!("4917{n:08}"),
            name: format!("Person {n}"),
        }
    }
}

/// How the stanza names the sender (ARCHITECTURE.md: a sender's number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `from="<pn>@s.whatsapp.net"`.
    Pn,
    /// `from="<lid>@lid"` with `sender_pn` carrying the number.
    LidWithPn,
    /// `from="<lid>@lid"` and nothing else: the number is hidden.
    LidHidden,
}

/// One person's Signal state toward the devices they wrote to, and the
/// keys their phone offers to those who write to them.
pub struct Contact {
    identity: MemIdentity,
    sessions: MemSessions,
    sender_keys: MemSenderKeys,
    pre_keys: MemPreKeys,
    signed_pre_key: (u32, KeyPair, Vec<u8>),
}

/// The id of every contact's signed pre-key (one each is enough here).
const SIGNED_PRE_KEY_ID: u32 = 1;

impl Contact {
    pub fn new() -> Contact {
        let mut rng = rand::rng();
        let pair = IdentityKeyPair::generate(&mut rng);
        let signed = KeyPair::generate(&mut rng);
        let signature = pair
            .private_key()
            .calculate_signature(&signed.public_key.serialize(), &mut rng)
            .expect("signing a fresh key")
            .to_vec();
        Contact {
            identity: MemIdentity {
                pair,
                registration_id: rand::random::<u32>() & 0x3fff,
                known: Arc::default(),
            },
            sessions: MemSessions::default(),
            sender_keys: MemSenderKeys::default(),
            pre_keys: MemPreKeys::default(),
            signed_pre_key: (SIGNED_PRE_KEY_ID, signed, signature),
        }
    }

    /// The `<user>` of a pre-key fetch answer for `jid`: this person's
    /// registration, identity, a fresh one-time pre-key and the signed one.
    pub fn bundle(&mut self, jid: &str) -> Node {
        let one_time = KeyPair::generate(&mut rand::rng());
        let id = self.pre_keys.0.lock().unwrap().len() as u32 + 1;
        self.pre_keys
            .0
            .lock()
            .unwrap()
            .insert(id.into(), PreKeyRecord::new(id.into(), &one_time));
        let key = |id: u32, public: &PublicKey| {
            vec![
                NodeBuilder::new("id")
                    .bytes(id.to_be_bytes()[1..].to_vec())
                    .build(),
                NodeBuilder::new("value")
                    .bytes(public.public_key_bytes().to_vec())
                    .build(),
            ]
        };
        let (spk_id, spk, signature) = &self.signed_pre_key;
        let mut skey = key(*spk_id, &spk.public_key);
        skey.push(
            NodeBuilder::new("signature")
                .bytes(signature.clone())
                .build(),
        );
        NodeBuilder::new("user")
            .attr("jid", jid.to_string())
            .children([
                NodeBuilder::new("registration")
                    .bytes(self.identity.registration_id.to_be_bytes().to_vec())
                    .build(),
                NodeBuilder::new("identity")
                    .bytes(self.identity.pair.public_key().public_key_bytes().to_vec())
                    .build(),
                NodeBuilder::new("key")
                    .children(key(id, &one_time.public_key))
                    .build(),
                NodeBuilder::new("skey").children(skey).build(),
            ])
            .build()
    }

    /// Drops the session toward `address`: the next message to it starts
    /// a new one from its pre-keys.
    pub fn forget(&mut self, address: &ProtocolAddress) {
        self.sessions.0.lock().unwrap().remove(address);
    }

    /// Decrypts what `sender` encrypted to this person (`kind` "pkmsg" or
    /// "msg") and returns the message.
    pub async fn decrypt(
        &mut self,
        sender: &ProtocolAddress,
        kind: &str,
        ciphertext: &[u8],
    ) -> anyhow::Result<wa::Message> {
        let parsed = match kind {
            "pkmsg" => {
                CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(ciphertext)?)
            }
            "msg" => CiphertextMessage::SignalMessage(SignalMessage::try_from(ciphertext)?),
            other => anyhow::bail!("cannot decrypt an enc of type {other}"),
        };
        let (spk_id, spk, signature) = &self.signed_pre_key;
        let signed = MemSignedPreKey(SignedPreKeyRecord::new(
            (*spk_id).into(),
            Timestamp::from_epoch_millis(0),
            spk,
            signature,
        ));
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
        let decrypted = message_decrypt(
            &parsed,
            sender,
            &mut self.sessions,
            &mut self.identity,
            &mut self.pre_keys,
            &signed,
            &mut rng,
            UsePQRatchet::No,
        )
        .await?;
        let unpadded = MessageUtils::unpad_message_ref(&decrypted.plaintext, 2)?;
        Ok(wa::Message::decode_from_slice(unpadded)?)
    }

    /// A group message as a phone sends it: the group's sender key handed
    /// to `device` inside a 1:1 message, and the text encrypted with that
    /// key: `((1:1 bytes, kind), skmsg bytes)`.
    pub async fn encrypt_group(
        &mut self,
        group: &str,
        address: &ProtocolAddress,
        keys: &Mutex<UploadedKeys>,
        message: &wa::Message,
    ) -> anyhow::Result<((Vec<u8>, &'static str), Vec<u8>)> {
        let name = SenderKeyName::new(group.to_string(), "me".to_string());
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
        let distribution =
            create_sender_key_distribution_message(&name, &mut self.sender_keys, &mut rng).await?;
        let carrier = wa::Message {
            sender_key_distribution_message: waproto::buffa::MessageField::some(
                wa::message::SenderKeyDistributionMessage {
                    group_id: Some(group.to_string()),
                    axolotl_sender_key_distribution_message: Some(
                        distribution.serialized().to_vec(),
                    ),
                },
            ),
            ..Default::default()
        };
        let pairwise = self.encrypt(address, keys, &carrier).await?;
        let padded = MessageUtils::pad_message_v2(message.encode_to_vec());
        let sealed = group_encrypt(&mut self.sender_keys, &name, &padded, &mut rng).await?;
        Ok((pairwise, sealed.serialized().to_vec()))
    }

    /// Encrypts `message` for `device` (named `address`), building the
    /// session from its uploaded keys on first use: `(bytes, "pkmsg"|"msg")`.
    pub async fn encrypt(
        &mut self,
        address: &ProtocolAddress,
        keys: &Mutex<UploadedKeys>,
        message: &wa::Message,
    ) -> anyhow::Result<(Vec<u8>, &'static str)> {
        if !self.sessions.has_session(address).await? {
            let bundle = {
                let mut keys = keys.lock().unwrap();
                let one_time = keys.one_time.pop();
                let (spk_id, spk_pub, spk_sig) = keys.signed_pre_key.clone();
                PreKeyBundle::new(
                    keys.registration_id,
                    0.into(),
                    one_time
                        .map(|(id, key)| -> anyhow::Result<_> {
                            Ok((id.into(), PublicKey::from_djb_public_key_bytes(&key)?))
                        })
                        .transpose()?,
                    spk_id.into(),
                    PublicKey::from_djb_public_key_bytes(&spk_pub)?,
                    spk_sig,
                    IdentityKey::new(PublicKey::from_djb_public_key_bytes(&keys.identity)?),
                )?
            };
            // A Send generator: the future may move between threads.
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
            process_prekey_bundle(
                address,
                &mut self.sessions,
                &mut self.identity,
                &bundle,
                &mut rng,
                UsePQRatchet::No,
            )
            .await?;
        }
        let padded = MessageUtils::pad_message_v2(message.encode_to_vec());
        let sealed =
            message_encrypt(&padded, address, &mut self.sessions, &mut self.identity).await?;
        Ok(match sealed {
            CiphertextMessage::PreKeySignalMessage(m) => (m.serialized().to_vec(), "pkmsg"),
            CiphertextMessage::SignalMessage(m) => (m.serialized().to_vec(), "msg"),
            other => anyhow::bail!("unexpected ciphertext {:?}", other.message_type()),
        })
    }
}

/// A Signal message (`msg`) that parses but that nobody can decrypt: a
/// fresh ratchet key, random ciphertext, and a MAC made with keys no session
/// holds. A device with a session with the sender fails on the MAC, one
/// without fails for want of a session; either way it asks the sender to
/// send the message again (a retry receipt). Random bytes would not do:
/// they do not parse, and the client refuses those without a retry.
pub fn unreadable_signal_message() -> anyhow::Result<Vec<u8>> {
    let fresh = || KeyPair::generate(&mut rand::rng()).public_key;
    let stranger = || IdentityKey::new(fresh());
    let mac_key: [u8; 32] = rand::random();
    let ciphertext: [u8; 32] = rand::random();
    let message = SignalMessage::new(
        3,
        &mac_key,
        fresh(),
        0,
        0,
        &ciphertext,
        &stranger(),
        &stranger(),
    )?;
    Ok(message.serialized().to_vec())
}

#[derive(Clone)]
struct MemIdentity {
    pair: IdentityKeyPair,
    registration_id: u32,
    known: Arc<Mutex<HashMap<ProtocolAddress, IdentityKey>>>,
}

#[async_trait]
impl IdentityKeyStore for MemIdentity {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.pair.clone())
    }
    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }
    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let mut known = self.known.lock().unwrap();
        let changed = known.get(address).is_some_and(|k| k != identity);
        known.insert(address.clone(), *identity);
        Ok(IdentityChange::from_changed(changed))
    }
    async fn is_trusted_identity(
        &self,
        _: &ProtocolAddress,
        _: &IdentityKey,
        _: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }
    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.lock().unwrap().get(address).cloned())
    }
}

#[derive(Clone, Default)]
struct MemSessions(Arc<Mutex<HashMap<ProtocolAddress, SessionRecord>>>);

#[async_trait]
impl SessionStore for MemSessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.lock().unwrap().get(address).cloned())
    }
    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.lock().unwrap().contains_key(address))
    }
    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.lock().unwrap().insert(address.clone(), record);
        Ok(())
    }
}

#[derive(Clone, Default)]
struct MemSenderKeys(Arc<Mutex<HashMap<SenderKeyName, SenderKeyRecord>>>);

#[async_trait]
impl SenderKeyStore for MemSenderKeys {
    async fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: SenderKeyRecord,
    ) -> SignalResult<()> {
        self.0.lock().unwrap().insert(name.clone(), record);
        Ok(())
    }
    async fn load_sender_key(&self, name: &SenderKeyName) -> SignalResult<Option<SenderKeyRecord>> {
        Ok(self.0.lock().unwrap().get(name).cloned())
    }
}

#[derive(Clone, Default)]
struct MemPreKeys(Arc<Mutex<HashMap<PreKeyId, PreKeyRecord>>>);

#[async_trait]
impl PreKeyStore for MemPreKeys {
    async fn get_pre_key(&self, id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(wacore::libsignal::protocol::SignalProtocolError::InvalidPreKeyId)
    }
    async fn save_pre_key(&mut self, id: PreKeyId, record: &PreKeyRecord) -> SignalResult<()> {
        self.0.lock().unwrap().insert(id, record.clone());
        Ok(())
    }
    async fn remove_pre_key(&mut self, id: PreKeyId) -> SignalResult<()> {
        self.0.lock().unwrap().remove(&id);
        Ok(())
    }
}

/// The one signed pre-key a contact has.
struct MemSignedPreKey(SignedPreKeyRecord);

#[async_trait]
impl SignedPreKeyStore for MemSignedPreKey {
    async fn get_signed_pre_key(&self, _: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        Ok(self.0.clone())
    }
    async fn save_signed_pre_key(
        &mut self,
        _: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        self.0 = record.clone();
        Ok(())
    }
}
