//! Real network faults between wabridge and WhatsApp: the binary runs in a
//! network namespace of the test's own, the simulator listens on the host's
//! end of a veth pair, and the test black-holes the path in between
//! (packets vanish: no FIN, no RST), as Wi-Fi going off does. Needs root,
//! iproute2 and iptables (`.ci/run` installs iptables; CI runs as root).

use crate::support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::delay_proxy::DelayProxy;
use support::netns::NetPath;
use support::pairing::pair_and_stop;
use support::process::{BINARY, Running, headless, write_config, write_config_with_backoff};
use support::sim::Simulator;
use wabridge::paths::DataDir;

const WAIT: Duration = Duration::from_secs(60);

/// A session paired beforehand, the simulator on the host's end of a path
/// of the test's own, and the config for the real binary (headless,
/// liveness bound `bound`) to run in the path's namespace.
struct Behind {
    path: NetPath,
    config: PathBuf,
    data: PathBuf,
    _sim: Simulator,
    tmp: tempfile::TempDir,
}

/// `backoff` is the reconnect schedule's base and cap, e.g. the seed's.
async fn paired_behind_a_path(bound: Duration, backoff: (&str, &str)) -> Behind {
    let path = NetPath::create();
    let sim = Simulator::start_on(&format!("{}:0", path.host_ip()))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    pair_and_stop(&sim, &DataDir::new(&data), "shop", None).await;
    let config = write_config_with_backoff(
        tmp.path(),
        &sim.ws_url(),
        backoff,
        &format!(
            "dead_after = \"{}s\"\n\n[[sessions]]\nid = \"shop\"\n",
            bound.as_secs()
        ),
    );
    Behind {
        path,
        config,
        data,
        _sim: sim,
        tmp,
    }
}

impl Behind {
    /// Starts the binary in the namespace; returns once the session is up.
    fn start_connected(&self) -> Running {
        let mut wabridge = self.path.command(BINARY);
        wabridge
            .args(["--headless", "--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .env("HOME", self.tmp.path());
        let mut running = Running::spawn(wabridge);
        running.until_seen("WhatsApp Connected: shop", 1, WAIT);
        running
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wifi_off_for_a_while_is_noticed_within_the_bound_and_comes_back_without_a_qr() {
    let bound = Duration::from_secs(5);
    // The seed's schedule: 5 s, 10 s, ... between retries.
    let mut behind = paired_behind_a_path(bound, ("5s", "60s")).await;
    tokio::task::spawn_blocking(move || {
        let mut running = behind.start_connected();
        let (path, data) = (&mut behind.path, &behind.data);

        // Wi-Fi off: nothing gets through, and nothing says so.
        path.black_hole();
        let off = Instant::now();
        running.until_seen("no answer from WhatsApp for", 1, bound * 4);
        let noticed = off.elapsed();
        assert!(
            noticed < bound + Duration::from_secs(4),
            "noticed after {noticed:?} (bound {bound:?})"
        );
        // It stays off a while; the retries meanwhile find nobody. The
        // first, 5 s after noticing, is 9 s into its connect when the path
        // comes back, waiting for the kernel to resend its SYN.
        std::thread::sleep(Duration::from_secs(14));
        assert_eq!(running.count("WhatsApp Connected: shop"), 1);

        // Wi-Fi back: the session logs in again with its credentials, as
        // soon as the probe gets through, not when its stuck attempt or its
        // backoff ends.
        path.restore();
        let on = Instant::now();
        running.until_seen("WhatsApp Connected: shop", 2, WAIT);
        let back = on.elapsed();
        eprintln!(
            "black hole noticed after {noticed:.1?}; connected again {back:.1?} after the link came back"
        );
        assert!(
            back < Duration::from_secs(2),
            "back {back:?} after the path was (goal 2 s)"
        );
        // Not by luck of timing: the probe found the path back and the stuck
        // attempt started over.
        assert_eq!(
            running.count("starting shop's stalled connection attempt over"),
            1,
            "{}",
            running.seen.join("\n")
        );
        assert_eq!(running.count("Scan with WhatsApp"), 0, "no QR");
        assert!(data.join("sessions/shop/whatsapp.db").exists(), "credentials kept");
        running.terminate(Duration::from_secs(20));
    })
    .await
    .unwrap();
}

/// A poor link is not a dead one: with a fifth of the packets lost each way
/// the pings still get through often enough, and the session stays up; a
/// link taken down and brought back is noticed and recovered like a black
/// hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_link_stays_connected_and_a_link_down_and_up_recovers() {
    let bound = Duration::from_secs(5);
    // The seed's schedule, so a quick return is the network watch's doing.
    let mut behind = paired_behind_a_path(bound, ("5s", "60s")).await;
    tokio::task::spawn_blocking(move || {
        let mut running = behind.start_connected();
        let path = &mut behind.path;

        path.lose(20);
        running.read_for(bound * 4);
        assert_eq!(
            running.count("Connection closed for shop"),
            0,
            "20 % loss for {:?} closed the session:\n{}",
            bound * 4,
            running.seen.join("\n")
        );
        path.restore();

        // The cable out a while, then back in: the kernel says so, and the
        // session retries at once rather than when its backoff ends.
        path.link(false);
        running.until_seen("no answer from WhatsApp for", 1, bound * 4);
        std::thread::sleep(Duration::from_secs(2));
        path.link(true);
        running.until_seen(
            "can be reached again (the OS reported a network change)",
            1,
            Duration::from_secs(2),
        );
        running.until_seen("WhatsApp Connected: shop", 2, Duration::from_secs(2));
        assert_eq!(running.count("Scan with WhatsApp"), 0, "no QR");
        running.terminate(Duration::from_secs(20));
    })
    .await
    .unwrap();
}

/// A slow link is not a dead one: with half a second added each way (a
/// second per round trip, through a delaying proxy: this kernel has no
/// netem), the session logs in and stays up, its pings answered in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_second_of_latency_each_way_stays_connected() {
    let bound = Duration::from_secs(5);
    let sim = Simulator::start().await.unwrap();
    let proxy = DelayProxy::start(sim.addr(), Duration::from_millis(500)).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    pair_and_stop(&sim, &DataDir::new(&data), "shop", None).await;
    let config = write_config(
        tmp.path(),
        &proxy.ws_url(),
        "dead_after = \"5s\"\n\n[[sessions]]\nid = \"shop\"\n",
    );
    let mut wabridge = headless(&config, &data);
    wabridge.env("HOME", tmp.path());
    tokio::task::spawn_blocking(move || {
        let mut running = Running::spawn(wabridge);
        running.until_seen("WhatsApp Connected: shop", 1, WAIT);
        running.read_for(bound * 4);
        assert_eq!(
            running.count("Connection closed for shop"),
            0,
            "a second per round trip for {:?} closed the session:\n{}",
            bound * 4,
            running.seen.join("\n")
        );
        running.terminate(Duration::from_secs(20));
    })
    .await
    .unwrap();
    drop(proxy);
}
