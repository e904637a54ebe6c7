//! `import-baileys` on a large old-bridge folder: import time and peak
//! resident memory. The folder is generated from the Baileys fixture's own
//! files (real libsignal-node sessions, identities and pre-keys) under many
//! peer addresses: 5,000 phone-number and 2,000 LID sessions with their
//! identities and LID mappings, and 812 pre-keys, like a busy bridge.
//! Prints figures; asserts none.
//!
//! Run: `cargo bench --bench import_baileys`

use std::fs;
use std::path::Path;
use std::time::Instant;

use wabridge::import::{ImportOptions, Outcome};
use wabridge::paths::DataDir;

const PN_SESSIONS: usize = 5_000;
const LID_SESSIONS: usize = 2_000;
const PRE_KEYS: u32 = 812;

fn status_kib(field: &str) -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Writes the large folder; returns how many files it holds.
fn generate(folder: &Path) -> usize {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/baileys-auth-sample/auth");
    let read = |name: &str| fs::read(fixture.join(name)).unwrap();
    fs::create_dir_all(folder).unwrap();
    let mut files = 0;
    let mut write = |name: String, bytes: &[u8]| {
        fs::write(folder.join(name), bytes).unwrap();
        files += 1;
    };
    write("creds.json".into(), &read("creds.json"));
    let pn_session = read("session-447700900123.0.json");
    let pn_identity = read("identity-key-447700900123.0.json");
    for n in 0..PN_SESSIONS {
        let user = format!("4477009{n:05}");
        write(format!("session-{user}.0.json"), &pn_session);
        write(format!("identity-key-{user}.0.json"), &pn_identity);
    }
    let lid_session = read("session-260477250707536_1.0.json");
    let lid_identity = read("identity-key-260477250707536_1.0.json");
    for n in 0..LID_SESSIONS {
        let lid = format!("2604772507{n:05}");
        let pn = format!("9190751{n:05}");
        write(format!("session-{lid}_1.0.json"), &lid_session);
        write(format!("identity-key-{lid}_1.0.json"), &lid_identity);
        write(
            format!("lid-mapping-{pn}.json"),
            format!("\"{lid}\"").as_bytes(),
        );
        write(
            format!("lid-mapping-{lid}_reverse.json"),
            format!("\"{pn}\"").as_bytes(),
        );
    }
    let pre_key = read("pre-key-10.json");
    for id in 1..=PRE_KEYS {
        write(format!("pre-key-{id}.json"), &pre_key);
    }
    write(
        "sender-key-120363999999999999@g.us--260477250707536_1--0.json".into(),
        &read("sender-key-120363999999999999@g.us--260477250707536_1--0.json"),
    );
    // An hour old, as a folder the old bridge stopped using.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(folder.join("creds.json"))
        .unwrap()
        .set_modified(past)
        .unwrap();
    files
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old/big");
    let files = generate(&old);
    let source_bytes = dir_bytes(&old);
    let data = DataDir::new(tmp.path().join("data"));
    let before = status_kib("VmHWM:");

    for dry_run in [true, false] {
        let started = Instant::now();
        let report = wabridge::import::import(
            &data,
            &ImportOptions {
                source: old.clone(),
                as_id: None,
                dry_run,
            },
        )
        .await
        .unwrap();
        let took = started.elapsed();
        let session = &report.sessions[0];
        assert!(
            matches!(session.outcome, Outcome::Imported | Outcome::WouldImport),
            "{report}"
        );
        let counts = session.counts.as_ref().unwrap();
        println!(
            "{}: {files} files ({:.1} MiB) in {:.2} s = {:.0} files/s ({} sessions, {} identities, {} pre-keys, {} mappings)",
            if dry_run { "dry run" } else { "import " },
            source_bytes as f64 / 1048576.0,
            took.as_secs_f64(),
            files as f64 / took.as_secs_f64(),
            counts.sessions,
            counts.identities,
            counts.pre_keys,
            counts.lid_mappings,
        );
    }
    let store = tmp.path().join("data/sessions/big");
    println!(
        "store: {:.1} MiB; peak RSS {:.1} MiB (before the import {:.1} MiB)",
        dir_bytes(&store) as f64 / 1048576.0,
        status_kib("VmHWM:") / 1024.0,
        before / 1024.0
    );
}
