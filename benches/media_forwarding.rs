//! Media to the ERP, base64 inside the POST (the old bridge's way) against
//! a URL on wabridge's API (`media = "url"`): 16 customers' 16 MiB videos,
//! each taken in as the durability hook does (into memory for base64,
//! written to the media store for URLs), turned into its webhook body,
//! persisted to the outbox (with fsync) and POSTed to a loopback receiver;
//! the receiver fetches nothing (what the ERP then downloads is the same
//! file either way). Each mode runs in a process of its own, so its peak
//! RSS is its own.
//!
//! Prints figures; asserts none. Run: `cargo bench --bench media_forwarding`

#[path = "shared/peak_rss.rs"]
mod peak_rss;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use wabridge::engine::backend::{ContentKind, IncomingMedia, IncomingMessage, MediaContent};
use wabridge::engine::phone::{Lookups, resolve};
use wabridge::media_store::{MediaLimits, MediaMeta, MediaStore};
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::bridge::{dedupe_key, webhook_event};
use wabridge::webhook::deliver::{DeliverySettings, Target};
use wabridge::webhook::hub::WebhookHub;

use peak_rss::peak_rss_mib;

const VIDEOS: usize = 16;
const VIDEO_BYTES: usize = 16 << 20;
const MODE: &str = "WABRIDGE_MEDIA_BENCH_MODE";

#[derive(Default)]
struct Received {
    posts: AtomicUsize,
    bytes: AtomicU64,
}

async fn receive(State(received): State<Arc<Received>>, body: Bytes) -> &'static str {
    received
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    received.posts.fetch_add(1, Ordering::Relaxed);
    "ok"
}

fn main() {
    match std::env::var(MODE) {
        Ok(mode) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(run(mode == "url"));
        }
        Err(_) => {
            for mode in ["base64", "url"] {
                let status = std::process::Command::new(std::env::current_exe().unwrap())
                    .env(MODE, mode)
                    .status()
                    .unwrap();
                assert!(status.success(), "the {mode} run failed");
            }
        }
    }
}

async fn run(as_url: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let received = Arc::new(Received::default());
    // An ERP that takes 22 MiB bodies at all (axum's default stops at 2 MiB,
    // nginx's at 1 MiB: base64 media that size needs the receiver raised).
    let router = Router::new()
        .route("/hook", post(receive))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let hub = WebhookHub::open(&data, DeliverySettings::default()).unwrap();
    let session = SessionId::parse("shop").unwrap();
    hub.set_target(&session, Some(Target { url, token: None }));
    let store = Arc::new(
        MediaStore::open(
            data.root().join("media"),
            MediaLimits {
                max_bytes: 4 << 30,
                max_age: Duration::from_secs(3600),
                max_file_bytes: 100 << 20,
                public_url: "http://127.0.0.1:3000".into(),
            },
        )
        .unwrap(),
    );
    let from = resolve(&Lookups {
        sender: "919075167132@s.whatsapp.net",
        ..Lookups::default()
    });
    let started = Instant::now();
    for n in 0..VIDEOS {
        // What a download hands over: the bytes in memory, or a kept file.
        let video: Vec<u8> = (0..VIDEO_BYTES).map(|i| (i + n) as u8).collect();
        let content = if as_url {
            let mut file = store.create().unwrap();
            file.write_all(&video).unwrap();
            let meta = MediaMeta {
                session: Some("shop".into()),
                mimetype: "video/mp4".into(),
                filename: None,
                size: 0,
                created_ms: 0,
            };
            let now_ms = chrono::Utc::now().timestamp_millis();
            MediaContent::Stored(store.keep(file, meta, now_ms).unwrap())
        } else {
            MediaContent::Bytes(video)
        };
        let message = IncomingMessage {
            kind: ContentKind::Video,
            media: Some(IncomingMedia {
                mimetype: "video/mp4".into(),
                filename: None,
                content,
            }),
            ..IncomingMessage::new(
                format!("3EB0VIDEO{n:04}"),
                "919075167132@s.whatsapp.net".into(),
                from.clone(),
                "[video]".into(),
            )
        };
        let event = webhook_event(&message);
        let key = dedupe_key(&session, &message);
        hub.publish_batch(&session, &[(&event, Some(key.as_str()))])
            .await
            .unwrap();
    }
    let persisted = started.elapsed();
    while received.posts.load(Ordering::Relaxed) < VIDEOS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = started.elapsed();
    let media_mib = (VIDEOS * VIDEO_BYTES) as f64 / f64::from(1 << 20);
    let posted_mib = received.bytes.load(Ordering::Relaxed) as f64 / f64::from(1 << 20);
    println!(
        "{}: {VIDEOS} × 16 MiB videos: persisted in {:.2} s, delivered in {:.2} s ({:.0} MiB of media/s); POSTed {:.2} MiB ({:.0} bytes per POST); peak RSS {:.0} MiB",
        if as_url { "url   " } else { "base64" },
        persisted.as_secs_f64(),
        delivered.as_secs_f64(),
        media_mib / delivered.as_secs_f64(),
        posted_mib,
        received.bytes.load(Ordering::Relaxed) as f64 / VIDEOS as f64,
        peak_rss_mib()
    );
}
