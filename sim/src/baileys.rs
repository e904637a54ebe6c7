//! The Baileys fixture (`../shared/fixtures/baileys-auth-sample`, made by
//! Baileys and libsignal-node themselves) and helpers to import it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wabridge::import::{ImportOptions, ImportReport};
use wabridge::paths::DataDir;

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/baileys-auth-sample")
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    let text = fs::read_to_string(fixture_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Copies the fixture's auth folder to `to` (writable), dated an hour ago
/// as a folder the old bridge stopped using would be.
pub fn copy_auth(to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(fixture_dir().join("auth")).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        fs::copy(entry.path(), &target).unwrap();
        let mut perms = fs::metadata(&target).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&target, perms).unwrap();
    }
    age(to);
}

/// Dates every file in `folder` an hour back.
pub fn age(folder: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    for entry in fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
    }
}

pub async fn import(data: &DataDir, source: &Path, dry_run: bool) -> ImportReport {
    let _ = rustls::crypto::ring::default_provider().install_default();
    wabridge::import::import(
        data,
        &ImportOptions {
            source: source.to_path_buf(),
            as_id: None,
            dry_run,
        },
    )
    .await
    .unwrap()
}
