//! What an operator does through any host of a cluster reaches the host
//! that serves the session, through the database (docs/cluster.md, "What
//! the operator does through any host"): two real hosts, PostgreSQL and the
//! simulator. A webhook changed through the host that does not serve a
//! session takes effect on the one that does; a DELETE through it logs the
//! session out where it runs and out of the cluster; a logout's mark
//! survives the death of its host, so the survivor waits for the operator
//! instead of showing a QR nobody asked for. Sends, reconnects, QR codes
//! and dead letters asked of any host are answered by the serving one.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cluster::{Erp, Host, Setup, WAIT, setup, until_all_served};
use crate::support::sim::{self, Action, Addressing, Person, SimEvent, Target};

/// Two hosts sharing the setup's two sessions, both served; returns the
/// host serving the first session of `host-a`'s (or `host-b`'s), the
/// other host, and that session.
async fn serving_other_and_session(setup: &Setup) -> (Host, Host, String) {
    let mut a = Host::start(setup, "host-a");
    let mut b = Host::start(setup, "host-b");
    let served = until_all_served(&mut [&mut a, &mut b], 2).await;
    match served[0].keys().next() {
        Some(id) => (a, b, id.clone()),
        None => (b, a, served[1].keys().next().unwrap().clone()),
    }
}

/// `method` on `host`'s API: (status, body).
async fn call(
    host: &Host,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, body, _) = call_noting_node(host, method, path, body).await;
    (status, body)
}

/// [`call`], with the host that answered for the session when the request
/// was forwarded (`X-Wabridge-Node`).
async fn call_noting_node(
    host: &Host,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let url = format!("http://127.0.0.1:{}{path}", host.port);
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let node = response
        .headers()
        .get("x-wabridge-node")
        .map(|v| v.to_str().unwrap().to_string());
    (status, response.json().await.unwrap_or(Value::Null), node)
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
    let (serving, other, session) = serving_other_and_session(&setup).await;
    let (serving, other) = (&serving, &other);
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
    assert!(!serving.sessions().await.contains_key(&session));
    assert!(!other.sessions().await.contains_key(&session));
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

/// Any host answers for any session: a send, a reconnect, the QR and the
/// dead letters asked of the host that does not serve the session are
/// forwarded to the one that does (named in `X-Wabridge-Node`), and the
/// customer gets the message. A serving host that cannot be reached, or
/// that published no address, is named in the error; a session no host
/// serves is a 404 as on one host.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_for_a_session_made_to_any_host_are_answered_by_the_one_serving_it() {
    let erp = Erp::start().await;
    let setup = setup(2, &erp.url()).await;
    let (serving, other, session) = serving_other_and_session(&setup).await;
    let (serving, other) = (&serving, &other);
    let ben = Person::ben();
    setup.sim.add_person(&ben).await;
    let mut sim_events = setup.sim.events();

    let (status, sent, node) = call_noting_node(
        other,
        reqwest::Method::POST,
        "/sessions/send",
        Some(json!({
            "sessionId": session,
            "receiver": "+44 7700 900123",
            "message": "Your order ships today"
        })),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(node.as_deref(), Some(serving.node.as_str()));
    let message_id = sent["messageId"].as_str().unwrap().to_string();
    let received = sim::wait_for(
        &mut sim_events,
        WAIT,
        |e| matches!(e, SimEvent::MessageToPerson { id, .. } if *id == message_id),
    )
    .await;
    let SimEvent::MessageToPerson { to, text, .. } = received else {
        unreachable!()
    };
    assert_eq!(
        (to.as_str(), text.as_str()),
        ("447700900123", "Your order ships today")
    );

    // The serving host's own answers, whatever they are.
    let asked = [
        (
            reqwest::Method::GET,
            format!("/sessions/{session}/dead-letters"),
            200,
            json!({ "deadLetters": [] }),
        ),
        (
            reqwest::Method::GET,
            format!("/sessions/{session}/qr"),
            404,
            json!({ "error": "No QR code: the session is not pairing" }),
        ),
        (
            reqwest::Method::POST,
            format!("/sessions/{session}/reconnect"),
            200,
            json!({ "status": "reconnecting" }),
        ),
    ];
    for (method, path, want_status, want_body) in asked {
        let (status, body, node) = call_noting_node(other, method, &path, None).await;
        assert_eq!((status, &body), (want_status, &want_body), "{path}");
        assert_eq!(node.as_deref(), Some(serving.node.as_str()), "{path}");
    }
    until_status(serving, &session, "Connected", WAIT).await;

    // A host the others cannot reach, or one without an address: said.
    let published = |url: Option<&str>| {
        let pool = setup.leases.pool.clone();
        let (node, url) = (serving.node.clone(), url.map(str::to_string));
        async move {
            pool.get()
                .await
                .unwrap()
                .execute(
                    "UPDATE cluster_nodes SET api_url = $2 WHERE node = $1",
                    &[&node, &url],
                )
                .await
                .unwrap();
        }
    };
    let reconnect = format!("/sessions/{session}/reconnect");
    published(Some("http://127.0.0.1:1")).await;
    let (status, body) = call(other, reqwest::Method::POST, &reconnect, None).await;
    assert_eq!(status, 502, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&serving.node) && error.contains("http://127.0.0.1:1"),
        "{error}"
    );
    published(None).await;
    let (status, body) = call(other, reqwest::Method::POST, &reconnect, None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("[cluster] api_url"),
        "{body}"
    );

    // Nobody serves it: as on one host.
    let (status, body, node) = call_noting_node(
        other,
        reqwest::Method::POST,
        "/sessions/nobody/reconnect",
        None,
    )
    .await;
    assert_eq!((status, node), (404, None), "{body}");
}

/// Calls turned down in a cluster: asked through the host that does not
/// serve the session, kept in the cluster's row, applied by the serving
/// host, which rejects the next call and writes the reply to the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_turned_down_through_any_host_are_turned_down_where_the_session_runs() {
    const REPLY: &str = "This number does not take calls; please write";
    let erp = Erp::start().await;
    let setup = setup(2, &erp.url()).await;
    // A session and the host that does not serve it (the serving one
    // kept running).
    let (_serving, other, session) = serving_other_and_session(&setup).await;
    let other = &other;
    let device = setup.devices[&session];
    let asha = Person::asha();
    setup.sim.add_person(&asha).await;

    let (status, answer) = call(
        other,
        reqwest::Method::POST,
        "/sessions/start",
        Some(json!({ "sessionId": session, "rejectCalls": true, "callReply": REPLY })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // Within a renewal (2 s here) the serving host applies it; until then
    // a call may still ring, so ring until one is turned down.
    let mut sim_events = setup.sim.events();
    let deadline = Instant::now() + WAIT;
    let rejected = loop {
        let call_id = setup
            .sim
            .send_call(device, &asha, Addressing::LidWithPn, false)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if setup.sim.rejected_calls().contains(&call_id) {
            break call_id;
        }
        assert!(Instant::now() < deadline, "no call was turned down");
    };
    sim::wait_for(
        &mut sim_events,
        WAIT,
        |e| matches!(e, SimEvent::MessageToPerson { text, .. } if text == REPLY),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    let heard = loop {
        let calls = erp.events("call.received");
        if let Some(body) = calls.into_iter().find(|b| b["callId"] == rejected.as_str()) {
            break body;
        }
        assert!(Instant::now() < deadline, "the ERP never heard of it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(heard["rejected"], true);
    assert_eq!(heard["sessionId"], session.as_str());
}
