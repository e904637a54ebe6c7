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

pub struct AuthEntry {
    pub name: String,
    pub kind: AuthFile,
    pub json: Value,
}

/// A folder's files, read and parsed, before any conversion.
#[derive(Default)]
pub struct RawFolder {
    pub entries: Vec<AuthEntry>,
    /// Files we do not know (reported, not imported).
    pub unknown: Vec<String>,
    /// Files whatsapp-rust rebuilds by itself.
    pub not_needed: usize,
}

/// Reads every file; returns all problems found, not just the first.
pub fn read(dir: &Path) -> Result<RawFolder, Vec<Problem>> {
    let listing = fs::read_dir(dir).map_err(|e| {
        vec![Problem::new(
            dir.display().to_string(),
            format!("cannot list: {e}"),
        )]
    })?;
    let mut folder = RawFolder::default();
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for entry in listing {
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
        match read_entry(dir, &name) {
            Ok(Some(entry)) => match entry.kind {
                AuthFile::Unknown => folder.unknown.push(name),
                AuthFile::NotNeeded => folder.not_needed += 1,
                _ => folder.entries.push(entry),
            },
            Ok(None) => {}
            Err(problem) => problems.push(Problem::new(name, problem)),
        }
    }
    if problems.is_empty() {
        Ok(folder)
    } else {
        Err(problems)
    }
}

/// One file: None for sub-folders and files that are not ours.
fn read_entry(dir: &Path, name: &str) -> Result<Option<AuthEntry>, String> {
    let path = dir.join(name);
    let meta = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
    if meta.file_type().is_symlink() {
        return Err("a symbolic link: refused, it could point outside the folder".into());
    }
    if meta.is_dir() {
        return Ok(None);
    }
    let kind = AuthFile::classify(name)?;
    if matches!(kind, AuthFile::Unknown | AuthFile::NotNeeded) {
        return Ok(Some(AuthEntry {
            name: name.to_string(),
            kind,
            json: Value::Null,
        }));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes, more than an auth file can be",
            meta.len()
        ));
    }
    let text = fs::read(&path).map_err(|e| format!("cannot read: {e}"))?;
    let json = serde_json::from_slice(&text).map_err(|e| format!("unreadable JSON: {e}"))?;
    Ok(Some(AuthEntry {
        name: name.to_string(),
        kind,
        json,
    }))
}
