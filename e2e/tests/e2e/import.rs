//! The whole switch from the old bridge, on the real binary and the real
//! client against the simulator: `wabridge import-baileys` on the old
//! `sessions/` folder, then `wabridge --headless`. The imported device logs
//! in with Baileys' noise key as the linked device Baileys paired (the
//! simulator sees both), is Connected without a QR, and a message a peer
//! encrypted on a Baileys-era Signal session reaches the old bridge's
//! webhook with the sender's real phone number.

use crate::support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use support::baileys::{age, copy_auth, fixture_json};
use support::process::{Running, headless, wabridge, write_config};
use support::receiver::Receiver;
use support::sim::{self, Addressing, Person, SimEvent, Simulator};

const WAIT: Duration = Duration::from_secs(40);
/// The fixture's linked device: `15550001111:7@s.whatsapp.net`.
const PHONE: &str = "15550001111";
const LID: &str = "100000000000001";
const DEVICE: u32 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_session_connects_without_a_qr_and_forwards_held_messages() {
    let sim = Simulator::start_with_phone("127.0.0.1:0", PHONE, LID)
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old-bridge/sessions");
    copy_auth(&old.join("shop"));
    std::fs::write(
        old.join("shop/webhook-config.json"),
        format!(
            r#"{{"webhookUrl":"{}","webhookToken":"erp-token"}}"#,
            receiver.url()
        ),
    )
    .unwrap();
    age(&old.join("shop"));
    let data = tmp.path().join("data");

    // The person runs one command …
    let out = wabridge(&[
        "--data-dir",
        data.to_str().unwrap(),
        "import-baileys",
        old.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // … while alice writes on her Baileys-era session (held by the server
    // until the device logs in again).
    let vector = fixture_json("vectors.json")
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["note"] == "wa-message")
        .unwrap()
        .clone();
    // Asha is the simulator's person with alice's LID (260477250707536)
    // and number (919075167132); the stanza hides the number.
    let alice = Person::asha();
    let ciphertext = STANDARD
        .decode(vector["ciphertext"].as_str().unwrap())
        .unwrap();
    let id = sim.send_ciphertext(DEVICE, &alice, Addressing::LidHidden, "msg", ciphertext);

    // … and starts wabridge.
    let mut events = sim.events();
    let config = write_config(tmp.path(), &sim.ws_url(), "");
    let mut running = tokio::task::spawn_blocking(move || {
        let mut running = Running::spawn(headless(&config, &data));
        running.expect_line("WhatsApp Connected: shop", WAIT);
        running
    })
    .await
    .unwrap();

    let handshake = sim::wait_for(&mut events, WAIT, |e| {
        matches!(e, SimEvent::Handshake { .. })
    })
    .await;
    let SimEvent::Handshake {
        username,
        device,
        client_static,
        ..
    } = handshake
    else {
        unreachable!()
    };
    let expected = fixture_json("expected.json");
    assert_eq!(
        username,
        Some(PHONE.parse().unwrap()),
        "logs in as Baileys' device"
    );
    assert_eq!(device, Some(DEVICE));
    assert_eq!(
        STANDARD.encode(client_static),
        expected["noisePub"],
        "with Baileys' noise key"
    );
    assert!(
        !running.seen.iter().any(|l| l.contains("code 1 of 6")),
        "no QR was shown:\n{}",
        running.seen.join("\n")
    );

    let got = receiver.wait_for_upserts(1, WAIT).await;
    let message = got
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} not forwarded: {got:?}"));
    assert_eq!(message["text"], vector["wa_text"]);
    assert_eq!(
        message["from"], "919075167132",
        "from the imported LID mapping"
    );
    assert_eq!(message["fromResolved"], true);
    assert_eq!(message["fromLid"], "260477250707536");
    let delivery = receiver
        .received()
        .into_iter()
        .find(|r| r.json()["event"] == "messages.upsert")
        .unwrap();
    assert_eq!(
        delivery.header("x-webhook-token").as_deref(),
        Some("erp-token")
    );
    assert_eq!(delivery.json()["sessionId"], "shop");

    tokio::task::spawn_blocking(move || running.terminate(WAIT))
        .await
        .unwrap();
}
