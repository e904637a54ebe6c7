//! `import-baileys` on a folder Baileys itself wrote: the imported store is
//! the same linked device (expected.json), the messages peers sent after
//! the folder was saved decrypt through it (vectors.json), and what we
//! encrypt on it the peers' own libsignal-node state decrypts (peers.json).
//! The checks are `fixture_device`'s, shared with the PostgreSQL store's.

use crate::fixture_device;
use crate::support;

use std::sync::Arc;

use support::baileys::{copy_auth, import};
use wabridge::import::Outcome;
use wabridge::paths::DataDir;
use whatsapp_rust::prelude::SqliteStore;

/// Imports the fixture as session "shop"; returns its store.
async fn imported(tmp: &tempfile::TempDir) -> SqliteStore {
    let old = tmp.path().join("old/shop");
    copy_auth(&old);
    let data = DataDir::new(tmp.path().join("data"));
    let report = import(&data, &old, false).await;
    assert_eq!(report.sessions[0].outcome, Outcome::Imported, "{report}");
    let path = tmp.path().join("data/sessions/shop/whatsapp.db");
    SqliteStore::new(path.to_str().unwrap()).await.unwrap()
}

#[tokio::test]
async fn the_imported_device_is_the_one_baileys_linked() {
    let tmp = tempfile::tempdir().unwrap();
    fixture_device::is_the_linked_device(&imported(&tmp).await).await;
}

#[tokio::test]
async fn mappings_pre_keys_and_tokens_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    fixture_device::mappings_pre_keys_and_tokens_read_back(&imported(&tmp).await).await;
}

#[tokio::test]
async fn every_held_back_message_decrypts_through_the_imported_store() {
    let tmp = tempfile::tempdir().unwrap();
    fixture_device::held_back_messages_decrypt(Arc::new(imported(&tmp).await)).await;
}

#[tokio::test]
async fn what_we_encrypt_on_an_imported_session_the_peer_decrypts() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(imported(&tmp).await);
    fixture_device::peers_decrypt_what_we_encrypt(store, tmp.path()).await;
}
