//! Incoming media kept on disk for the webhook's URL mode: a session whose
//! `media` is `url` gets `GET /media/<id>` links instead of base64 inside
//! the POST, so a 16 MiB video never rides inside JSON. Files live in
//! `<data>/media/` (owner only) under a random id, each with a small
//! `<id>.json` describing it, and go when they are older than `max_age` or,
//! oldest first, when all of them together pass `max_bytes`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::paths;

/// Where and how much, from `[media]`.
#[derive(Debug, Clone)]
pub struct MediaLimits {
    /// All kept files together; the oldest go first past it.
    pub max_bytes: u64,
    /// A file is kept (and its URL works) this long.
    pub max_age: Duration,
    /// One file above this is not kept (the webhook says why).
    pub max_file_bytes: u64,
    /// How the ERP reaches the API: the URL's start, e.g.
    /// `http://127.0.0.1:3000`.
    pub public_url: String,
}

/// What the webhook says about a kept file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMedia {
    pub url: String,
    pub size: u64,
    /// Unix seconds after which the URL answers 404.
    pub expires_at: i64,
}

/// A kept file's description, beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaMeta {
    /// The session it came to, so that its DELETE takes the file too.
    /// Absent in files kept before sessions were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub mimetype: String,
    pub filename: Option<String>,
    pub size: u64,
    pub created_ms: i64,
}

pub struct MediaStore {
    dir: PathBuf,
    limits: MediaLimits,
    /// `limits.public_url`, or the API's address once it is bound (a
    /// `listen` on port 0 learns its port only then).
    public_url: std::sync::Mutex<String>,
}

impl MediaStore {
    pub fn open(dir: PathBuf, limits: MediaLimits) -> std::io::Result<MediaStore> {
        paths::create_private_dir(&dir)?;
        let public_url = std::sync::Mutex::new(limits.public_url.clone());
        Ok(MediaStore {
            dir,
            limits,
            public_url,
        })
    }

    /// Media URLs start with `url` from now on.
    pub fn set_public_url(&self, url: String) {
        *self.public_url.lock().unwrap_or_else(|p| p.into_inner()) = url;
    }

    pub fn max_file_bytes(&self) -> u64 {
        self.limits.max_file_bytes
    }

    /// A new file to download into; kept only once `keep` is called.
    pub fn create(&self) -> std::io::Result<PartialMedia> {
        let id = random_id()?;
        let path = self.dir.join(format!(".partial-{id}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(PartialMedia {
            id,
            path,
            file: Some(file),
            written: 0,
            cap: self.limits.max_file_bytes,
        })
    }

    /// Makes a downloaded file available at its URL, then enforces the
    /// budget (which never removes the file just kept).
    pub fn keep(
        &self,
        mut partial: PartialMedia,
        meta: MediaMeta,
        now_ms: i64,
    ) -> std::io::Result<StoredMedia> {
        // Until the rename, a failure leaves the partial file to its Drop.
        if let Some(file) = &partial.file {
            file.sync_all()?;
        }
        let path = self.dir.join(&partial.id);
        fs::rename(&partial.path, &path)?;
        partial.file = None;
        // The description comes last: a file is served (and swept) only
        // once it has one; one left without by a crash is an orphan
        // `sweep` removes.
        let meta = MediaMeta {
            size: partial.written,
            created_ms: now_ms,
            ..meta
        };
        let described = serde_json::to_vec(&meta)
            .map_err(std::io::Error::other)
            .and_then(|json| paths::write_private_file(&self.meta_path(&partial.id), &json));
        if let Err(e) = described {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let stored = StoredMedia {
            url: format!(
                "{}/media/{}",
                self.public_url
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .trim_end_matches('/'),
                partial.id
            ),
            size: partial.written,
            expires_at: now_ms.saturating_add(self.max_age_ms()) / 1000,
        };
        self.sweep(now_ms, Some(&partial.id));
        Ok(stored)
    }

    /// The file with `id` and its description, unless unknown or expired.
    /// `id` comes from a URL: anything but our hex ids is unknown, so no
    /// path can leave the media folder.
    pub fn open_file(&self, id: &str, now_ms: i64) -> Option<(File, MediaMeta)> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let meta: MediaMeta = serde_json::from_slice(&fs::read(self.meta_path(id)).ok()?).ok()?;
        if self.expired(&meta, now_ms) {
            return None;
        }
        Some((File::open(self.dir.join(id)).ok()?, meta))
    }

    /// Removes expired files, then the oldest until the rest fit the
    /// budget (sparing `keep`), and partial downloads a crash left behind.
    /// Files are dated by their description's clock (`now_ms`), partial ones
    /// by the file system's.
    pub fn sweep(&self, now_ms: i64, keep: Option<&str>) {
        let Ok(Listing { described, files }) = self.listing() else {
            return;
        };
        let mut kept = Vec::new();
        for (id, meta) in described {
            match meta {
                Some(meta) if !self.expired(&meta, now_ms) => kept.push((id, meta)),
                _ => self.remove(&id),
            }
        }
        // What a crash left: partial downloads, a file without its
        // description, a description's temporary copy. An hour old, so that
        // nothing a running download or `keep` still works on is touched.
        for (name, entry) in files {
            let described = kept.iter().any(|(id, _)| *id == name);
            if !described && left_behind(&entry) {
                let _ = fs::remove_file(entry.path());
            }
        }
        kept.sort_by_key(|(_, meta)| meta.created_ms);
        let mut total: u64 = kept.iter().map(|(_, meta)| meta.size).sum();
        for (id, meta) in &kept {
            if total <= self.limits.max_bytes {
                break;
            }
            if Some(id.as_str()) != keep {
                // Its webhook may not have been delivered yet (a receiver
                // down for long): said, so that a 404 has an explanation.
                tracing::warn!(
                    "media {id} ({} bytes, {} min old) removed to stay within [media] max_bytes ({}); its URL now answers 404",
                    meta.size,
                    now_ms.saturating_sub(meta.created_ms) / 60_000,
                    self.limits.max_bytes
                );
                self.remove(id);
                total -= meta.size;
            }
        }
    }

    /// Removes every file kept for `session`: its DELETE. Returns how many.
    pub fn forget_session(&self, session: &str) -> usize {
        let Ok(Listing { described, .. }) = self.listing() else {
            return 0;
        };
        let mut removed = 0;
        for (id, meta) in described {
            if meta.is_some_and(|meta| meta.session.as_deref() == Some(session)) {
                self.remove(&id);
                removed += 1;
            }
        }
        removed
    }

    /// What the folder holds.
    fn listing(&self) -> std::io::Result<Listing> {
        let mut described = Vec::new();
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".json") {
                Some(id) => {
                    let meta = fs::read(entry.path())
                        .ok()
                        .and_then(|b| serde_json::from_slice::<MediaMeta>(&b).ok());
                    described.push((id.to_string(), meta));
                }
                None => files.push((name, entry)),
            }
        }
        Ok(Listing { described, files })
    }

    fn expired(&self, meta: &MediaMeta, now_ms: i64) -> bool {
        now_ms.saturating_sub(meta.created_ms) >= self.max_age_ms()
    }

    fn max_age_ms(&self) -> i64 {
        i64::try_from(self.limits.max_age.as_millis()).unwrap_or(i64::MAX)
    }

    fn remove(&self, id: &str) {
        let _ = fs::remove_file(self.dir.join(id));
        let _ = fs::remove_file(self.meta_path(id));
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

/// The media folder's entries: each description (its id, and what it
/// says unless it cannot be read), and every other entry by name.
struct Listing {
    described: Vec<(String, Option<MediaMeta>)>,
    files: Vec<(String, fs::DirEntry)>,
}

/// A download under way: refuses to grow past the cap; removed unless
/// kept.
pub struct PartialMedia {
    id: String,
    path: PathBuf,
    file: Option<File>,
    written: u64,
    cap: u64,
}

impl PartialMedia {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Write for PartialMedia {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.cap {
            return Err(std::io::Error::other("media is over the size cap"));
        }
        let file = self.file.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let n = file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl std::io::Seek for PartialMedia {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let file = self.file.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let at = file.seek(to)?;
        self.written = self.written.max(at);
        Ok(at)
    }
}

impl PartialMedia {
    /// Cuts the file to `len` bytes (a download that starts over).
    pub fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        let file = self.file.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        file.set_len(len)?;
        self.written = len;
        Ok(())
    }
}

impl Drop for PartialMedia {
    fn drop(&mut self) {
        // Still partial: the download failed or was not kept.
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A file untouched for an hour was left by a crash (a live download
/// writes at least once a minute, or gives up).
fn left_behind(entry: &fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(3600))
}

/// 128 random bits, hex: ids nobody can guess (the API's auth comes first).
fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn store(dir: &Path, max_bytes: u64) -> MediaStore {
        MediaStore::open(
            dir.join("media"),
            MediaLimits {
                max_bytes,
                max_age: Duration::from_secs(24 * 3600),
                max_file_bytes: 100,
                public_url: "http://127.0.0.1:3000/".into(),
            },
        )
        .unwrap()
    }

    fn meta() -> MediaMeta {
        MediaMeta {
            session: Some("shop".into()),
            mimetype: "video/mp4".into(),
            filename: None,
            size: 0,
            created_ms: 0,
        }
    }

    fn kept(store: &MediaStore, bytes: &[u8], now_ms: i64) -> StoredMedia {
        let mut file = store.create().unwrap();
        file.write_all(bytes).unwrap();
        store.keep(file, meta(), now_ms).unwrap()
    }

    fn id(stored: &StoredMedia) -> &str {
        stored.url.rsplit('/').next().unwrap()
    }

    #[test]
    fn a_kept_file_is_served_by_id_until_it_expires() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path(), 1_000);
        let stored = kept(&store, b"hello", 0);
        assert!(stored.url.starts_with("http://127.0.0.1:3000/media/"));
        assert_eq!((stored.size, stored.expires_at), (5, 24 * 3600));
        let (mut file, described) = store.open_file(id(&stored), HOUR_MS).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!((text.as_str(), described.size), ("hello", 5));
        assert!(store.open_file(id(&stored), 24 * HOUR_MS).is_none());
        // A described file beside the media folder: only the id check keeps
        // `../secret` from reaching it.
        fs::write(tmp.path().join("secret"), b"not yours").unwrap();
        fs::write(
            tmp.path().join("secret.json"),
            serde_json::to_vec(&MediaMeta {
                created_ms: HOUR_MS,
                size: 9,
                ..meta()
            })
            .unwrap(),
        )
        .unwrap();
        for hostile in ["../secret", "..%2Fsecret", ""] {
            assert!(store.open_file(hostile, HOUR_MS).is_none(), "{hostile}");
        }
        let mode = fs::metadata(tmp.path().join("media").join(id(&stored)))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn the_budget_removes_the_oldest_and_a_file_over_the_cap_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path(), 10);
        let first = kept(&store, b"aaaa", 0);
        let second = kept(&store, b"bbbb", 1);
        let third = kept(&store, b"cccc", 2);
        assert!(store.open_file(id(&first), 3).is_none(), "oldest goes");
        assert!(store.open_file(id(&second), 3).is_some());
        assert!(store.open_file(id(&third), 3).is_some());
        let mut big = store.create().unwrap();
        assert!(big.write_all(&[0; 101]).is_err());
        let partial = big.path().to_path_buf();
        drop(big);
        assert!(!partial.exists(), "a failed download leaves nothing");
    }

    #[test]
    fn a_sessions_files_go_with_it_and_no_others() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path(), 1_000);
        let shop = kept(&store, b"shop's", 0);
        let mut file = store.create().unwrap();
        file.write_all(b"depot's").unwrap();
        let other = MediaMeta {
            session: Some("depot".into()),
            ..meta()
        };
        let depot = store.keep(file, other, 0).unwrap();
        assert_eq!(store.forget_session("shop"), 1);
        assert!(store.open_file(id(&shop), 1).is_none());
        assert!(!tmp.path().join("media").join(id(&shop)).exists());
        assert!(store.open_file(id(&depot), 1).is_some());
        assert_eq!(store.forget_session("shop"), 0);
    }

    #[test]
    fn what_a_crash_left_goes_after_an_hour_and_nothing_younger() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path(), 1_000);
        let media = tmp.path().join("media");
        let left = |name: &str, age: Duration| {
            let file = File::create(media.join(name)).unwrap();
            file.set_modified(std::time::SystemTime::now() - age)
                .unwrap();
        };
        left(
            "0123456789abcdef0123456789abcdef",
            Duration::from_secs(7200),
        );
        left(".partial-old", Duration::from_secs(7200));
        left(".partial-live", Duration::from_secs(5));
        let described = kept(&store, b"kept", 0);
        store.sweep(HOUR_MS, None);
        let mut names: Vec<String> = fs::read_dir(&media)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let id = id(&described).to_string();
        assert_eq!(
            names,
            [
                ".partial-live".to_string(),
                id.clone(),
                format!("{id}.json")
            ]
        );
    }
}
