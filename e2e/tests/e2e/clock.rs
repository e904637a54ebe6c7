//! The wall clock steps under live sessions (NTP correcting a wrong clock,
//! an operator setting the date, a VM resumed with its old time): the real
//! binary runs under libfaketime with only the wall clock faked, and the
//! test moves it an hour ahead, then back. wabridge's own liveness runs on
//! the monotonic clock and must not take a step for silence.

use crate::support;

use std::time::Duration;

use support::pairing::pair_and_stop;
use support::process::{Running, headless, with_movable_wall_clock, write_config};
use support::sim::Simulator;
use wabridge::paths::DataDir;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_is_not_taken_for_a_dead_link() {
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    pair_and_stop(&sim, &DataDir::new(&data), "shop", None).await;
    let config = write_config(
        tmp.path(),
        &sim.ws_url(),
        "dead_after = \"5s\"\n\n[[sessions]]\nid = \"shop\"\n",
    );
    let offset = tmp.path().join("faketime");
    let mut command = headless(&config, &data);
    command.env("HOME", tmp.path());
    with_movable_wall_clock(&mut command, &offset);
    tokio::task::spawn_blocking(move || {
        let mut running = Running::spawn(command);
        running.until_seen("WhatsApp Connected: shop", 1, WAIT);
        // An hour ahead, then back, each held for longer than the library's
        // keepalive period (15–30 s).
        for step in ["+1h", "+0"] {
            std::fs::write(&offset, format!("{step}\n")).unwrap();
            running.read_for(Duration::from_secs(32));
        }
        eprintln!("{}", running.seen.join("\n"));
        assert_eq!(running.count("no answer from WhatsApp"), 0);
        running.terminate(Duration::from_secs(20));
    })
    .await
    .unwrap();
}
