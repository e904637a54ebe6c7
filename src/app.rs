//! The application as the binary runs it: reads the config, takes the data
//! dir, starts the engine and the HTTP API, and shows them: the dashboard by
//! default, or headless for systemd. In the library so that the simulator
//! example can run the very same application against itself.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use crate::cluster::control::ClusterControl;
use crate::cluster::manager::{Fences, LeaseManager};
use crate::cluster::status::{PgReports, StatusReporter};
use crate::cluster::store::PgLeases;
use crate::cluster::view::{ClusterSnapshot, ClusterView};
use crate::config::{ClusterConfig, Config};
use crate::console::{self, Console, Link};
use crate::engine::Engine;
use crate::engine::liveness::Liveness;
use crate::engine::outbound::{Fanout, Outbound};
use crate::engine::whatsapp::{PgBackend, WhatsAppBackend, pg_store};
use crate::media_store::MediaStore;
use crate::nats::NatsHub;
use crate::paths::{DataDir, DataDirError, SessionId};
use crate::webhook::hub::WebhookHub;
use crate::webhook::pg_outbox::FenceSource;
use crate::{api, headless, import, logging, migrate_store, tui};

#[derive(Debug, Parser)]
#[command(
    name = "wabridge",
    version,
    about = "Keeps WhatsApp linked-device sessions alive and forwards their messages"
)]
pub struct Cli {
    /// Config file (default: the XDG config dir's wabridge/config.toml, if present).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Data dir for sessions and logs (overrides the config's data_dir).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Run without the dashboard (for systemd): logs and pairing QR codes go to stderr.
    #[arg(long)]
    pub headless: bool,
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum CliCommand {
    /// Open the dashboard of the service running on the data dir (under
    /// systemd, say); `q` detaches and the service keeps running.
    Attach,
    /// Move the old Node bridge's Baileys sessions into wabridge (no QR rescans).
    ImportBaileys {
        /// The old bridge's sessions/ folder, or one session folder in it.
        source: PathBuf,
        /// Session id for a single folder (default: the folder's name).
        #[arg(long = "as", value_name = "ID")]
        as_id: Option<String>,
        /// Report what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy sessions between this data dir and the cluster's PostgreSQL
    /// database, both ways (credentials, settings, webhook outbox).
    ///
    /// --to-db copies the data dir's sessions into the database named by
    /// --database-url or the config's [cluster] database_url; --to-dir
    /// copies the database's sessions into the data dir. Everything a
    /// session is moves: whatsapp-rust's store (every table), its webhook
    /// and token, the "logged out" mark, and its webhook outbox rows
    /// (waiting, dead letters, delivered) under their delivery ids.
    ///
    /// Refused while in use: the data dir must not be held by a running
    /// wabridge, and a session whose lease in the database has not expired
    /// is being served and is refused. Never overwrites: a session the
    /// target already has is skipped. Each copy is read back and compared
    /// with its source before the source stops being served.
    ///
    /// What happens to the source, so that no linked device ever has two
    /// clients: --to-db moves the session folder aside to
    /// sessions/<id>.migrated-to-db-<time> (never loaded, nothing deleted)
    /// and its webhook rows out of the data dir's outbox (kept beside it);
    /// --to-dir removes the session from the cluster (store, settings,
    /// webhook rows, lease) under a lease this command holds, only after
    /// the copy is in place in the data dir and verified.
    ///
    /// Exits non-zero when any session was not copied.
    #[command(group = clap::ArgGroup::new("direction").required(true))]
    MigrateStore {
        /// Copy from the data dir into the cluster database.
        #[arg(long, group = "direction")]
        to_db: bool,
        /// Copy from the cluster database into the data dir.
        #[arg(long, group = "direction")]
        to_dir: bool,
        /// A session to copy (repeat for several; default: all the source has).
        #[arg(long = "session", value_name = "ID")]
        sessions: Vec<String>,
        /// The cluster database, TLS settings in the URL as libpq reads them
        /// (default: the config's [cluster] database_url and database_ca).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// Report what would be copied; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    if let Some(path) = &cli.config {
        return Config::load(path).map_err(|e| e.to_string());
    }
    let default = directories::ProjectDirs::from("", "", "wabridge")
        .map(|dirs| dirs.config_dir().join("config.toml"));
    match default {
        Some(path) if path.exists() => Config::load(&path).map_err(|e| e.to_string()),
        _ => Ok(Config::default()),
    }
}

/// Runs until Ctrl-C / SIGTERM (or `q` on the dashboard); the error is a
/// sentence for the operator.
/// A binary's whole life: parse the command line, run, report a failure as
/// `<name>: <message>` on stderr.
pub fn main(name: &str) -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{name}: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> Result<(), String> {
    // whatsapp-rust uses rustls with ring; install it once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = load_config(&cli)?;
    let root = cli
        .data_dir
        .clone()
        .or_else(|| config.data_dir.clone())
        .or_else(DataDir::default_root)
        .ok_or("no data dir: pass --data-dir or set data_dir in the config")?;
    let data = DataDir::new(root);
    match cli.command {
        Some(CliCommand::ImportBaileys {
            source,
            as_id,
            dry_run,
            json,
        }) => {
            let options = import::ImportOptions {
                source,
                as_id,
                dry_run,
            };
            return import_baileys(&data, &options, json);
        }
        Some(CliCommand::Attach) => return attach(&config, &data),
        Some(CliCommand::MigrateStore {
            to_db,
            to_dir: _,
            sessions,
            database_url,
            dry_run,
            json,
        }) => {
            let options = migrate_store::MigrateOptions {
                direction: match to_db {
                    true => migrate_store::Direction::ToDb,
                    false => migrate_store::Direction::ToDir,
                },
                sessions,
                dry_run,
            };
            // The config's CA goes with the config's URL; a URL given on the
            // command line carries its own TLS settings.
            let target = match (database_url, &config.cluster) {
                (Some(url), _) => migrate_store::Target { url, ca_file: None },
                (None, Some(cluster)) => migrate_store::Target {
                    url: cluster.database_url.clone(),
                    ca_file: cluster.database_ca.clone(),
                },
                (None, None) => {
                    return Err("no cluster database: pass --database-url or set [cluster] \
                                database_url in the config"
                        .into());
                }
            };
            return migrate(&data, &target, &options, json);
        }
        None => {}
    }
    let _lock = match data.open_exclusive() {
        Ok(lock) => lock,
        // Another process serves this data dir: show its dashboard instead.
        // A second headless service stays an error.
        Err(in_use @ DataDirError::InUse { .. }) if !cli.headless => {
            if !data.console_socket().exists() {
                return Err(in_use.to_string());
            }
            eprintln!(
                "wabridge: a service is already running on {}; attaching to its dashboard (q detaches, the service keeps running)",
                data.root().display()
            );
            return attach(&config, &data);
        }
        Err(e) => return Err(e.to_string()),
    };
    let log_dir = config.log.dir.clone().unwrap_or_else(|| data.logs_dir());
    let (tail_tx, tail_rx) = tokio::sync::mpsc::channel(1024);
    let _log = logging::init(&config.log, &log_dir, cli.headless, tail_tx);

    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        // The files behind media URLs; the cluster's sessions send base64.
        let media = match &config.cluster {
            None => {
                let dir = data.root().join("media");
                let store = MediaStore::open(dir.clone(), config.media_limits())
                    .map_err(|e| format!("cannot use the media folder {}: {e}", dir.display()))?;
                Some(Arc::new(store))
            }
            Some(_) => None,
        };
        let backend = WhatsAppBackend {
            ws_url: config.whatsapp.ws_url.clone(),
            version: config.whatsapp.version,
            media_cap: config.webhook.max_media_bytes,
            media_store: media.clone(),
            http: None,
            liveness: Liveness::with_bound(config.whatsapp.dead_after),
        };
        // With `[nats]`: the NATS target, which the API reports on.
        let (engine, cluster, nats) = match &config.cluster {
            None => {
                let hooks = WebhookHub::open(&data, config.webhook.delivery_settings())?;
                let delivery = config.webhook.delivery_settings();
                let nats = match nats_settings(&config) {
                    Some(settings) => Some(crate::nats::open_hub(&data, &settings, delivery).await?),
                    None => None,
                };
                let outbound = fan_out(hooks, nats.as_ref());
                let engine =
                    Engine::with_outbound(backend, data.clone(), config.backoff.into(), outbound);
                engine.limit_handshakes(config.whatsapp.max_concurrent_handshakes);
                for declared in &config.sessions {
                    let id = SessionId::parse(&declared.id).map_err(|e| e.to_string())?;
                    if declared.nats_subject.is_some() {
                        engine
                            .set_nats_subject(&id, declared.nats_subject.clone())
                            .map_err(|e| e.to_string())?;
                    }
                    if let Some(mode) = declared.media {
                        engine
                            .set_media_mode(&id, mode)
                            .map_err(|e| e.to_string())?;
                    }
                    if let Some(reject) = declared.reject_calls {
                        engine
                            .set_call_policy(&id, reject, declared.call_reply.clone())
                            .map_err(|e| e.to_string())?;
                    }
                    engine
                        .add_session(
                            &id,
                            declared.webhook_url.clone(),
                            declared.webhook_token.clone(),
                        )
                        .map_err(|e| e.to_string())?;
                }
                engine
                    .start_saved()
                    .map_err(|e| format!("cannot list sessions: {e}"))?;
                (engine, None, nats)
            }
            Some(cluster) => {
                let (engine, running, nats) =
                    start_cluster(&config, cluster, backend, &data).await?;
                (engine, Some(running), nats)
            }
        };
        let (stop_api, api_stopped) = tokio::sync::watch::channel(false);
        let control = cluster.as_ref().map(|c| ClusterControl {
            node: c.node.clone(),
            leases: c.leases.clone(),
            take_now: c.take_now.clone(),
        });
        let cluster_view = cluster.as_ref().map(|c| c.view.subscribe());
        let api_task = start_api(
            &config,
            engine.clone(),
            control.clone(),
            cluster_view.clone(),
            nats,
            media.clone(),
            api_stopped,
        )
        .await?;
        if let Some(media) = media {
            tokio::spawn(sweep_media(media));
        }
        let console = Console::start(engine.clone(), tail_rx, config.tui.message_buffer);
        if config.nats.is_some() {
            console.publishes_to_nats();
        }
        if let (Some(view), Some(control)) = (cluster_view, control) {
            console.show_cluster(view);
            console.act_through_cluster(control);
        }
        let socket = console::server::serve(console.clone(), &data)
            .inspect_err(|e| tracing::error!("{e}; `wabridge attach` cannot reach this service"))
            .ok();
        tracing::info!(
            "wabridge {} started with {} session(s); data dir {}",
            env!("CARGO_PKG_VERSION"),
            engine.snapshots().len(),
            data.root().display()
        );
        let backtraces = logging::library_backtraces_warning(
            std::env::var("RUST_BACKTRACE").ok().as_deref(),
            std::env::var("RUST_LIB_BACKTRACE").ok().as_deref(),
        );
        if let Some(warning) = backtraces {
            tracing::warn!("{warning}");
        }
        if cli.headless {
            headless::run(engine.clone(), data.clone(), shutdown_signal()).await;
        } else {
            let link = Link::in_process(console.clone());
            tui::runner::run(link, config.tui.message_buffer, shutdown_signal())
                .await
                .map_err(|e| format!("terminal error: {e}"))?;
        }
        tracing::info!("shutting down: disconnecting sessions (credentials kept)");
        // First the socket (its file goes with it), so a `wabridge` started
        // now does not attach to a service on its way out.
        if let Some(socket) = socket {
            socket.abort();
            let _ = socket.await;
        }
        let _ = stop_api.send(true);
        // No new leases from here; the held ones lapse once the sessions
        // are down (released at once below, so survivors take them now).
        let held = cluster
            .as_ref()
            .map(|c| c.manager.held())
            .unwrap_or_default();
        // Dropping the manager stops its rounds: nothing is taken or
        // renewed any more.
        let cluster = cluster.map(|c| (c.leases, c.node, c.stop_within));
        match &cluster {
            // Sessions that take longer to close than the leases last are
            // closed by the process's exit, before another host can take
            // them; their leases are not released, they lapse.
            Some((_, _, limit)) => {
                if tokio::time::timeout(*limit, engine.shutdown()).await.is_err() {
                    tracing::warn!(
                        "sessions still closing after {limit:?}: they end with the process, and their leases lapse"
                    );
                    let _ = api_task.await;
                    return Ok(());
                }
            }
            None => engine.shutdown().await,
        }
        if let Some((leases, node, _)) = cluster
            && !held.is_empty()
            && let Err(e) = leases.release(&node, &held).await
        {
            tracing::warn!("cannot release the leases (they expire on their own): {e:#}");
        }
        let _ = api_task.await;
        Ok(())
    })
}

/// How often each host reads the whole cluster for its views.
const CLUSTER_VIEW_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// This host in a cluster: its lease manager and what the views need.
struct ClusterHost {
    node: String,
    leases: PgLeases,
    manager: LeaseManager,
    take_now: std::sync::Arc<dyn Fn() + Send + Sync>,
    /// How long stopping may take before the leases could pass on.
    stop_within: std::time::Duration,
    /// Writes the state of the sessions this host serves for the others.
    _reporter: StatusReporter,
    /// Every session of the cluster, its node and state, for the views.
    view: ClusterView,
}

/// `[cluster]`: the shared database (migrated), an engine whose sessions
/// live in it and open only under a lease this host holds, its webhook
/// outbox in the same database (fenced by the same leases), the declared
/// sessions added to the cluster's list, and the lease manager that takes,
/// renews and drops them. Sessions saved in the data dir are not started:
/// in a cluster the database says which sessions exist.
async fn start_cluster(
    config: &Config,
    cluster: &ClusterConfig,
    backend: WhatsAppBackend,
    data: &DataDir,
) -> Result<(Engine, ClusterHost, Option<Arc<NatsHub>>), String> {
    let node = cluster
        .node_name()
        .ok_or("cluster.node is not set and the hostname cannot be read")?;
    let shown = cluster.database_url_redacted();
    let database = cluster
        .database()
        .map_err(|e| format!("cluster database {shown}: {e}"))?
        .transactions_end_within(cluster.timings().ttl);
    tracing::info!("cluster database {shown}: {}", database.tls_summary());
    let pool = database
        .open()
        .await
        .map_err(|e| format!("cluster database {shown}: {e:#}"))?;
    pg_store::migrate(&pool)
        .await
        .map_err(|e| format!("cluster database {shown}: {e:#}"))?;
    let fences = Fences::default();
    let fence_source = || -> FenceSource {
        let source = fences.clone();
        std::sync::Arc::new(move |id: &SessionId| source.get(id))
    };
    // The outboxes are the database's too: a session's undelivered
    // messages follow its lease to whichever host serves it next.
    let hooks = WebhookHub::open_cluster(
        pool.clone(),
        fence_source(),
        config.webhook.delivery_settings(),
    )
    .await?;
    let delivery = config.webhook.delivery_settings();
    let nats = match nats_settings(config) {
        Some(settings) => Some(
            crate::nats::open_cluster_hub(pool.clone(), fence_source(), &settings, delivery)
                .await?,
        ),
        None => None,
    };
    let outbound = fan_out(hooks, nats.as_ref());
    let backend = PgBackend {
        whatsapp: backend,
        pool: pool.clone(),
        fences: fence_source(),
    };
    let engine = Engine::with_outbound(backend, data.clone(), config.backoff.into(), outbound);
    engine.limit_handshakes(config.whatsapp.max_concurrent_handshakes);
    let leases = PgLeases { pool };
    for declared in &config.sessions {
        let id = SessionId::parse(&declared.id).map_err(|e| e.to_string())?;
        leases
            .declare_session(
                &id,
                declared.webhook_url.as_deref(),
                declared.webhook_token.as_deref(),
            )
            .await
            .map_err(|e| format!("cluster database {shown}: {e:#}"))?;
        if let Some(reject) = declared.reject_calls {
            leases
                .set_call_policy(&id, reject, declared.call_reply.as_deref())
                .await
                .map_err(|e| format!("cluster database {shown}: {e:#}"))?;
        }
    }
    let timings = cluster.timings();
    tracing::info!(
        "cluster node {node} on {shown}: lease TTL {:?}, renewed every {:?}, margin {:?}, takeover every {:?} (at most {} a round)",
        timings.ttl,
        timings.renew_every,
        timings.margin,
        timings.takeover_every,
        timings.takeover_batch
    );
    let manager = LeaseManager::start(
        node.clone(),
        timings,
        leases.clone(),
        engine.clone(),
        fences,
    );
    let take_now: std::sync::Arc<dyn Fn() + Send + Sync> = {
        let nudge = manager.nudge();
        std::sync::Arc::new(move || nudge())
    };
    // The whole cluster on every host's views: this host reports what it
    // serves (refreshed every renewal), and reads everything; a report
    // three renewals old is stale.
    let reporter = {
        let fences = manager.fences();
        StatusReporter::start(
            PgReports {
                pool: leases.pool.clone(),
                node: node.clone(),
            },
            engine.clone(),
            std::sync::Arc::new(move |id: &SessionId| fences.get(id)),
            timings.renew_every,
        )
    };
    let view = ClusterView::start(
        leases.pool.clone(),
        node.clone(),
        CLUSTER_VIEW_EVERY,
        timings.renew_every * 3,
    );
    Ok((
        engine,
        ClusterHost {
            node,
            leases,
            manager,
            take_now,
            stop_within: timings.stop_within(),
            _reporter: reporter,
            view,
        },
        nats,
    ))
}

/// With `[nats]`: its settings, and the log says where events go.
fn nats_settings(config: &Config) -> Option<crate::nats::transport::NatsSettings> {
    let settings = config.nats.as_ref()?.settings();
    tracing::info!(
        "events also go to NATS JetStream at {} under {}.<session>.<event>",
        crate::nats::transport::shown_url(&settings.url),
        settings.subject_prefix
    );
    Some(settings)
}

/// The outbound targets: `hooks`, and the NATS target beside it if any.
fn fan_out(hooks: Arc<WebhookHub>, nats: Option<&Arc<NatsHub>>) -> Arc<dyn Outbound> {
    match nats {
        Some(nats) => Arc::new(Fanout(vec![hooks, nats.clone()])),
        None => hooks,
    }
}

/// The dashboard of the service running on `data`, until the operator
/// detaches (`q`, Ctrl-C). Logs nothing: the service logs what happens.
fn attach(config: &Config, data: &DataDir) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let link = console::client::attach(&data.console_socket())
            .await
            .map_err(|e| e.to_string())?;
        tui::runner::run(link, config.tui.message_buffer, shutdown_signal())
            .await
            .map_err(|e| format!("terminal error: {e}"))
    })
}

/// Runs an import and prints its report; fails when any folder was not
/// (or would not be) imported.
fn import_baileys(
    data: &DataDir,
    options: &import::ImportOptions,
    json: bool,
) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let report = runtime.block_on(import::import(data, options))?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        println!("{report}");
    }
    if report.all_imported() {
        Ok(())
    } else {
        Err("some session folders were not imported (see the report above)".into())
    }
}

/// Runs a migration and prints its report; fails when any session was not
/// (or would not be) copied.
fn migrate(
    data: &DataDir,
    database: &migrate_store::Target,
    options: &migrate_store::MigrateOptions,
    json: bool,
) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let report = runtime.block_on(migrate_store::migrate(data, database, options))?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        println!("{report}");
    }
    if report.all_copied() {
        Ok(())
    } else {
        Err("some sessions were not copied (see the report above)".into())
    }
}

/// Binds the HTTP API (a clear error when the address is taken) and serves
/// it until `stop` turns true.
async fn start_api(
    config: &Config,
    engine: Engine,
    cluster: Option<ClusterControl>,
    cluster_view: Option<tokio::sync::watch::Receiver<ClusterSnapshot>>,
    nats: Option<Arc<NatsHub>>,
    media: Option<Arc<MediaStore>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listen = config.api.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        format!("cannot listen on {listen} for the HTTP API: {e}; set api.listen in the config")
    })?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("HTTP API on http://{bound}");
    let access = api::AccessPolicy {
        token: config.api.token.clone(),
        allowed_hosts: config.api.allowed_hosts.clone(),
        allow_from: config.api.allow_from.clone(),
        listen: Some(bound),
    };
    let mut state = api::ApiState::with_access(engine, access);
    if let Some(cluster) = &cluster {
        publish_api_url(config, cluster, bound);
    }
    state.cluster = cluster;
    state.cluster_view = cluster_view;
    state.nats = nats;
    if let Some(media) = &media
        && config.media.public_url.is_none()
    {
        if bound.ip().is_unspecified() {
            tracing::warn!(
                "media URLs will name http://{bound}, which no ERP can reach: set [media] public_url"
            );
        }
        media.set_public_url(format!("http://{bound}"));
    }
    state.media = media;
    let router = api::router(state);
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(e) = api::serve(listener, router, shutdown).await {
            tracing::error!("HTTP API stopped: {e}");
        }
    }))
}

/// Tells the cluster's other hosts where this host's API answers, so that
/// they forward requests for its sessions here; tried again every few
/// seconds until the database takes it (meanwhile they answer 503 naming
/// this host).
fn publish_api_url(config: &Config, cluster: &ClusterControl, bound: std::net::SocketAddr) {
    let url = config.cluster_api_url(bound);
    match &url {
        Some(url)
            if bound.ip().is_loopback()
                && config.cluster.as_ref().is_some_and(|c| c.api_url.is_none()) =>
        {
            tracing::warn!(
                "other hosts forward requests for this host's sessions to {url}, a loopback address: only hosts on this machine can; set [cluster] api_url"
            )
        }
        Some(url) => {
            tracing::info!("other hosts forward requests for this host's sessions to {url}")
        }
        None => tracing::warn!(
            "the API listens on {bound}, an address other hosts cannot call: requests for this host's sessions made to them are refused until [cluster] api_url is set"
        ),
    }
    let cluster = cluster.clone();
    tokio::spawn(async move {
        loop {
            match cluster
                .leases
                .register_node(&cluster.node, url.as_deref())
                .await
            {
                Ok(()) => return,
                Err(e) => tracing::warn!(
                    "cannot publish this host's API address in the cluster's database (trying again in 5 s): {e:#}"
                ),
            }
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    });
}

/// Expired media goes even when no new media comes to trigger the budget.
async fn sweep_media(media: Arc<MediaStore>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        let media = media.clone();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let _ = tokio::task::spawn_blocking(move || media.sweep(now_ms, None)).await;
    }
}

/// Ctrl-C or SIGTERM (systemd stop).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
