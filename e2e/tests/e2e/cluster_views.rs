//! The whole cluster on every host, end to end: two real hosts
//! (`cluster.rs`'s) on one PostgreSQL and the simulator. Each host's
//! `/sessions`, `/health` and `/metrics` list the other host's sessions
//! with that host's node and state, and the dashboard attached to one host
//! in a real terminal (tmux) shows them in its Node column; after kill -9
//! of the other host its sessions move, in the API and on the screen.
//!
//! Needs tmux (`.ci/run` installs it).

use crate::cluster::{Host, setup, until_all_served};
use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::process::BINARY;
use support::receiver::Receiver;
use support::tmux::Tmux;

const WAIT: Duration = Duration::from_secs(90);

async fn get(host: &Host, path: &str) -> Option<reqwest::Response> {
    reqwest::get(format!("http://127.0.0.1:{}{path}", host.port))
        .await
        .ok()
}

/// Every session `host`'s `/sessions` lists: id → the entry.
async fn listed(host: &Host) -> BTreeMap<String, Value> {
    let Some(response) = get(host, "/sessions").await else {
        return BTreeMap::new();
    };
    let body: Value = response.json().await.unwrap_or_default();
    body["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

/// Polls `host`'s `/sessions` until `done` holds; returns that listing.
async fn until_listed(
    host: &Host,
    what: &str,
    done: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let sessions = listed(host).await;
        if done(&sessions) {
            return sessions;
        }
        assert!(
            Instant::now() < deadline,
            "{}'s /sessions never showed {what}: {sessions:#?}",
            host.node
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `wabridge attach` on the data dir of the host named `node`, in a
/// terminal of its own.
fn dashboard(setup_dir: &std::path::Path, node: &str) -> Tmux {
    let dir = setup_dir.join(node);
    let command = format!(
        "env HOME={home} TERM=xterm-256color {BINARY} attach --config {config} --data-dir {data}",
        home = dir.display(),
        config = dir.join("config.toml").display(),
        data = dir.join("data").display(),
    );
    Tmux::start(&format!("views-{node}"), &command, 150, 50)
}

/// The dashboard's row of `session`.
fn row_of(screen: &str, session: &str) -> Option<String> {
    let cell = format!("│ {session} ");
    screen
        .lines()
        .find(|l| l.contains(&cell))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_host_shows_the_other_hosts_sessions_and_their_move_after_a_kill() {
    const COUNT: usize = 4;
    let receiver = Receiver::start().await;
    let setup = setup(COUNT, &receiver.url()).await;
    let mut a = Host::start(&setup, "host-a");
    let mut b = Host::start(&setup, "host-b");
    let served = until_all_served(&mut [&mut a, &mut b], COUNT).await;
    // The viewer is the host serving fewer; the other serves at least one.
    let (viewer, other, theirs) = if served[0].len() <= served[1].len() {
        (&mut a, &mut b, served[1].clone())
    } else {
        (&mut b, &mut a, served[0].clone())
    };
    let theirs: Vec<String> = theirs.into_keys().collect();
    println!(
        "{} serves {}, {} serves {:?}",
        viewer.node,
        COUNT - theirs.len(),
        other.node,
        theirs
    );

    // The viewer lists the other host's sessions with their node and their
    // reported state, Connected, fresh.
    let (viewer_node, other_node) = (viewer.node.clone(), other.node.clone());
    let listing = until_listed(viewer, "the other host's sessions Connected", |all| {
        all.len() == COUNT
            && theirs.iter().all(|id| {
                all.get(id).is_some_and(|s| {
                    s["node"] == other_node.as_str()
                        && s["remote"] == true
                        && s["status"] == "Connected"
                        && s["stale"] == false
                })
            })
    })
    .await;
    for (id, entry) in &listing {
        if !theirs.contains(id) {
            assert_eq!(entry["node"], viewer_node.as_str(), "{entry}");
            assert!(entry.get("remote").is_none(), "{entry}");
        }
    }
    let status: Value = get(viewer, &format!("/sessions/{}/status", theirs[0]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "Connected", "{status}");
    assert_eq!(status["node"], other_node.as_str(), "{status}");
    let health: Value = get(viewer, "/health").await.unwrap().json().await.unwrap();
    let nodes = &health["cluster"]["nodes"];
    assert_eq!(
        *nodes,
        serde_json::json!([
            { "node": "host-a", "sessions": if viewer_node == "host-a" { COUNT - theirs.len() } else { theirs.len() } },
            { "node": "host-b", "sessions": if viewer_node == "host-b" { COUNT - theirs.len() } else { theirs.len() } },
        ]),
        "{health}"
    );
    let metrics = get(viewer, "/metrics").await.unwrap().text().await.unwrap();
    let line = format!(
        "wabridge_session_node{{session=\"{}\",node=\"{other_node}\"}} 1",
        theirs[0]
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");

    // The viewer's dashboard, attached in a real terminal, shows the
    // other host's session in its Node column, as another host's.
    let tmp = setup.tmp.path().to_path_buf();
    let session = theirs[0].clone();
    let (screen, tmux) = {
        let (viewer_node, other_node, session) =
            (viewer_node.clone(), other_node.clone(), session.clone());
        tokio::task::spawn_blocking(move || {
            let tmux = dashboard(&tmp, &viewer_node);
            let screen = tmux.until("the other host's session with its node", |s| {
                row_of(s, &session)
                    .is_some_and(|row| row.contains(&other_node) && row.contains("○ Connected"))
                    && s.contains(&format!("cluster: 2 nodes, {COUNT} sessions"))
            });
            (screen, tmux)
        })
        .await
        .unwrap()
    };
    assert!(screen.contains("NODE"), "{screen}");
    assert!(
        screen.contains(&format!("node {viewer_node}")),
        "the title names this host's node: {screen}"
    );

    // kill -9 of the other host: its sessions come to the viewer, in the
    // API and on the screen.
    let killed = Instant::now();
    other.running.child.kill().unwrap();
    let _ = other.running.child.wait();
    until_listed(viewer, "every session served here, Connected", |all| {
        all.len() == COUNT
            && all.values().all(|s| {
                s["node"] == viewer_node.as_str()
                    && s.get("remote").is_none()
                    && s["status"] == "Connected"
            })
    })
    .await;
    println!(
        "{} session(s) of {} listed as {}'s, Connected, {:.1} s after the kill",
        theirs.len(),
        other_node,
        viewer_node,
        killed.elapsed().as_secs_f64()
    );
    let moved = {
        let (viewer_node, session) = (viewer_node.clone(), session.clone());
        tokio::task::spawn_blocking(move || {
            tmux.until("the session now served here", |s| {
                row_of(s, &session)
                    .is_some_and(|row| row.contains(&viewer_node) && row.contains("● Connected"))
                    && s.contains(&format!("cluster: 1 node, {COUNT} sessions"))
            })
        })
        .await
        .unwrap()
    };
    assert!(!moved.contains("waiting for a host"), "{moved}");
    println!(
        "the dashboard shows them on {} {:.1} s after the kill",
        viewer_node,
        killed.elapsed().as_secs_f64()
    );
}
