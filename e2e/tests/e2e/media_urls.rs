//! Media by URL: a session whose webhook carries URLs gets a customer's
//! 16 MiB video as a link on wabridge's API instead of base64 inside the
//! POST. The real client downloads the encrypted file from the simulator's
//! media host into the media folder; the ERP fetches it with the API's
//! token; files go past the budget (oldest first) and with their session's
//! DELETE, and unknown or hostile ids are 404s.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::pairing::{backend, scan_first_qr};
use support::receiver::Receiver;
use support::sim::{self, Addressing, Person, Simulator};
use wabridge::api::{AccessPolicy, ApiState};
use wabridge::engine::backend::MediaMode;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::{Engine, EngineEvent, SessionState};
use wabridge::media_store::{MediaLimits, MediaStore};
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::deliver::DeliverySettings;
use wabridge::webhook::hub::WebhookHub;

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "erp-s3cret";
const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_video_reaches_the_erp_as_a_url_it_can_fetch_with_the_token() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let receiver = Receiver::start().await;

    // The API, with a token, serving the media folder.
    let media_dir = data.root().join("media");
    let store = Arc::new(
        MediaStore::open(
            media_dir.clone(),
            MediaLimits {
                max_bytes: 20 * MIB as u64,
                max_age: Duration::from_secs(3600),
                max_file_bytes: 32 * MIB as u64,
                public_url: String::new(),
            },
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    store.set_public_url(api.clone());
    let backend = wabridge::engine::whatsapp::WhatsAppBackend {
        media_store: Some(store.clone()),
        ..backend(&sim)
    };
    let hooks = WebhookHub::open(&data, DeliverySettings::default()).unwrap();
    let policy = BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let engine = Engine::with_webhooks(backend, data.clone(), policy, Some(hooks));
    let mut state = ApiState::with_access(
        engine.clone(),
        AccessPolicy {
            token: TOKEN.into(),
            ..AccessPolicy::default()
        },
    );
    state.media = Some(store);
    let router = wabridge::api::router(state);
    tokio::spawn(wabridge::api::serve(
        listener,
        router,
        std::future::pending(),
    ));

    let shop = SessionId::parse("shop").unwrap();
    engine.set_media_mode(&shop, MediaMode::Url).unwrap();
    let mut changes = engine.subscribe();
    let mut sim_events = sim.events();
    engine
        .add_session(&shop, Some(receiver.url()), None)
        .unwrap();
    scan_first_qr(&sim, &mut changes, "shop").await;
    let device = sim::linked_device(&mut sim_events, WAIT).await;
    tokio::time::timeout(WAIT, async {
        while !matches!(changes.recv().await, Ok(EngineEvent::SessionChanged(s)) if s.state == SessionState::Connected) {}
    })
    .await
    .expect("Connected");

    // 16 MiB, over the 1 MiB base64 cap: with URLs it still arrives whole.
    let video: Vec<u8> = (0..16 * MIB).map(|i| (i % 251) as u8).collect();
    let id = sim
        .send_document(
            device,
            &Person::asha(),
            Addressing::LidWithPn,
            ("video/mp4", "unboxing.mp4", &video),
            "it arrived broken",
        )
        .await
        .unwrap();
    let post = wait_for_post(&receiver, &id).await;
    assert!(
        post.len() < 4096,
        "the POST carries a link, not the file: {} bytes",
        post.len()
    );
    let body: serde_json::Value = serde_json::from_slice(&post).unwrap();
    let media = &body["messages"][0]["media"];
    assert_eq!(media["mimetype"], "video/mp4");
    assert_eq!(media["filename"], "unboxing.mp4");
    assert_eq!(media["size"], 16 * MIB);
    assert!(media.get("data").is_none(), "{media}");
    assert!(media["expiresAt"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    let url = media["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{api}/media/")), "{url}");

    let client = reqwest::Client::new();
    let get = |url: String, token: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut request = client.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap()
        }
    };
    assert_eq!(get(url.clone(), None).await.status().as_u16(), 401);
    let response = get(url.clone(), Some(TOKEN)).await;
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"unboxing.mp4\""
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(response.bytes().await.unwrap() == video, "the same bytes");
    let file = media_dir.join(url.rsplit('/').next().unwrap());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "owner only");
    for unknown in ["0123456789abcdef0123456789abcdef", "..%2F..%2Fetc%2Fpasswd"] {
        let response = get(format!("{api}/media/{unknown}"), Some(TOKEN)).await;
        assert_eq!(response.status().as_u16(), 404, "{unknown}");
    }

    // Past the 20 MiB budget the oldest file goes; the newest stays.
    let scan = vec![7u8; 8 * MIB];
    let second = sim
        .send_document(
            device,
            &Person::asha(),
            Addressing::LidWithPn,
            ("image/tiff", "scan.tiff", &scan),
            "",
        )
        .await
        .unwrap();
    let post = wait_for_post(&receiver, &second).await;
    let body: serde_json::Value = serde_json::from_slice(&post).unwrap();
    let second_url = body["messages"][0]["media"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(second_url.clone(), Some(TOKEN)).await.status().as_u16(),
        200
    );
    assert_eq!(get(url, Some(TOKEN)).await.status().as_u16(), 404);

    // Deleting the session takes its files with it.
    let deleted = client
        .delete(format!("{api}/sessions/shop"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    assert_eq!(get(second_url, Some(TOKEN)).await.status().as_u16(), 404);
    let left: Vec<_> = std::fs::read_dir(&media_dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    engine.shutdown().await;
}

/// The raw body of the `messages.upsert` POST for message `id`.
async fn wait_for_post(receiver: &Receiver, id: &str) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(post) = receiver
            .received()
            .into_iter()
            .find(|r| r.json()["messages"][0]["id"] == id)
        {
            return post.body.to_vec();
        }
        assert!(tokio::time::Instant::now() < deadline, "no POST for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
