//! Watch a session's whole life on this machine, with no phone and no
//! network: the loopback WhatsApp simulator of the tests, plus a small
//! control API to script what the "server" and the "phone" do.
//!
//! ```sh
//! cargo run -p wabridge-e2e --example simulator            # simulator + the wabridge dashboard
//! cargo run -p wabridge-e2e --example simulator -- --sim-only   # simulator alone
//! ```
//!
//! By default it starts the simulator and runs the real wabridge
//! application (the same code as the binary) against it, with its data in
//! `target/simulator-data` so that a second run reconnects without a QR.
//! Arguments after `--wabridge` go to the application (e.g. `--headless`).
//!
//! Control API (loopback, default 127.0.0.1:7001), e.g. with curl:
//! - `POST /scan/<session>`: the phone scans the session's QR, read from
//!   wabridge's own API (`GET /sessions/<session>`), as a camera would.
//! - `POST /scan` `{"qr": "<payload or data:image/png URL>"}`
//! - `POST /act` `{"action": "close" | "mute" | "replaced" | "failure" | "stream-error",
//!   "reason": 401, "code": "500", "device": 3}`: on a live connection (the
//!   newest, or that linked device's); `{"action": "pair-code", "code":
//!   "ABCD-EFGH"}` types the code a session pairing by phone number shows
//!   (`p`), `{"action": "passkey"}` has the phone ask for a passkey first.
//! - `POST /plan` `{"plan": "failure" | "stream-error" | "replaced" | "close" |
//!   "silent" | "qr-refs", "reason": 503, "code": "515", "refs": 1}`: how the
//!   next connection goes.
//! - `GET /connections`: live connections.
//! - `POST /message` `{"text": "hi", "from": "asha", "addressing": "pn" |
//!   "lid" | "lid-hidden", "group": "1203…@g.us", "document": {"filename",
//!   "mimetype", "content"}}`: a simulated person writes to the paired
//!   session (the newest logged-in device, or `"device"`), Signal-encrypted
//!   as a phone would (`wabridge_sim::control`); or sends a `location`,
//!   `contacts`, a `poll`, a reply (`quote`), a `forwarded` text, or a
//!   message first unreadable then resent (`unreadable_first`).
//! - `POST /edit` `{"id", "text"}`, `POST /revoke` `{"id"}`, `POST /reaction`
//!   `{"id", "emoji"}`: the person edits, deletes for everyone, or reacts to
//!   a message; `POST /call` `{"video": false}`: the person calls.
//!
//! The simulator speaks to whatsapp-rust only with its feature
//! `danger-skip-cert-chain-verify`, which only the `wabridge-e2e` package
//! (this example, its tests and `insecure-sim-client`) enables; the shipped
//! binary never has it.

use wabridge_sim::screen;
use wabridge_sim::sim;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};
use sim::{Action, ConnPlan, Simulator, Target};

#[derive(Debug, Parser)]
#[command(about = "Loopback WhatsApp simulator with a control API")]
struct Args {
    /// Where the simulated WhatsApp server listens (WebSocket).
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// Where the control API listens.
    #[arg(long, default_value = "127.0.0.1:7001")]
    control: SocketAddr,
    /// wabridge's HTTP API, read by `POST /scan/<session>`.
    #[arg(long, default_value = "127.0.0.1:3000")]
    api: SocketAddr,
    /// Run only the simulator (point a wabridge built with the dev
    /// features at it, e.g. the tests' build).
    #[arg(long)]
    sim_only: bool,
    /// Data dir for the wabridge run.
    #[arg(long, default_value = "target/simulator-data")]
    data_dir: PathBuf,
    /// Arguments for wabridge itself, after this flag.
    #[arg(long, num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    wabridge: Vec<String>,
}

#[derive(Clone)]
struct Control {
    sim: Simulator,
    api: SocketAddr,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    // whatsapp-rust and reqwest use rustls with ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !args.listen.ip().is_loopback() || !args.control.ip().is_loopback() {
        return Err("the simulator and its control API only listen on loopback".into());
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (listen, control, api) = (args.listen, args.control, args.api);
    let simulator = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async move {
            let started = serve(listen, control, api).await;
            let failed = started.is_err();
            let _ = ready_tx.send(started);
            if !failed {
                std::future::pending::<()>().await;
            }
        });
    });
    let ws_url = ready_rx
        .recv()
        .map_err(|_| "the simulator thread ended".to_string())??;
    if args.sim_only {
        println!("simulator: {ws_url}; control API: http://{control}");
        println!("point wabridge at it: [whatsapp] ws_url = \"{ws_url}\", version = \"{VERSION}\"");
        let _ = simulator.join();
        return Ok(());
    }
    let config = write_config(&args, &ws_url)?;
    let mut argv = vec![
        "wabridge".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        args.data_dir.display().to_string(),
    ];
    argv.extend(args.wabridge);
    wabridge::app::run(<wabridge::app::Cli as Parser>::parse_from(argv))
}

/// The version pin: without one each connect first fetches the current
/// version from web.whatsapp.com, which a loopback demo must not do.
const VERSION: &str = "2.3000.1015901307";

fn write_config(args: &Args, ws_url: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&args.data_dir).map_err(|e| e.to_string())?;
    let path = args.data_dir.join("simulator-config.toml");
    let text = format!(
        "# Written by the simulator example.\n[api]\nlisten = \"{}\"\n\n[whatsapp]\nws_url = \"{ws_url}\"\nversion = \"{VERSION}\"\n",
        args.api
    );
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

async fn serve(listen: SocketAddr, control: SocketAddr, api: SocketAddr) -> Result<String, String> {
    let sim = Simulator::start_on(&listen.to_string())
        .await
        .map_err(|e| format!("simulator cannot listen on {listen}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(control)
        .await
        .map_err(|e| format!("control API cannot listen on {control}: {e}"))?;
    tokio::spawn(report_events(sim.clone()));
    let router = Router::new()
        .route("/", get(usage))
        .route("/connections", get(connections))
        .route("/scan", post(scan_payload))
        .route("/scan/{session}", post(scan_session))
        .route("/act", post(act))
        .route("/plan", post(plan))
        .with_state(Control {
            sim: sim.clone(),
            api,
        })
        .merge(wabridge_sim::control::message_routes(sim.clone()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(sim.ws_url())
}

/// Simulator events go to the log: the dashboard's log tail (`L`) when
/// wabridge runs here, stdout otherwise.
async fn report_events(sim: Simulator) {
    let mut events = sim.events();
    while let Ok(event) = events.recv().await {
        if tracing::dispatcher::has_been_set() {
            tracing::info!(target: "simulator", "{event:?}");
        } else {
            println!("simulator: {event:?}");
        }
    }
}

type Reply = (StatusCode, Json<Value>);

fn reply(done: bool, what: &str) -> Reply {
    if done {
        (StatusCode::OK, Json(json!({ "done": what })))
    } else {
        bad("no live connection to act on")
    }
}

fn bad(error: impl std::fmt::Display) -> Reply {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error.to_string() })),
    )
}

async fn usage() -> &'static str {
    "POST /scan/<session> | POST /scan {qr} | POST /act {action,reason,code,device} (also pair-code {code}, passkey) | POST /plan {plan,reason,code,refs} | GET /connections | POST /message {text,from,addressing,group,document,location,contacts,poll,quote,forwarded,unreadable_first,device} | POST /edit {id,text} | POST /revoke {id} | POST /reaction {id,emoji} | POST /call {video}\n"
}

async fn connections(State(control): State<Control>) -> Json<Value> {
    Json(json!({ "live": control.sim.connection_ids() }))
}

#[derive(Deserialize)]
struct ScanBody {
    qr: String,
}

async fn scan_payload(State(control): State<Control>, Json(body): Json<ScanBody>) -> Reply {
    match screen::qr_payload(&body.qr) {
        Ok(payload) => reply(control.sim.scan(&payload), "scanned"),
        Err(e) => bad(e),
    }
}

/// Reads the session's QR from wabridge's API and scans it.
async fn scan_session(State(control): State<Control>, Path(session): Path<String>) -> Reply {
    let url = format!("http://{}/sessions/{session}", control.api);
    let answer: Value = match reqwest::get(&url).await {
        Ok(response) => match response.json().await {
            Ok(answer) => answer,
            Err(e) => return bad(format!("{url}: {e}")),
        },
        Err(e) => return bad(format!("{url}: {e}")),
    };
    let Some(qr) = answer.get("qr").and_then(Value::as_str) else {
        return bad(format!("{session} shows no QR code now: {answer}"));
    };
    scan_payload(State(control), Json(ScanBody { qr: qr.to_string() })).await
}

#[derive(Deserialize)]
struct Scripted {
    #[serde(alias = "plan")]
    action: String,
    reason: Option<u16>,
    code: Option<String>,
    ban_code: Option<u16>,
    expire_secs: Option<u64>,
    refs: Option<usize>,
    device: Option<u32>,
}

async fn act(State(control): State<Control>, Json(body): Json<Scripted>) -> Reply {
    // The phone's side of pairing by code: typing the code the dashboard
    // shows, or asking for a passkey first.
    match body.action.as_str() {
        "pair-code" => {
            let Some(code) = &body.code else {
                return bad("pair-code needs the code the dashboard shows, as \"code\"");
            };
            return reply(control.sim.enter_pair_code(code), &body.action);
        }
        "passkey" => return reply(control.sim.demand_passkey(), &body.action),
        _ => {}
    }
    let action = match body.action.as_str() {
        "close" => Action::Close,
        "mute" => Action::Mute,
        "replaced" => Action::Replaced,
        "failure" => Action::Failure {
            reason: body.reason.unwrap_or(401),
            ban_code: body.ban_code,
            expire_secs: body.expire_secs,
        },
        "stream-error" => Action::StreamError {
            code: body.code.clone().unwrap_or_else(|| "500".into()),
        },
        other => return bad(format!("unknown action {other:?}")),
    };
    let target = body.device.map_or(Target::Latest, Target::Device);
    reply(control.sim.act_on(target, action), &body.action)
}

async fn plan(State(control): State<Control>, Json(body): Json<Scripted>) -> Reply {
    let plan = match body.action.as_str() {
        "failure" => ConnPlan::Failure {
            reason: body.reason.unwrap_or(503),
            ban_code: body.ban_code,
            expire_secs: body.expire_secs,
        },
        "stream-error" => ConnPlan::StreamError {
            code: body.code.clone().unwrap_or_else(|| "500".into()),
        },
        "replaced" => ConnPlan::Replaced,
        "close" => ConnPlan::CloseAfterHandshake,
        "silent" => ConnPlan::Silent,
        "qr-refs" => ConnPlan::QrRefs(body.refs.unwrap_or(1)),
        other => return bad(format!("unknown plan {other:?}")),
    };
    control.sim.push_plan(plan);
    reply(true, &body.action)
}
