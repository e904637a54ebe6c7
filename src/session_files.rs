//! One session's folder: the WhatsApp store (SQLite, with its `-wal` and
//! `-shm` companions) and the settings saved beside it.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::backend::MediaMode;
use crate::paths::{self, DataDir, SessionId};

/// Webhooks are posted over HTTP(S) only; every way a URL comes in (config,
/// API, dashboard, import) refuses anything else.
pub fn is_webhook_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

const STORE_FILE: &str = "whatsapp.db";
const SETTINGS_FILE: &str = "session.json";
/// Everything SQLite may create for one database.
const STORE_SUFFIXES: [&str; 4] = ["", "-wal", "-shm", "-journal"];

/// Saved with the session and reloaded at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionSettings {
    pub webhook_url: Option<String>,
    pub webhook_token: Option<String>,
    /// Set when the device was unlinked: the session stays listed, waiting
    /// for the operator to ask for a new pairing, instead of showing a QR.
    pub logged_out: bool,
    /// With `[nats]`: the session's subject prefix (its events go to
    /// `<prefix>.<session>.<event>`); None: the config's; empty: none of
    /// its events go to NATS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_subject: Option<String>,
    /// Calls to the session's number are turned down (a business number
    /// nobody answers) instead of ringing on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reject_calls: bool,
    /// With `reject_calls`: the text the caller gets after the rejection
    /// ("This number does not take calls; please write").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_reply: Option<String>,
    /// How the webhook carries media: base64 inside the POST (default, the
    /// old bridge's) or a URL on wabridge's API.
    #[serde(skip_serializing_if = "is_default")]
    pub media: MediaMode,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[derive(Debug, Clone)]
pub struct SessionFiles {
    pub id: SessionId,
    pub dir: PathBuf,
}

impl SessionFiles {
    pub fn new(data: &DataDir, id: &SessionId) -> Self {
        SessionFiles {
            id: id.clone(),
            dir: data.session_dir(id),
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.join(STORE_FILE)
    }

    fn settings_path(&self) -> PathBuf {
        self.dir.join(SETTINGS_FILE)
    }

    /// Creates the folder (0700) and an empty store file (0600) so that the
    /// files SQLite adds later inherit owner-only permissions.
    pub fn prepare(&self) -> std::io::Result<()> {
        paths::create_private_dir(&self.dir)?;
        paths::ensure_private_file(&self.store_path())
    }

    /// True when a store with content exists: the session has (or had) a
    /// linked device.
    pub fn has_store(&self) -> bool {
        fs::metadata(self.store_path()).is_ok_and(|m| m.len() > 0)
    }

    /// Deletes the credentials (every store file) and nothing else.
    pub fn delete_credentials(&self) -> std::io::Result<()> {
        for suffix in STORE_SUFFIXES {
            let path = self.dir.join(format!("{STORE_FILE}{suffix}"));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Missing settings are the defaults. Unreadable ones are an error: a
    /// file that does not parse is kept aside (renamed, never deleted) and
    /// named in the error, one that cannot be read stays where it is.
    pub fn load_settings(&self) -> Result<SessionSettings, SettingsError> {
        let path = self.settings_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SessionSettings::default());
            }
            Err(e) => {
                return Err(SettingsError::Unreadable(format!(
                    "{}: {e}",
                    path.display()
                )));
            }
        };
        serde_json::from_str(&text).map_err(|e| {
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ");
            let aside = path.with_extension(format!("json.unreadable-{stamp}"));
            match fs::rename(&path, &aside) {
                Ok(()) => SettingsError::Unreadable(format!("{e}; kept as {}", aside.display())),
                Err(move_error) => SettingsError::Unreadable(format!(
                    "{e}; could not be moved aside: {move_error}"
                )),
            }
        })
    }

    /// Reads, changes and writes the settings as one step: the API and the
    /// session's task never interleave a read-modify-write of the same file.
    pub fn update_settings(
        &self,
        change: impl FnOnce(&mut SessionSettings),
    ) -> Result<SessionSettings, SettingsError> {
        let _one_writer = SETTINGS_WRITES.lock().unwrap_or_else(|p| p.into_inner());
        let mut settings = self.load_settings()?;
        change(&mut settings);
        self.write_settings(&settings)?;
        Ok(settings)
    }

    /// Replaces the settings whole (a new session, a restore).
    pub fn save_settings(&self, settings: &SessionSettings) -> Result<(), SettingsError> {
        let _one_writer = SETTINGS_WRITES.lock().unwrap_or_else(|p| p.into_inner());
        self.write_settings(settings)
    }

    fn write_settings(&self, settings: &SessionSettings) -> Result<(), SettingsError> {
        paths::create_private_dir(&self.dir)?;
        let json = serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?;
        Ok(paths::write_private_file(&self.settings_path(), &json)?)
    }
}

/// Settings writes are rare (a webhook change, a logout): one lock for all
/// sessions keeps them simple and serial.
static SETTINGS_WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("session settings unreadable: {0}")]
    Unreadable(String),
    #[error("cannot write session settings: {0}")]
    Write(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn files(tmp: &tempfile::TempDir) -> SessionFiles {
        SessionFiles::new(&DataDir::new(tmp.path()), &SessionId::parse("s").unwrap())
    }

    #[test]
    fn settings_round_trip_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let files = files(&tmp);
        let settings = SessionSettings {
            webhook_url: Some("http://127.0.0.1:9/hook".into()),
            webhook_token: Some("t".into()),
            logged_out: false,
            nats_subject: Some("erp.acme".into()),
            reject_calls: true,
            call_reply: Some("Please write".into()),
            media: MediaMode::Url,
        };
        files.save_settings(&settings).unwrap();
        assert_eq!(files.load_settings().unwrap(), settings);
        let mode = fs::metadata(files.settings_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn unreadable_settings_are_an_error_and_kept_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let files = files(&tmp);
        fs::create_dir_all(&files.dir).unwrap();
        fs::write(files.settings_path(), "{not json").unwrap();
        let error = files.load_settings().unwrap_err().to_string();
        assert!(error.contains("kept as"), "{error}");
        let aside: Vec<_> = fs::read_dir(&files.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("session.json.unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert!(error.contains(&aside[0].display().to_string()), "{error}");
        assert_eq!(fs::read_to_string(&aside[0]).unwrap(), "{not json");
        // A change cannot silently start from defaults either.
        fs::write(files.settings_path(), "not json either").unwrap();
        assert!(files.update_settings(|s| s.logged_out = true).is_err());
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let files = files(&tmp);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..50 {
                    files
                        .update_settings(|s| s.webhook_url = Some("http://127.0.0.1:9/a".into()))
                        .unwrap();
                }
            });
            scope.spawn(|| {
                for _ in 0..50 {
                    files.update_settings(|s| s.logged_out = true).unwrap();
                }
            });
        });
        let settings = files.load_settings().unwrap();
        assert_eq!(
            settings.webhook_url.as_deref(),
            Some("http://127.0.0.1:9/a")
        );
        assert!(settings.logged_out);
    }

    #[test]
    fn deleting_credentials_keeps_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let files = files(&tmp);
        files.prepare().unwrap();
        files.save_settings(&SessionSettings::default()).unwrap();
        for suffix in ["-wal", "-shm"] {
            fs::write(files.dir.join(format!("whatsapp.db{suffix}")), "x").unwrap();
        }
        files.delete_credentials().unwrap();
        let left: Vec<_> = fs::read_dir(&files.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["session.json".to_string()]);
    }
}
