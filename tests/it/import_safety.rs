//! `import-baileys` is safe by construction: a dry run writes nothing, a
//! folder in use or an existing session is refused, a folder with any bad
//! file is skipped whole with each problem named, and an imported folder is
//! marked so the old bridge cannot run on it again.

use crate::support;

use std::fs;
use std::path::Path;

use support::baileys::{age, copy_auth, import};
use support::process::wabridge;
use wabridge::import::{MARKER, MOVED_CREDS, Outcome, SessionReport};
use wabridge::paths::DataDir;

fn data(tmp: &tempfile::TempDir) -> DataDir {
    DataDir::new(tmp.path().join("data"))
}

fn problems(report: &SessionReport) -> String {
    report
        .problems
        .iter()
        .map(|p| format!("{}: {}\n", p.file, p.problem))
        .collect()
}

#[tokio::test]
async fn a_dry_run_reports_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    copy_auth(&old.join("shop"));
    fs::write(
        old.join("shop/webhook-config.json"),
        r#"{"webhookUrl":"http://127.0.0.1:9/erp","webhookToken":"s3cret"}"#,
    )
    .unwrap();
    age(&old.join("shop"));
    let report = import(&data(&tmp), &old, true).await;
    let shop = &report.sessions[0];
    assert_eq!(shop.outcome, Outcome::WouldImport);
    assert_eq!(
        shop.device.as_ref().unwrap().pn,
        "15550001111:7@s.whatsapp.net"
    );
    let counts = shop.counts.as_ref().unwrap();
    assert_eq!(
        (
            counts.sessions,
            counts.pre_keys,
            counts.sender_keys,
            counts.lid_mappings
        ),
        (4, 26, 1, 2)
    );
    assert!(shop.webhook.as_ref().unwrap().has_token);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"outcome\":\"would-import\""), "{json}");
    assert!(!json.contains("s3cret") && !report.to_string().contains("s3cret"));
    assert!(
        !tmp.path().join("data").exists(),
        "a dry run created the data dir"
    );
    assert!(old.join("shop/creds.json").exists());
}

#[tokio::test]
async fn an_import_moves_the_session_and_marks_the_old_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old/shop");
    copy_auth(&old);
    fs::write(
        old.join("webhook-config.json"),
        r#"{"webhookUrl":"http://127.0.0.1:9/erp","webhookToken":"s3cret"}"#,
    )
    .unwrap();
    age(&old);
    let data = data(&tmp);
    let report = import(&data, &old, false).await;
    assert_eq!(report.sessions[0].outcome, Outcome::Imported, "{report}");
    let settings = fs::read_to_string(tmp.path().join("data/sessions/shop/session.json")).unwrap();
    assert!(settings.contains("http://127.0.0.1:9/erp") && settings.contains("s3cret"));
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&tmp.path().join("data/sessions/shop")), 0o700);
    assert_eq!(
        mode(&tmp.path().join("data/sessions/shop/whatsapp.db")),
        0o600
    );
    // Marked, nothing deleted.
    assert!(!old.join("creds.json").exists());
    assert!(old.join(MOVED_CREDS).exists());
    assert!(
        fs::read_to_string(old.join(MARKER))
            .unwrap()
            .contains("Never run the old bridge")
    );
    assert!(old.join("session-447700900123.0.json").exists());
    // No staging folder left behind.
    let left: Vec<_> = fs::read_dir(tmp.path().join("data/sessions"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["shop"]);

    // A second run: the folder is marked, and the session exists.
    let again = import(&data, &old, false).await;
    assert_eq!(again.sessions[0].outcome, Outcome::Refused);
}

#[tokio::test]
async fn an_existing_session_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old/shop");
    copy_auth(&old);
    let existing = tmp.path().join("data/sessions/shop");
    fs::create_dir_all(&existing).unwrap();
    fs::write(existing.join("whatsapp.db"), "live").unwrap();
    let report = import(&data(&tmp), &old, false).await;
    let shop = &report.sessions[0];
    assert_eq!(shop.outcome, Outcome::Refused);
    assert!(
        shop.reason
            .as_ref()
            .unwrap()
            .contains("already has a session")
    );
    assert_eq!(
        fs::read_to_string(existing.join("whatsapp.db")).unwrap(),
        "live"
    );
    assert!(old.join("creds.json").exists());
}

#[tokio::test]
async fn a_folder_the_old_bridge_just_wrote_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old/shop");
    copy_auth(&old);
    // Baileys rewrites creds.json while it runs.
    let creds = fs::read(old.join("creds.json")).unwrap();
    fs::write(old.join("creds.json"), creds).unwrap();
    let report = import(&data(&tmp), &old, false).await;
    let shop = &report.sessions[0];
    assert_eq!(shop.outcome, Outcome::Refused);
    assert!(
        shop.reason.as_ref().unwrap().contains("may be running"),
        "{report}"
    );
    assert!(!tmp.path().join("data/sessions/shop").exists());
}

#[tokio::test]
async fn a_process_with_files_open_in_the_folder_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old/shop");
    copy_auth(&old);
    let mut holder = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(&old)
        .spawn()
        .unwrap();
    let report = import(&data(&tmp), &old, false).await;
    holder.kill().unwrap();
    let _ = holder.wait();
    let reason = report.sessions[0].reason.clone().unwrap_or_default();
    assert_eq!(report.sessions[0].outcome, Outcome::Refused, "{report}");
    assert!(
        reason.contains(&format!("process {}", holder.id())),
        "{reason}"
    );
}

/// Breaks one file of an otherwise good folder; the whole folder is
/// skipped and the problem names the file (and the field).
async fn skipped_for(tmp: &tempfile::TempDir, breakage: impl FnOnce(&Path)) -> SessionReport {
    let old = tmp.path().join("old/shop");
    copy_auth(&old);
    breakage(&old);
    age(&old);
    let report = import(&data(tmp), &old, false).await;
    let shop = report.sessions[0].clone();
    assert_eq!(shop.outcome, Outcome::Skipped, "{report}");
    assert!(
        !tmp.path().join("data/sessions/shop").exists(),
        "half-imported"
    );
    assert!(
        old.join("creds.json").exists(),
        "a skipped folder was marked"
    );
    shop
}

#[tokio::test]
async fn truncated_json_is_named_with_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let shop = skipped_for(&tmp, |old| {
        let path = old.join("session-447700900123.0.json");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() / 2]).unwrap();
    })
    .await;
    let problems = problems(&shop);
    assert!(
        problems.starts_with("session-447700900123.0.json: unreadable JSON: EOF while parsing"),
        "{problems}"
    );
}

#[tokio::test]
async fn a_path_escaping_session_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let shop = skipped_for(&tmp, |old| {
        fs::write(old.join("session-..%2F..%2Fetc.0.json"), "{}").unwrap();
        fs::write(old.join("sender-key-x--..--0.json"), "{}").unwrap();
    })
    .await;
    let problems = problems(&shop);
    assert!(
        problems.contains("session-..%2F..%2Fetc.0.json: address"),
        "{problems}"
    );
    assert!(
        problems.contains("sender-key-x--..--0.json: "),
        "{problems}"
    );
}

#[tokio::test]
async fn key_lengths_are_checked_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let shop = skipped_for(&tmp, |old| {
        // A root key is 32 bytes: 33 is refused.
        let path = old.join("session-447700900123.0.json");
        let text = fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "z2mJoI1tOiBxVosoEfHoZQ5ItvuqMXKJJqcqtnMwDB4=",
            "BdWrdVKYEo2hD+d05yAM6nWnGTLykZ5vT3GaR3x2JP0k",
        );
        fs::write(&path, text).unwrap();
        // A public key is 32 bytes or 33 with 0x05: 31 is refused.
        fs::write(
            old.join("identity-key-12025550143.0.json"),
            r#"{"type":"Buffer","data":"Bd/Es+CjBzIm7jCuTmn7nteskAN7VmFQ5oW4G9/duQ=="}"#,
        )
        .unwrap();
        // A public key that does not belong to its private key.
        let path = old.join("pre-key-10.json");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("cQYM2gJqtD8F", "cQYM2gJqtD8G")).unwrap();
    })
    .await;
    let problems = problems(&shop);
    assert!(
        problems.contains("rootKey`: 33 bytes where 32 are expected"),
        "{problems}"
    );
    assert!(
        problems.contains("identity-key-12025550143.0.json: identity key: 31 bytes"),
        "{problems}"
    );
    assert!(
        problems.contains("pre-key-10.json: the public key does not belong to the private key"),
        "{problems}"
    );
}

#[tokio::test]
async fn a_32_byte_identity_where_libsignal_writes_33_is_the_same_key() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old/shop");
    copy_auth(&old);
    // libsignal-node writes 33 bytes (0x05 first), Baileys its own keys as
    // 32: both are the same key.
    fs::write(
        old.join("identity-key-12025550143.0.json"),
        r#"{"type":"Buffer","data":"38Sz4KMHMibuMK5Oafue16yQA3tWYVDmhbgb3925sDU="}"#,
    )
    .unwrap();
    age(&old);
    let report = import(&data(&tmp), &old, false).await;
    assert_eq!(report.sessions[0].outcome, Outcome::Imported, "{report}");
    let db = tmp.path().join("data/sessions/shop/whatsapp.db");
    let store = whatsapp_rust::prelude::SqliteStore::new(db.to_str().unwrap())
        .await
        .unwrap();
    let key = wacore::store::traits::SignalStore::load_identity(&store, "12025550143@c.us.0")
        .await
        .unwrap()
        .unwrap();
    let want = "38Sz4KMHMibuMK5Oafue16yQA3tWYVDmhbgb3925sDU=";
    use base64::Engine as _;
    assert_eq!(base64::engine::general_purpose::STANDARD.encode(key), want);
}

#[tokio::test]
async fn a_symlink_pointing_outside_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("outside.json");
    fs::write(&secret, "{}").unwrap();
    let shop = skipped_for(&tmp, |old| {
        std::os::unix::fs::symlink(&secret, old.join("pre-key-99.json")).unwrap();
    })
    .await;
    assert!(
        problems(&shop).contains("pre-key-99.json: a symbolic link"),
        "{}",
        problems(&shop)
    );
}

#[tokio::test]
async fn empty_unpaired_and_badly_named_folders_are_skipped_and_good_ones_still_import() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    copy_auth(&old.join("good"));
    fs::create_dir_all(old.join("empty")).unwrap();
    copy_auth(&old.join("fresh"));
    let creds = fs::read_to_string(old.join("fresh/creds.json")).unwrap();
    let mut creds: serde_json::Value = serde_json::from_str(&creds).unwrap();
    creds.as_object_mut().unwrap().remove("me");
    creds.as_object_mut().unwrap().remove("account");
    fs::write(old.join("fresh/creds.json"), creds.to_string()).unwrap();
    age(&old.join("fresh"));
    copy_auth(&old.join("bad name"));

    let report = import(&data(&tmp), &old, false).await;
    let outcome = |id: &str| {
        let s = report.sessions.iter().find(|s| s.id == id).unwrap();
        (
            s.outcome,
            s.reason.clone().unwrap_or_default() + &problems(s),
        )
    };
    assert_eq!(outcome("good").0, Outcome::Imported);
    let (empty, why) = outcome("empty");
    assert_eq!(empty, Outcome::Skipped);
    assert!(why.contains("creds.json: missing"), "{why}");
    let (fresh, why) = outcome("fresh");
    assert_eq!(fresh, Outcome::Skipped);
    assert!(why.contains("never paired"), "{why}");
    let (bad, why) = outcome("bad name");
    assert_eq!(bad, Outcome::Skipped);
    assert!(
        why.contains("invalid session id") && why.contains("--as"),
        "{why}"
    );
    assert!(!report.all_imported());
}

#[test]
fn the_command_prints_the_report_and_fails_when_a_folder_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    copy_auth(&old.join("shop"));
    fs::create_dir_all(old.join("empty")).unwrap();
    let data = tmp.path().join("data");
    let args = |extra: &[&str]| {
        let mut args = vec![
            "--data-dir",
            data.to_str().unwrap(),
            "import-baileys",
            old.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let args = args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wabridge(&args).output().unwrap()
    };
    let dry = run(&["--dry-run", "--json"]);
    assert!(!dry.status.success());
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["sessions"][1]["outcome"], "would-import");
    assert_eq!(report["sessions"][1]["counts"]["preKeys"], 26);

    let real = run(&[]);
    let text = String::from_utf8_lossy(&real.stdout);
    assert!(text.contains("shop  ("), "{text}");
    assert!(text.contains("imported"), "{text}");
    assert!(text.contains("Never run the old bridge"), "{text}");
    assert!(String::from_utf8_lossy(&real.stderr).contains("not imported"));
    assert!(data.join("sessions/shop/whatsapp.db").exists());
}
