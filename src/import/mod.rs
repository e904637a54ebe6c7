//! `wabridge import-baileys`: moves the old Node bridge's Baileys sessions
//! into wabridge's store, so the same linked devices log in without a QR.
//!
//! Per session folder: list and check every file ([`folder`]), convert
//! them one by one in memory ([`convert`]; a dry run stops there), write a
//! store into a hidden temporary folder ([`store`]), rename it into place,
//! then mark the old folder ([`guard`]). A folder with any problem is skipped whole:
//! nothing is ever half-imported.
//!
//! Besides `engine::whatsapp`, this is the one module that names
//! whatsapp-rust's types: building the library's store is its job.

mod address;
mod convert;
mod creds;
mod encoding;
mod folder;
mod guard;
pub mod report;
mod signal;
mod store;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::paths::{self, DataDir, SessionId};
use crate::session_files::{SessionFiles, SessionSettings};
use convert::{PrepareError, Prepared};
pub use report::{ImportReport, Outcome, SessionReport};

pub use guard::{MARKER, MOVED_CREDS};

/// One thing wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub problem: String,
}

impl Problem {
    pub fn new(file: impl Into<String>, problem: impl Into<String>) -> Problem {
        Problem {
            file: file.into(),
            problem: problem.into(),
        }
    }
}

/// What a session holds, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub sessions: usize,
    pub identities: usize,
    pub pre_keys: usize,
    pub sender_keys: usize,
    pub lid_mappings: usize,
    pub app_state_keys: usize,
    pub tc_tokens: usize,
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The old bridge's `sessions/` folder, or one session folder in it.
    pub source: PathBuf,
    /// Session id for a single folder (default: the folder's name).
    pub as_id: Option<String>,
    pub dry_run: bool,
}

/// Imports every session folder found; the error is for the whole run
/// (nothing to import, the data dir in use), per-session trouble is in the
/// report.
pub async fn import(data: &DataDir, options: &ImportOptions) -> Result<ImportReport, String> {
    let sources = find_session_folders(&options.source)?;
    if options.as_id.is_some() && sources.len() != 1 {
        return Err(format!(
            "--as names one session, but {} holds {} session folders",
            options.source.display(),
            sources.len()
        ));
    }
    // A running wabridge would not see the new session, and two writers on
    // one data dir is what the lock exists to prevent.
    let _lock = match options.dry_run {
        true => None,
        false => Some(data.open_exclusive().map_err(|e| e.to_string())?),
    };
    let mut report = ImportReport {
        dry_run: options.dry_run,
        sessions: Vec::new(),
    };
    for source in sources {
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = options.as_id.clone().unwrap_or(name);
        report
            .sessions
            .push(import_one(data, &source, &id, options.dry_run).await);
    }
    Ok(report)
}

/// One session folder (holds creds.json) or a folder of them.
fn find_session_folders(source: &Path) -> Result<Vec<PathBuf>, String> {
    let meta =
        fs::metadata(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a folder", source.display()));
    }
    if is_session_folder(source) {
        return Ok(vec![source.to_path_buf()]);
    }
    let mut folders = Vec::new();
    for entry in
        fs::read_dir(source).map_err(|e| format!("cannot list {}: {e}", source.display()))?
    {
        let entry = entry.map_err(|e| e.to_string())?;
        // A symlinked folder could lead anywhere: only real folders count.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            folders.push(entry.path());
        }
    }
    folders.sort();
    if folders.is_empty() {
        return Err(format!(
            "{} holds no session folders (a Baileys session folder has a creds.json)",
            source.display()
        ));
    }
    Ok(folders)
}

fn is_session_folder(dir: &Path) -> bool {
    [Path::new("creds.json"), Path::new(guard::MOVED_CREDS)]
        .iter()
        .any(|name| dir.join(name).exists())
}

async fn import_one(data: &DataDir, source: &Path, id: &str, dry_run: bool) -> SessionReport {
    let mut report = SessionReport::new(id, source);
    let id = match SessionId::parse(id) {
        Ok(id) => id,
        Err(e) => return report.skipped(format!("{e}; pass --as <id> to name it")),
    };
    if data.session_dir(&id).exists() {
        return report.refused(format!(
            "wabridge already has a session \"{id}\": it is never overwritten; \
             import under another name with --as"
        ));
    }
    match guard::check_not_in_use(source) {
        Ok(checks) => report.checks = checks,
        Err(why) => return report.refused(why),
    }
    let listing = match folder::list(source) {
        Ok(listing) => listing,
        Err(problems) => return report.with_problems(problems),
    };
    let prepared = match convert::prepare(source, listing) {
        Ok(prepared) => prepared,
        Err(PrepareError::NeverPaired) => {
            return report.skipped(
                "never paired (creds.json has no `me` / `account`): there is no linked \
                 device to keep; add the session in wabridge and scan its QR"
                    .to_string(),
            );
        }
        Err(PrepareError::Problems(problems)) => return report.with_problems(problems),
    };
    report.describe(&prepared);
    if dry_run {
        report.outcome = Outcome::WouldImport;
        return report;
    }
    let target = data.session_dir(&id);
    match install(data, &id, &prepared).await {
        Ok(()) => {}
        Err(why) => return report.failed(why),
    }
    if let Err(e) = guard::mark_imported(source, id.as_str(), &target) {
        report.warnings.push(format!(
            "imported, but the old folder could not be marked ({e}): \
             make sure the old bridge never runs on it again"
        ));
    }
    report.outcome = Outcome::Imported;
    report
}

/// Builds the session in `sessions/.import-<id>` (invisible to wabridge: ids
/// never start with a dot) and renames it into place only when complete.
async fn install(data: &DataDir, id: &SessionId, prepared: &Prepared) -> Result<(), String> {
    let staging = data.sessions_dir().join(format!(".import-{id}"));
    // Left by an interrupted import of ours: never a live session.
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .map_err(|e| format!("cannot clear {}: {e}", staging.display()))?;
    }
    let staged = SessionFiles {
        id: id.clone(),
        dir: staging.clone(),
    };
    let result = async {
        staged
            .prepare()
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        store::write(prepared, &staged.store_path()).await?;
        let settings = SessionSettings {
            webhook_url: prepared.webhook.as_ref().map(|w| w.url.clone()),
            webhook_token: prepared.webhook.as_ref().and_then(|w| w.token.clone()),
            logged_out: false,
            nats_subject: None,
            ..SessionSettings::default()
        };
        staged
            .save_settings(&settings)
            .map_err(|e| format!("cannot save the webhook settings: {e}"))?;
        paths::create_private_dir(&data.sessions_dir()).map_err(|e| e.to_string())?;
        fs::rename(&staging, data.session_dir(id))
            .map_err(|e| format!("cannot move the new session into place: {e}"))
    }
    .await;
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Converts one libsignal-node `SessionRecord` (v1 JSON, as Baileys stores
/// it) into whatsapp-rust's serialized record, for the device whose identity
/// public key and registration id are given. Tests use it to load the
/// fixture's peers, which libsignal-node wrote in the same format.
pub fn libsignal_session_record(
    json: &serde_json::Value,
    identity_public: [u8; 32],
    registration_id: u32,
) -> Result<Vec<u8>, String> {
    let local = signal::LocalIdentity {
        identity_public,
        registration_id,
    };
    signal::convert_session(json, local).map(|converted| converted.record)
}
