//! One wabridge host of the benchmark: the release build of the binary the
//! e2e suite runs against the simulator (`insecure-sim-client`), headless,
//! with its own data dir and API port, either alone on SQLite or with
//! `[cluster]` on the PostgreSQL server; its stderr followed line by line.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::proc_stats::vm_rss_kib;
use super::stderr_lines::Lines;
use wabridge::cluster::lease::LeaseTimings;
use wabridge_sim::process::free_port;
use wabridge_sim::sim::Simulator;

/// How long a host may take to answer on its API, or to bring its
/// sessions up.
pub const START_WAIT: Duration = Duration::from_secs(180);

/// Where a host keeps its sessions.
pub enum Store<'a> {
    /// The data dir's SQLite files; `webhook` goes to every session listed.
    Sqlite {
        sessions: &'a [String],
        webhook: &'a str,
    },
    /// The cluster's database, under `node`'s name.
    Postgres {
        url: &'a str,
        node: &'a str,
        timings: LeaseTimings,
    },
}

pub struct Host {
    pub child: Child,
    pub lines: Lines,
    pub port: u16,
    pub node: String,
}

impl Host {
    /// Writes `dir/config.toml` and starts the binary on the data dir
    /// `data`. Webhooks are retried every 100 to 250 ms (instead of the
    /// default 2 s to 5 min), so a backlog starts draining as soon as its
    /// receiver is back.
    pub fn start(sim: &Simulator, dir: &Path, data: &Path, store: Store<'_>) -> Host {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let mut config = format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [webhook]\nretry_base = \"100ms\"\nretry_max = \"250ms\"\n\n\
             [whatsapp]\nws_url = \"{}\"\nversion = \"2.3000.1015901307\"\n\n",
            sim.ws_url()
        );
        let node = match store {
            Store::Sqlite { sessions, webhook } => {
                for id in sessions {
                    config.push_str(&format!(
                        "[[sessions]]\nid = \"{id}\"\nwebhook_url = \"{webhook}\"\nwebhook_token = \"bench\"\n\n"
                    ));
                }
                "sqlite".to_string()
            }
            Store::Postgres { url, node, timings } => {
                config.push_str(&format!(
                    "[cluster]\ndatabase_url = \"{url}\"\nnode = \"{node}\"\n\
                     lease_ttl_secs = {}\nrenew_every_secs = {}\nmargin_secs = {}\n\
                     takeover_every_secs = {}\ntakeover_batch = {}\n",
                    timings.ttl.as_secs(),
                    timings.renew_every.as_secs(),
                    timings.margin.as_secs(),
                    timings.takeover_every.as_secs(),
                    timings.takeover_batch
                ));
                node.to_string()
            }
        };
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_insecure-sim-client"))
            .args(["--headless", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(data)
            .env("HOME", dir)
            // As a service runs: with RUST_BACKTRACE set (developers'
            // shells often have it), every library error resolves a
            // backtrace and memory grows by tens of MiB.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wabridge");
        let lines = Lines::follow(child.stderr.take().unwrap());
        Host {
            child,
            lines,
            port,
            node,
        }
    }

    /// Waits until every one of `names` logged "WhatsApp Connected"; the
    /// instant of each, in order.
    pub fn until_connected(&self, names: &[String]) -> Vec<(Instant, String)> {
        self.lines
            .first_for_each("WhatsApp Connected:", names, START_WAIT)
    }

    /// Waits until the API answers `/health`.
    pub async fn until_listening(&self) {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        let deadline = Instant::now() + START_WAIT;
        while reqwest::get(&url).await.is_err() {
            assert!(Instant::now() < deadline, "{} never listened", self.node);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sessions this host serves, from its `/sessions` (which lists the
    /// cluster's others too, as `remote`): id → (status, node); empty while
    /// the API does not answer.
    pub async fn sessions(&self) -> BTreeMap<String, (String, String)> {
        let url = format!("http://127.0.0.1:{}/sessions", self.port);
        let Ok(response) = reqwest::get(&url).await else {
            return BTreeMap::new();
        };
        let Ok(body) = response.json::<serde_json::Value>().await else {
            return BTreeMap::new();
        };
        body["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["remote"] != true)
            .map(|s| {
                let text = |key: &str| s[key].as_str().unwrap_or_default().to_string();
                (text("id"), (text("status"), text("node")))
            })
            .collect()
    }

    /// Ids of the sessions this host serves Connected.
    pub async fn connected(&self) -> Vec<String> {
        self.sessions()
            .await
            .into_iter()
            .filter(|(_, (status, _))| status == "Connected")
            .map(|(id, _)| id)
            .collect()
    }

    pub fn rss_kib(&self) -> u64 {
        vm_rss_kib(self.child.id())
    }

    /// SIGTERM and wait, as a service manager stops it (a cluster host
    /// releases its leases on the way out).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL: no goodbye, no release.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    /// A run that fails leaves no process behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
