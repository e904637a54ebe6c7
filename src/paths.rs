//! Where things live on disk, who may touch them, and which names are safe.
//!
//! Every path under the data dir is built here from a validated [`SessionId`],
//! so no request, config entry or folder name can escape the data dir.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Marker in the names of session folders moved aside after a failed open.
const CORRUPT_MARKER: &str = ".corrupt-";
/// Marker in the names of session folders `migrate-store --to-db` moved
/// aside once their copy in the cluster database was verified: kept, never
/// served from this data dir again.
const MIGRATED_MARKER: &str = ".migrated-to-db-";
/// Folders with either marker are never loaded as sessions.
const ASIDE_MARKERS: [&str; 2] = [CORRUPT_MARKER, MIGRATED_MARKER];
/// A file `migrate-store --to-dir` puts in a session folder it renames
/// into place before the cluster's database commits the session's removal,
/// and takes out after the commit. A folder that still holds it was left
/// by an interrupted run: the cluster may still serve that session, so the
/// folder is never loaded (two clients on one device) until a new run of
/// `migrate-store --to-dir` settles it.
pub const UNCONFIRMED_MIGRATION: &str = ".unconfirmed-migration";
/// What an operator is told about such a folder.
pub const MIGRATION_UNCONFIRMED: &str = "an interrupted `wabridge migrate-store --to-dir` left its \
     folder before the cluster database confirmed the move (the cluster may still serve it); run \
     `wabridge migrate-store --to-dir --session <id>` again to settle it";
const LOCK_FILE: &str = "wabridge.lock";
const CONSOLE_SOCKET: &str = "wabridge.sock";

/// A session id that is safe to use as a folder name: 1–64 characters of
/// `A-Za-z0-9_.-`, not starting with a dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id {shown}: {reason}")]
pub struct InvalidSessionId {
    shown: String,
    reason: &'static str,
}

impl SessionId {
    pub fn parse(raw: &str) -> Result<SessionId, InvalidSessionId> {
        let reject = |reason| {
            // Never echo a hostile id verbatim: it may hold control characters.
            let shown: String = raw
                .chars()
                .take(40)
                .flat_map(char::escape_default)
                .collect();
            Err(InvalidSessionId {
                shown: format!("\"{shown}\""),
                reason,
            })
        };
        if raw.is_empty() {
            return reject("it is empty");
        }
        if raw.len() > 64 {
            return reject("it is longer than 64 characters");
        }
        if raw.starts_with('.') {
            return reject("it starts with a dot");
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return reject("only letters, digits, '_', '.' and '-' are allowed");
        }
        if ASIDE_MARKERS.iter().any(|marker| raw.contains(marker)) {
            return reject(
                "'.corrupt-' and '.migrated-to-db-' are reserved for folders moved aside",
            );
        }
        Ok(SessionId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// On the wire (the dashboard feed) an id is its text; what comes in is
/// checked like any other id.
impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        SessionId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The data dir: `sessions/<id>/`, `logs/`, and the lock that makes one
/// process its only owner.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// Held for the life of the process; the OS releases the lock when it exits,
/// also on SIGKILL, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path} is not usable: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another wabridge ({holder}) is already using data dir {path}; stop it first or pass another --data-dir"
    )]
    InUse { path: PathBuf, holder: String },
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The platform default (`~/.local/share/wabridge` on Linux).
    pub fn default_root() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "wabridge").map(|d| d.data_dir().to_path_buf())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Where the running service serves the dashboard (`wabridge attach`).
    pub fn console_socket(&self) -> PathBuf {
        self.root.join(CONSOLE_SOCKET)
    }

    pub fn session_dir(&self, id: &SessionId) -> PathBuf {
        self.sessions_dir().join(id.as_str())
    }

    /// Whether `id`'s folder was left by an interrupted `migrate-store
    /// --to-dir` (see [`UNCONFIRMED_MIGRATION`]).
    pub fn migration_unconfirmed(&self, id: &SessionId) -> bool {
        self.session_dir(id).join(UNCONFIRMED_MIGRATION).exists()
    }

    /// Creates the tree (owner-only) and takes the single-process lock.
    pub fn open_exclusive(&self) -> Result<DataDirLock, DataDirError> {
        let io = |source| DataDirError::Io {
            path: self.root.clone(),
            source,
        };
        create_private_dir(&self.root).map_err(io)?;
        create_private_dir(&self.sessions_dir()).map_err(io)?;
        let lock_path = self.root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "pid unknown".to_string(),
                    pid => format!("pid {pid}"),
                };
                return Err(DataDirError::InUse {
                    path: self.root.clone(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DataDirLock { _file: file })
    }

    /// Session folders found on disk, in a stable order. Folders whose names
    /// are not valid ids (or were moved aside) are reported and skipped.
    pub fn saved_sessions(&self) -> std::io::Result<Vec<SessionId>> {
        let mut ids = Vec::new();
        let entries = match fs::read_dir(self.sessions_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                tracing::warn!("skipping session folder with a non-UTF-8 name");
                continue;
            };
            if ASIDE_MARKERS.iter().any(|marker| name.contains(marker)) {
                continue;
            }
            match SessionId::parse(name) {
                Ok(id) if self.migration_unconfirmed(&id) => {
                    tracing::error!("not loading session {id}: {MIGRATION_UNCONFIRMED}")
                }
                Ok(id) => ids.push(id),
                Err(e) => tracing::warn!("skipping session folder: {e}"),
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Moves a session folder to `sessions/<id>.corrupt-<unix time>` and
    /// returns the new path. Nothing is ever deleted on this path.
    pub fn move_aside(&self, id: &SessionId) -> std::io::Result<PathBuf> {
        self.move_aside_marked(id, CORRUPT_MARKER)
    }

    /// Moves a session folder whose copy now lives in the cluster database
    /// to `sessions/<id>.migrated-to-db-<unix time>` (never loaded, never
    /// deleted) and returns the new path.
    pub fn move_aside_migrated(&self, id: &SessionId) -> std::io::Result<PathBuf> {
        self.move_aside_marked(id, MIGRATED_MARKER)
    }

    fn move_aside_marked(&self, id: &SessionId, marker: &str) -> std::io::Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut target = self.sessions_dir().join(format!("{id}{marker}{stamp}"));
        let mut n = 1;
        while target.exists() {
            target = self.sessions_dir().join(format!("{id}{marker}{stamp}-{n}"));
            n += 1;
        }
        fs::rename(self.session_dir(id), &target)?;
        Ok(target)
    }
}

/// `mkdir -p` with mode 0700 on what it creates, and 0700 enforced on `path`.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    // A folder that already exists keeps its mode: it may not be ours (a
    // `log.dir = "/var/log"` must never become 0700).
    if path.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    // Whatever the umask, the folder we made is the owner's only.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// Writes a file readable by the owner only, atomically (temp file + rename),
/// so a crash mid-write never leaves a truncated file behind.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The rename is durable only once the folder's entry is on disk.
    if let Some(folder) = path.parent() {
        fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Creates an empty owner-only file if it does not exist yet, so files that
/// another library creates later (SQLite copies the database's mode to its
/// `-wal`/`-shm` files) start out private.
pub fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_dir_is_0700_but_an_existing_folder_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("var-log");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&shared).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&shared), 0o755, "not ours: left alone");
        let ours = shared.join("wabridge/logs");
        create_private_dir(&ours).unwrap();
        assert_eq!(mode(&ours), 0o700);
        assert_eq!(mode(ours.parent().unwrap()), 0o700);
    }

    #[test]
    fn accepts_the_old_bridge_style_ids() {
        for id in [
            "WA-Dexciss_Technology_Pvt_Ltd",
            "a",
            "x.y-z_1",
            &"a".repeat(64),
        ] {
            assert_eq!(SessionId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_hostile_ids() {
        let long = "a".repeat(200);
        for id in [
            "",
            "..",
            "../x",
            "a/b",
            "/etc",
            ".hidden",
            "a\0b",
            "a b",
            "é",
            long.as_str(),
            "x.corrupt-1",
            "x.migrated-to-db-1",
        ] {
            assert!(SessionId::parse(id).is_err(), "{id:?} was accepted");
        }
    }

    #[test]
    fn error_escapes_control_characters() {
        let err = SessionId::parse("a\0\n").unwrap_err().to_string();
        assert!(!err.contains('\0') && !err.contains('\n'), "{err:?}");
    }

    #[test]
    fn second_lock_on_the_same_dir_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        let _held = dir.open_exclusive().unwrap();
        let err = DataDir::new(tmp.path().join("data"))
            .open_exclusive()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }

    #[test]
    fn data_dir_and_sessions_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        let _held = dir.open_exclusive().unwrap();
        for path in [dir.root().to_path_buf(), dir.sessions_dir()] {
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", path.display());
        }
        let file = tmp.path().join("f");
        write_private_file(&file, b"secret").unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn listing_skips_invalid_and_moved_aside_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        for name in [
            "good",
            "bad name",
            "good.corrupt-123",
            "good.migrated-to-db-123",
            ".hidden",
        ] {
            fs::create_dir_all(dir.sessions_dir().join(name)).unwrap();
        }
        let ids = dir.saved_sessions().unwrap();
        assert_eq!(ids, vec![SessionId::parse("good").unwrap()]);
    }

    #[test]
    fn move_aside_keeps_the_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let id = SessionId::parse("s1").unwrap();
        fs::create_dir_all(dir.session_dir(&id)).unwrap();
        fs::write(dir.session_dir(&id).join("store.db"), b"junk").unwrap();
        let moved = dir.move_aside(&id).unwrap();
        assert!(!dir.session_dir(&id).exists());
        assert_eq!(fs::read(moved.join("store.db")).unwrap(), b"junk");
        assert!(dir.saved_sessions().unwrap().is_empty());
    }
}
