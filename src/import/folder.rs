//! Reading one Baileys session folder from disk: every file named, parsed as
//! JSON and classified, with nothing followed outside the folder.

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::Problem;
use super::address::AuthFile;

/// Bigger than any auth file Baileys writes (sessions are a few KiB); a
/// larger one is not what it claims to be.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// A folder's files by kind; their content is read one at a time later,
/// so a folder of thousands of sessions is never all in memory.
#[derive(Default)]
pub struct Listing {
    pub files: Vec<(String, AuthFile)>,
    /// Files we do not know (reported, not imported).
    pub unknown: Vec<String>,
}

/// Names and checks every file; returns all problems found, not just the
/// first.
pub fn list(dir: &Path) -> Result<Listing, Vec<Problem>> {
    let entries = fs::read_dir(dir).map_err(|e| {
        vec![Problem::new(
            dir.display().to_string(),
            format!("cannot list: {e}"),
        )]
    })?;
    let mut listing = Listing::default();
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry.file_name()),
            Err(e) => problems.push(Problem::new(dir.display().to_string(), e.to_string())),
        }
    }
    names.sort();
    for name in names {
        let Some(name) = name.to_str().map(str::to_string) else {
            problems.push(Problem::new(
                name.to_string_lossy().into_owned(),
                "a file name that is not UTF-8",
            ));
            continue;
        };
        match classify(dir, &name) {
            Ok(Some(AuthFile::Unknown)) => listing.unknown.push(name),
            // Rebuilt by whatsapp-rust itself.
            Ok(Some(AuthFile::NotNeeded)) | Ok(None) => {}
            Ok(Some(kind)) => listing.files.push((name, kind)),
            Err(problem) => problems.push(Problem::new(name, problem)),
        }
    }
    if problems.is_empty() {
        Ok(listing)
    } else {
        Err(problems)
    }
}

/// One directory entry: None for sub-folders.
fn classify(dir: &Path, name: &str) -> Result<Option<AuthFile>, String> {
    let meta = fs::symlink_metadata(dir.join(name)).map_err(|e| e.to_string())?;
    if meta.file_type().is_symlink() {
        return Err("a symbolic link: refused, it could point outside the folder".into());
    }
    if meta.is_dir() {
        return Ok(None);
    }
    let kind = AuthFile::classify(name)?;
    if meta.len() > MAX_FILE_BYTES && !matches!(kind, AuthFile::Unknown | AuthFile::NotNeeded) {
        return Err(format!(
            "{} bytes, more than an auth file can be",
            meta.len()
        ));
    }
    Ok(Some(kind))
}

/// Reads and parses one listed file.
pub fn load(dir: &Path, name: &str) -> Result<Value, String> {
    let text = fs::read(dir.join(name)).map_err(|e| format!("cannot read: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("unreadable JSON: {e}"))
}
