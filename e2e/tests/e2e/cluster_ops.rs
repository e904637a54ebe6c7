//! What an operator does through any host of a cluster reaches the host
//! that serves the session, through the database (docs/cluster.md, "What
//! the operator does through any host"): two real hosts, PostgreSQL and the
//! simulator. A webhook changed through the host that does not serve a
//! session takes effect on the one that does; a DELETE through it logs the
//! session out where it runs and out of the cluster; a logout's mark
//! survives the death of its host, so the survivor waits for the operator
//! instead of showing a QR nobody asked for.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cluster::{Erp, Host, WAIT, setup, until_all_served};
use crate::support::sim::{Action, Addressing, Person, Target};

/// `method` on `host`'s API: (status, body).
async fn call(
    host: &Host,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}{path}", host.port);
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `host`'s `/sessions` until `id`'s status is `want`.
async fn until_status(host: &Host, id: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let sessions = host.sessions().await;
        if sessions
            .get(id)
            .is_some_and(|(status, node)| status == want && *node == host.node)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never {want} on {}: {sessions:?}",
            host.node
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_change_and_a_delete_through_the_other_host_reach_the_serving_one() {
    let first = Erp::start().await;
    let second = Erp::start().await;
    let setup = setup(2, &first.url()).await;
    let mut a = Host::start(&setup, "host-a");
    let mut b = Host::start(&setup, "host-b");
    let served = until_all_served(&mut [&mut a, &mut b], 2).await;
    let (serving, other, session) = match served[0].keys().next() {
        Some(id) => (&a, &b, id.clone()),
        None => (&b, &a, served[1].keys().next().unwrap().clone()),
    };
    let device = setup.devices[&session];

    // The new webhook, through the host that does not serve the session:
    // it names the node that does.
    let (status, answer) = call(
        other,
        reqwest::Method::POST,
        "/sessions/start",
        Some(json!({ "sessionId": session, "webhookUrl": second.url() })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["node"], serving.node, "{answer}");
    // Within a renewal (2 s in this test) the serving host delivers there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asha = Person::asha();
    let message = setup
        .sim
        .send_text(device, &asha, Addressing::LidWithPn, "after the change")
        .await
        .unwrap();
    let ids: HashSet<String> = std::iter::once(message.clone()).collect();
    second
        .until(&ids, WAIT, "delivered to the new webhook", |seen| {
            seen.iter().any(|(_, status)| *status == 200)
        })
        .await;
    assert!(
        !first.by_message().contains_key(&message),
        "the old webhook got it too"
    );

    // DELETE through the host that does not serve it: answered once the
    // serving host logged it out and the cluster forgot it.
    let (status, answer) = call(
        other,
        reqwest::Method::DELETE,
        &format!("/sessions/{session}"),
        None,
    )
    .await;
    assert_eq!((status, answer), (200, json!({ "status": "logged out" })));
    assert!(
        !setup
            .leases
            .has_session(&wabridge::paths::SessionId::parse(&session).unwrap())
            .await
            .unwrap()
    );
    assert!(!serving.sessions().await.contains_key(&session));
    // No host takes it again, and its folder is gone where it ran.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!a.sessions().await.contains_key(&session));
    assert!(!b.sessions().await.contains_key(&session));
    let folder = setup
        .tmp
        .path()
        .join(&serving.node)
        .join("data/sessions")
        .join(&session);
    assert!(!folder.exists(), "{} left behind", folder.display());
    // An id no host knows is 404 on every host.
    let (status, _) = call(other, reqwest::Method::DELETE, "/sessions/nobody", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_a_host_that_dies_is_kept_by_the_survivor_until_the_operator_starts_it() {
    let erp = Erp::start().await;
    let setup = setup(1, &erp.url()).await;
    let (session, device) = setup
        .devices
        .iter()
        .next()
        .map(|(id, device)| (id.clone(), *device))
        .unwrap();
    let mut a = Host::start(&setup, "host-a");
    until_all_served(&mut [&mut a], 1).await;

    // The phone removes the device: 401 on host-a.
    assert!(setup.sim.act_on(
        Target::Device(device),
        Action::Failure {
            reason: 401,
            ban_code: None,
            expire_secs: None,
        }
    ));
    until_status(&a, &session, "Logged Out", WAIT).await;

    // host-a dies; host-b takes the session after the lease and, like
    // host-a would, waits for the operator: no QR.
    let b = Host::start(&setup, "host-b");
    a.running.child.kill().unwrap();
    let _ = a.running.child.wait();
    until_status(&b, &session, "Logged Out", WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    until_status(&b, &session, "Logged Out", Duration::ZERO).await;

    // The operator starts it again: it pairs (a QR) on host-b.
    let (status, answer) = call(
        &b,
        reqwest::Method::POST,
        "/sessions/start",
        Some(json!({ "sessionId": session })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "QR Scan Required", "{answer}");
    assert!(
        answer["qr"]
            .as_str()
            .is_some_and(|qr| qr.starts_with("data:image/png;base64,"))
    );
}
