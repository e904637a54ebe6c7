//! What the Baileys fixture's linked device must be, checked on any store
//! that holds it: the SQLite store `import-baileys` writes
//! (`import_fixture`), and the same state after a round trip through
//! PostgreSQL (`pg_store`). Decryption runs through whatsapp-rust's own
//! store adapter, the path the client uses for every incoming message.

use crate::support;

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use support::baileys::fixture_json;
use wacore::libsignal::protocol::{
    CiphertextMessage, PreKeySignalMessage, ProtocolAddress, SenderKeyName, SignalMessage,
    UsePQRatchet, group_decrypt, message_decrypt, message_encrypt,
};
use wacore::store::traits::{Backend, DeviceStore, SignalStore};
use whatsapp_rust::prelude::SqliteStore;
use whatsapp_rust::store::persistence_manager::PersistenceManager;
use whatsapp_rust::store::signal_adapter::SignalProtocolStoreAdapter;
use whatsapp_rust::store::signal_cache::SignalStoreCache;

pub fn b64(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().unwrap()).unwrap()
}

/// whatsapp-rust's own Signal stores over a backend.
pub async fn signal_stores(backend: Arc<dyn Backend>) -> SignalProtocolStoreAdapter {
    let manager = PersistenceManager::new(backend).await.unwrap();
    SignalProtocolStoreAdapter::new(
        manager.get_device_arc().await,
        Arc::new(SignalStoreCache::new()),
    )
}

/// The Signal address whatsapp-rust gives a peer JID (`u@lid` → `u@lid.0`).
fn address_of(jid: &str) -> ProtocolAddress {
    let (user, server) = jid.split_once('@').unwrap();
    let server = if server == "s.whatsapp.net" {
        "c.us"
    } else {
        server
    };
    ProtocolAddress::new(&format!("{user}@{server}"), 0.into())
}

/// The device is the one Baileys linked (expected.json), with its app-state
/// key.
pub async fn is_the_linked_device(store: &dyn Backend) {
    let device = store.load().await.unwrap().expect("a device row");
    let want = fixture_json("expected.json");
    let key = |pair: &wacore::libsignal::protocol::KeyPair| {
        STANDARD.encode(pair.public_key.public_key_bytes())
    };
    assert_eq!(device.pn.unwrap().to_string(), want["pn"]);
    assert_eq!(device.lid.unwrap().to_string(), want["lid"]);
    assert_eq!(key(&device.noise_key), want["noisePub"]);
    assert_eq!(key(&device.identity_key), want["identityPub"]);
    assert_eq!(key(&device.signed_pre_key), want["signedPreKeyPub"]);
    assert_eq!(device.signed_pre_key_id, want["signedPreKeyId"]);
    assert_eq!(device.registration_id, want["registrationId"]);
    assert_eq!(STANDARD.encode(device.adv_secret_key), want["advSecret"]);
    let account = device.account.expect("the ADV identity");
    assert_eq!(
        STANDARD.encode(account.account_signature_key.as_ref().unwrap()),
        want["accountSignatureKey"]
    );
    assert_eq!(device.push_name, want["pushName"]);
    assert_eq!(device.next_pre_key_id, want["nextPreKeyId"]);
    assert_eq!(
        device.first_unupload_pre_key_id,
        want["firstUnuploadedPreKeyId"]
    );
    assert!(device.server_has_prekeys);
    // Not stored: filled on load, as the library's SQLite store fills them.
    assert_eq!(
        *device.device_props,
        *wacore::store::device::DEVICE_PROPS,
        "device props"
    );
    let key_id = b64(&want["appStateKeyId"]);
    let sync_key = store.get_sync_key(&key_id).await.unwrap();
    assert!(sync_key.is_some_and(|k| k.key_data.len() == 32));
    assert_eq!(store.get_latest_sync_key_id().await.unwrap(), Some(key_id));
}

/// LID mappings, the remaining pre-keys, tokens and identities.
pub async fn mappings_pre_keys_and_tokens_read_back(store: &dyn Backend) {
    let alice = store.get_lid_mapping("260477250707536").await.unwrap();
    assert_eq!(alice.unwrap().phone_number, "919075167132");
    let own = store.get_pn_mapping("15550001111").await.unwrap();
    assert_eq!(own.unwrap().lid, "100000000000001");
    // Pre-keys 5..=30 remain (1..=4 were consumed); Baileys' ids are kept.
    for id in 5..=30 {
        assert!(
            store.load_prekey(id).await.unwrap().is_some(),
            "pre-key {id}"
        );
    }
    assert!(store.load_prekey(4).await.unwrap().is_none());
    assert_eq!(store.get_max_prekey_id().await.unwrap(), 30);
    // Keyed by LID: bob's phone number has no mapping, alice's token is
    // under her LID.
    let alice_token = store.get_tc_token("260477250707536").await.unwrap();
    assert_eq!(alice_token.unwrap().token, b"alice-tc-token");
    let bob_token = store.get_tc_token("447700900123").await.unwrap();
    assert_eq!(bob_token.unwrap().token, b"bob-tc-token");
    // Carol has no identity file: her key comes from the open session.
    let carol = store.load_identity("88888888888888:3@lid.0").await.unwrap();
    assert!(carol.is_some());
}

/// Every message peers sent after the folder was saved (vectors.json)
/// decrypts.
pub async fn held_back_messages_decrypt(backend: Arc<dyn Backend>) {
    let mut stores = signal_stores(backend).await;
    let vectors = fixture_json("vectors.json");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
    for vector in vectors.as_array().unwrap() {
        let note = vector["note"].as_str().unwrap();
        let ciphertext = b64(&vector["ciphertext"]);
        let sender = address_of(vector["jid"].as_str().unwrap());
        let plaintext = match vector["type"].as_str().unwrap() {
            "skmsg" => {
                let name = SenderKeyName::new(
                    vector["group"].as_str().unwrap().to_string(),
                    sender.as_str().to_string(),
                );
                group_decrypt(&ciphertext, &mut stores.sender_key_store, &name)
                    .await
                    .unwrap_or_else(|e| panic!("{note}: {e}"))
            }
            kind => {
                let message = match kind {
                    "pkmsg" => CiphertextMessage::PreKeySignalMessage(
                        PreKeySignalMessage::try_from(&ciphertext[..]).unwrap(),
                    ),
                    _ => CiphertextMessage::SignalMessage(
                        SignalMessage::try_from(&ciphertext[..]).unwrap(),
                    ),
                };
                message_decrypt(
                    &message,
                    &sender,
                    &mut stores.session_store,
                    &mut stores.identity_store,
                    &mut stores.pre_key_store,
                    &stores.signed_pre_key_store,
                    &mut rng,
                    UsePQRatchet::No,
                )
                .await
                .unwrap_or_else(|e| panic!("{note}: {e}"))
                .plaintext
                .to_vec()
            }
        };
        assert_eq!(plaintext, b64(&vector["plaintext"]), "{note}");
    }
}

/// What we encrypt on the device's sessions, each peer's own
/// libsignal-node state (peers.json) decrypts; their stores go in `scratch`.
pub async fn peers_decrypt_what_we_encrypt(backend: Arc<dyn Backend>, scratch: &Path) {
    let mut ours = signal_stores(backend).await;
    let peers = fixture_json("peers.json");
    let me = peers["meAddr"].as_str().unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
    // (peer, their Signal address in our store): carol's session was
    // started by Baileys (a pending pre-key, no identity file), on her
    // device 3; the others were started by the peers.
    for (peer, address) in [
        ("alice", "260477250707536@lid"),
        ("bob", "447700900123@c.us"),
        ("carol", "88888888888888:3@lid"),
        ("dave", "12025550143@c.us"),
    ] {
        let to = ProtocolAddress::new(address, 0.into());
        let text = format!("to {peer} from the linked device");
        let sealed = message_encrypt(
            text.as_bytes(),
            &to,
            &mut ours.session_store,
            &mut ours.identity_store,
        )
        .await
        .unwrap_or_else(|e| panic!("encrypt to {peer}: {e}"));

        let peer_db = scratch.join(format!("{peer}.db"));
        let theirs = Arc::new(peer_store(&peer_db, &peers[peer], me).await);
        let mut theirs = signal_stores(theirs).await;
        let our_address = ProtocolAddress::new("100000000000001:7@lid", 0.into());
        let opened = message_decrypt(
            &sealed,
            &our_address,
            &mut theirs.session_store,
            &mut theirs.identity_store,
            &mut theirs.pre_key_store,
            &theirs.signed_pre_key_store,
            &mut rng,
            UsePQRatchet::No,
        )
        .await
        .unwrap_or_else(|e| panic!("{peer} decrypts: {e}"));
        assert_eq!(opened.plaintext.to_vec(), text.into_bytes(), "{peer}");
    }
}

/// A store holding a peer's own libsignal-node state, as their device.
async fn peer_store(path: &Path, state: &Value, me: &str) -> SqliteStore {
    let store = SqliteStore::new(path.to_str().unwrap()).await.unwrap();
    store.create().await.unwrap();
    let mut device = store.load().await.unwrap().unwrap();
    let public = b64(&state["identity"]["pubKey"]);
    let private = b64(&state["identity"]["privKey"]);
    let private = wacore::libsignal::protocol::PrivateKey::deserialize(&private).unwrap();
    device.identity_key = wacore::libsignal::protocol::KeyPair::new(
        wacore::libsignal::protocol::PublicKey::deserialize(&public).unwrap(),
        private,
    );
    let registration_id = state["regId"].as_u64().unwrap() as u32;
    device.registration_id = registration_id;
    store.save(&device).await.unwrap();
    let record = wabridge::import::libsignal_session_record(
        &state["sessions"][me],
        public[1..].try_into().unwrap(),
        registration_id,
    )
    .unwrap();
    store
        .put_session("100000000000001:7@lid.0", &record)
        .await
        .unwrap();
    store
}
