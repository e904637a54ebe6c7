//! Keeping two clients off one linked device: before an import, signs that
//! the old bridge still runs on the folder; after it, a mark so the old
//! bridge does not start on it again by mistake.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Baileys rewrites creds.json as the connection lives (pre-key counters,
/// routing info); a recent change means a bridge may be running on it.
const RECENT_CHANGE: Duration = Duration::from_secs(120);
pub const MOVED_CREDS: &str = "creds.json.moved-to-wabridge";
pub const MARKER: &str = "MOVED-TO-WABRIDGE.txt";

/// What was checked (for the report), or why the folder is refused.
pub fn check_not_in_use(folder: &Path) -> Result<Vec<String>, String> {
    if folder.join(MARKER).exists() || folder.join(MOVED_CREDS).exists() {
        return Err(format!(
            "already imported into wabridge ({MARKER} is in the folder)"
        ));
    }
    let mut checked = Vec::new();
    if let Ok(modified) = fs::metadata(folder.join("creds.json")).and_then(|m| m.modified()) {
        let age = SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default();
        if age < RECENT_CHANGE {
            return Err(format!(
                "creds.json changed {}s ago: the old bridge may be running on this folder; \
                 stop it, wait two minutes and try again",
                age.as_secs()
            ));
        }
        checked.push(format!(
            "creds.json last changed {} ago",
            humantime::format_duration(Duration::from_secs(age.as_secs()))
        ));
    }
    let scan = open_by_processes(folder);
    if let Some((pid, name)) = scan.user {
        return Err(format!(
            "process {pid} ({name}) has files open in this folder: stop it first"
        ));
    }
    checked.push(match scan.unreadable {
        0 => format!("no process has files open in the folder ({} checked)", scan.checked),
        n => format!(
            "no process we can see has files open in the folder ({} checked, {n} not readable by us)",
            scan.checked
        ),
    });
    Ok(checked)
}

struct ProcessScan {
    checked: usize,
    unreadable: usize,
    user: Option<(u32, String)>,
}

/// Looks through /proc for a process whose working dir or open files lie
/// inside `folder` (Node's bridge keeps its session files open briefly, but
/// its working dir or a log often points there).
fn open_by_processes(folder: &Path) -> ProcessScan {
    let mut scan = ProcessScan {
        checked: 0,
        unreadable: 0,
        user: None,
    };
    let Ok(folder) = folder.canonicalize() else {
        return scan;
    };
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else {
        return scan;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        scan.checked += 1;
        let dir = entry.path();
        let mut paths: Vec<PathBuf> = fs::read_link(dir.join("cwd")).into_iter().collect();
        match fs::read_dir(dir.join("fd")) {
            Ok(fds) => paths.extend(fds.flatten().filter_map(|fd| fs::read_link(fd.path()).ok())),
            Err(_) => scan.unreadable += 1,
        }
        if paths.iter().any(|p| p.starts_with(&folder)) {
            let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
            scan.user = Some((pid, name.trim().to_string()));
            return scan;
        }
    }
    scan
}

/// Marks the old folder after a successful import: creds.json is renamed (so
/// the old bridge cannot log in as this device again) and a note says why.
/// Nothing is deleted.
pub fn mark_imported(folder: &Path, id: &str, into: &Path) -> std::io::Result<()> {
    fs::rename(folder.join("creds.json"), folder.join(MOVED_CREDS))?;
    let note = format!(
        "This linked device now lives in wabridge as session \"{id}\" ({}).\n\
         \n\
         Never run the old bridge on this folder again: two clients on one linked\n\
         device replace each other in a loop and their encryption drifts apart.\n\
         creds.json was renamed to {MOVED_CREDS} so it cannot log in by mistake.\n",
        into.display()
    );
    fs::write(folder.join(MARKER), note)
}
