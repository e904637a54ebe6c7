//! A network path the test controls, between the host (where the simulator
//! listens) and a network namespace of the test's own (where wabridge
//! runs): a veth pair with a /30 on it. The test can black-hole the path
//! (iptables DROP inside the namespace: packets vanish, nobody answers, no
//! reset), drop a share of packets, or take the link down. Only the
//! namespace and the veth pair the harness made are touched; both go when
//! it is dropped.
//!
//! Needs root, iproute2 and iptables (`.ci/run` installs iptables; CI runs
//! as root). Where they are missing it panics saying so: never a silent
//! skip.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Paths made by this process so far (names and subnets must not clash).
static MADE: AtomicU32 = AtomicU32::new(0);

pub struct NetPath {
    namespace: String,
    host_link: String,
    host_ip: String,
    filters: Vec<Vec<String>>,
}

/// Runs a setup command; panics with what it said.
fn run(args: &[&str]) {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {args:?}: {e} (the network tests need root, iproute2 and iptables; .ci/run installs them)")
        });
    assert!(
        output.status.success(),
        "{args:?} failed: {} (the network tests need root and a kernel with network namespaces)",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

impl NetPath {
    pub fn create() -> NetPath {
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        // Unique across concurrent test processes: the pid, then a counter.
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let subnet = (std::process::id() % 60) * 4 + n % 4;
        let (octet3, octet4) = (subnet / 64 % 256, (subnet % 64) * 4);
        let host_ip = format!("10.231.{octet3}.{}", octet4 + 1);
        let ns_ip = format!("10.231.{octet3}.{}", octet4 + 2);
        let path = NetPath {
            namespace: format!("wab{tag}"),
            host_link: format!("wh{tag}"),
            host_ip,
            filters: Vec::new(),
        };
        let ns_link = format!("wn{tag}");
        run(&["ip", "netns", "add", &path.namespace]);
        run(&[
            "ip",
            "link",
            "add",
            &path.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &ns_link,
        ]);
        run(&["ip", "link", "set", &ns_link, "netns", &path.namespace]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", path.host_ip),
            "dev",
            &path.host_link,
        ]);
        run(&["ip", "link", "set", &path.host_link, "up"]);
        path.inside(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_link]);
        path.inside(&["ip", "link", "set", &ns_link, "up"]);
        path.inside(&["ip", "link", "set", "lo", "up"]);
        path
    }

    /// The host's end of the path: where a server for the namespace listens.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace, program]);
        command
    }

    fn inside(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.namespace];
        full.extend_from_slice(args);
        run(&full);
    }

    fn filter(&mut self, rule: &[&str]) {
        for chain in ["INPUT", "OUTPUT"] {
            let mut args = vec!["iptables", "-A", chain];
            args.extend_from_slice(rule);
            self.inside(&args);
            self.filters
                .push(args.iter().map(|a| a.to_string()).collect());
        }
    }

    /// Every packet in or out of the namespace vanishes: no answer, no
    /// reset, as when Wi-Fi goes or a NAT forgets the flow.
    pub fn black_hole(&mut self) {
        self.filter(&["-j", "DROP"]);
    }

    /// `percent` of the packets each way vanish.
    pub fn lose(&mut self, percent: u32) {
        let share = format!("{:.2}", f64::from(percent) / 100.0);
        self.filter(&[
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &share,
            "-j",
            "DROP",
        ]);
    }

    /// Packets flow again (undoes `black_hole` and `lose`).
    pub fn restore(&mut self) {
        for mut rule in std::mem::take(&mut self.filters) {
            rule[1] = "-D".into();
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            self.inside(&args);
        }
    }

    /// Takes the host's end of the link down (`false`) or up again.
    pub fn link(&self, up: bool) {
        run(&[
            "ip",
            "link",
            "set",
            &self.host_link,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for NetPath {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
    }
}
