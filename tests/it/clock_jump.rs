//! The wall clock jumps while deliveries wait (NTP correcting a wrong boot
//! clock, an operator setting the date): the real binary runs under
//! libfaketime, whose offset the test moves two days ahead while the ERP is
//! down. With `max_age = "1day"`, the waiting delivery must not be buried as
//! expired on the spot; the ERP gets it once it answers again.

use crate::support;

use std::time::Duration;

use support::process::{Running, free_port, headless, with_movable_wall_clock, write_config};
use support::receiver::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_jump_does_not_expire_waiting_deliveries() {
    let tmp = tempfile::tempdir().unwrap();
    let erp = Receiver::start().await;
    // Down for the first three tries, then back.
    erp.script([Reply::Status(503), Reply::Status(503), Reply::Status(503)]);
    // Nothing listens there: the session fails to connect and reports
    // "Disconnected" to its webhook, which is what waits.
    let whatsapp = format!("ws://127.0.0.1:{}/ws/chat", free_port());
    let config = write_config(
        tmp.path(),
        &whatsapp,
        &format!(
            "[webhook]\nretry_base = \"300ms\"\nretry_max = \"600ms\"\nmax_age = \"1day\"\n\n[[sessions]]\nid = \"shop\"\nwebhook_url = \"{}\"\n",
            erp.url()
        ),
    );
    let offset = tmp.path().join("faketime");
    let mut command = headless(&config, &tmp.path().join("data"));
    // Only the wall clock moves; timers run on the real monotonic one.
    with_movable_wall_clock(&mut command, &offset);
    let mut running = Running::spawn(command);

    let first = erp.wait_for(1, WAIT).await;
    std::fs::write(&offset, "+2d\n").unwrap();
    let all = erp.wait_for(4, WAIT).await;
    let id = first[0].header("x-wabridge-delivery");
    assert!(
        all.iter().all(|r| r.header("x-wabridge-delivery") == id),
        "the same delivery, retried until the ERP took it"
    );
    running.terminate(WAIT);
    assert!(
        !running.seen.iter().any(|l| l.contains("dead letter")),
        "{:#?}",
        running.seen
    );
}
