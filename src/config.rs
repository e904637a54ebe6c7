//! The TOML configuration: its shape, its defaults, and errors that name the
//! file, the line and the key so an operator can fix a typo without guessing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::paths::SessionId;

/// WhatsApp's production endpoint; tests and the simulator override it.
pub const DEFAULT_WS_URL: &str = "wss://web.whatsapp.com/ws/chat";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where sessions, the outbox and logs live. `None` = the XDG data dir.
    pub data_dir: Option<PathBuf>,
    pub backoff: BackoffConfig,
    pub whatsapp: WhatsappConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub tui: TuiConfig,
    pub webhook: WebhookConfig,
    pub sessions: Vec<DeclaredSession>,
    /// Several hosts sharing one PostgreSQL (docs/cluster.md); `None` runs
    /// alone on the data dir, as always.
    pub cluster: Option<ClusterConfig>,
    /// Events to NATS JetStream too (`crate::nats`); `None`: webhooks only.
    pub nats: Option<NatsConfig>,
    pub media: MediaConfig,
}

/// `[media]`: files kept for sessions whose webhook carries media as URLs
/// (`media = "url"` in `[[sessions]]`), served at `GET /media/<id>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// All kept files together; past it the oldest go.
    pub max_bytes: u64,
    /// How long a file (and its URL) is kept.
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    /// A single file above this is not kept (the webhook says why).
    pub max_file_bytes: u64,
    /// The API as the ERP reaches it, the start of each media URL; default
    /// `http://<api.listen>`.
    pub public_url: Option<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            max_bytes: 2 * 1024 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_file_bytes: 100 * 1024 * 1024,
            public_url: None,
        }
    }
}

impl Config {
    /// How the cluster's other hosts reach this host's API (see
    /// [`ClusterConfig::api_url`]); `None` when they cannot.
    /// `bound` is the API's address once bound (a `listen` on port 0
    /// learns its port only then).
    pub fn cluster_api_url(&self, bound: std::net::SocketAddr) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        if let Some(url) = &cluster.api_url {
            return Some(url.trim_end_matches('/').to_string());
        }
        (!bound.ip().is_unspecified()).then(|| format!("http://{bound}"))
    }

    /// Where media URLs point and how much is kept.
    pub fn media_limits(&self) -> crate::media_store::MediaLimits {
        crate::media_store::MediaLimits {
            max_bytes: self.media.max_bytes,
            max_age: self.media.max_age,
            max_file_bytes: self.media.max_file_bytes,
            public_url: self
                .media
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", self.api.listen)),
        }
    }
}

/// `[nats]`: every session's events also go to JetStream, on
/// `<subject_prefix>.<session>.<event>` (a session's own `nats_subject`
/// replaces the prefix; an empty one turns NATS off for it).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:4222` (or `tls://…`); several separated by commas;
    /// `user:password@` in it is used and never logged.
    pub url: String,
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// A `.creds` file (JWT and nkey seed) for servers with accounts.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// The CA that signed the server's certificate: TLS, checked against
    /// it alone.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// How long a publish waits for the stream's ack before it is retried.
    #[serde(default = "default_ack_timeout", deserialize_with = "duration")]
    pub ack_timeout: Duration,
}

fn default_subject_prefix() -> String {
    crate::nats::subject::DEFAULT_PREFIX.to_string()
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Never shows the URL's password.
impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &crate::nats::transport::shown_url(&self.url))
            .field("subject_prefix", &self.subject_prefix)
            .field("credentials", &self.credentials)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("ack_timeout", &self.ack_timeout)
            .finish()
    }
}

impl NatsConfig {
    pub fn settings(&self) -> crate::nats::transport::NatsSettings {
        crate::nats::transport::NatsSettings {
            url: self.url.clone(),
            subject_prefix: self.subject_prefix.clone(),
            credentials: self.credentials.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_client: self.tls_cert.clone().zip(self.tls_key.clone()),
            ack_timeout: self.ack_timeout,
        }
    }
}

/// `[cluster]`: where the shared database is, this host's name in it, and
/// the lease timings (defaults: `LeaseTimings::default()`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `postgres://user:password@host:port/db`; its password is never shown
    /// (see [`ClusterConfig::database_url_redacted`]).
    pub database_url: String,
    /// A PEM file with the CA that signed the database server's
    /// certificate; the same as `sslrootcert=` in the URL (one of the two).
    /// With it, the certificate is checked (`verify-full` unless the URL's
    /// `sslmode` says otherwise); see `pg_store::Database` for the defaults.
    #[serde(default)]
    pub database_ca: Option<PathBuf>,
    /// This host's name in the lease table; default: the hostname.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub lease_ttl_secs: Option<u64>,
    #[serde(default)]
    pub renew_every_secs: Option<u64>,
    #[serde(default)]
    pub margin_secs: Option<u64>,
    #[serde(default)]
    pub takeover_every_secs: Option<u64>,
    #[serde(default)]
    pub takeover_batch: Option<usize>,
    /// How the other hosts reach this host's API, e.g.
    /// `http://10.0.0.5:3000`: a request for a session this host serves,
    /// made to another host, is forwarded here. Default: `http://` and
    /// `api.listen`, unless that is an unspecified address (0.0.0.0).
    #[serde(default)]
    pub api_url: Option<String>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("database_url", &self.database_url_redacted())
            .field("database_ca", &self.database_ca)
            .field("node", &self.node)
            .field("timings", &self.timings())
            .finish()
    }
}

impl ClusterConfig {
    /// The lease timings, defaults where unset.
    pub fn timings(&self) -> crate::cluster::lease::LeaseTimings {
        let d = crate::cluster::lease::LeaseTimings::default();
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        crate::cluster::lease::LeaseTimings {
            ttl: secs(self.lease_ttl_secs, d.ttl),
            renew_every: secs(self.renew_every_secs, d.renew_every),
            margin: secs(self.margin_secs, d.margin),
            takeover_every: secs(self.takeover_every_secs, d.takeover_every),
            takeover_batch: self.takeover_batch.unwrap_or(d.takeover_batch),
        }
    }

    /// This host's name: `node`, or the machine's hostname.
    pub fn node_name(&self) -> Option<String> {
        self.node.clone().or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
    }

    /// How to reach the database: its URL with `database_ca` (TLS
    /// settings, pool, connection at start).
    pub fn database(
        &self,
    ) -> Result<
        crate::engine::whatsapp::pg_store::Database,
        crate::engine::whatsapp::pg_store::SettingsError,
    > {
        crate::engine::whatsapp::pg_store::Database::parse(
            &self.database_url,
            self.database_ca.as_deref(),
        )
    }

    /// The database URL with its password replaced by `***`, for logs and
    /// screens.
    pub fn database_url_redacted(&self) -> String {
        redact_url_password(&self.database_url)
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`; a
/// `password=` query parameter is masked too.
pub fn redact_url_password(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, tail) = out.split_at(query + 1);
        let masked: Vec<String> = tail
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    out
}

/// Keeps one POST's body within what receivers take.
const MAX_MESSAGES_PER_POST: usize = 500;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// A receiver slower than this counts as failed (and is retried).
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_base: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
    /// Undelivered this long, a delivery becomes a dead letter.
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    /// When set, bodies are signed: `X-Wabridge-Signature: sha256=<hex>`.
    pub signing_secret: String,
    /// Incoming media larger than this goes out as metadata only.
    pub max_media_bytes: u64,
    /// Messages per `messages.upsert` POST while a backlog drains; 1 posts
    /// each alone, like the old bridge. Raise it only when the receiver
    /// reads every entry of `messages`.
    pub max_messages_per_post: usize,
    /// A merged POST stops growing at this many bytes (a single message with
    /// media inside may be larger); a 413 splits a batch in two.
    pub max_post_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let d = crate::webhook::deliver::DeliverySettings::default();
        WebhookConfig {
            timeout: d.timeout,
            retry_base: d.retry_base,
            retry_max: d.retry_max,
            max_age: d.max_age,
            signing_secret: String::new(),
            max_media_bytes: 16 * 1024 * 1024,
            max_messages_per_post: d.max_messages_per_post,
            max_post_bytes: d.max_post_bytes,
        }
    }
}

impl WebhookConfig {
    pub fn delivery_settings(&self) -> crate::webhook::deliver::DeliverySettings {
        crate::webhook::deliver::DeliverySettings {
            timeout: self.timeout,
            retry_base: self.retry_base,
            retry_max: self.retry_max,
            max_age: self.max_age,
            signing_secret: Some(self.signing_secret.clone()).filter(|s| !s.is_empty()),
            max_messages_per_post: self.max_messages_per_post,
            max_post_bytes: self.max_post_bytes,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuiConfig {
    /// Incoming messages kept on screen (oldest dropped first).
    pub message_buffer: usize,
}

impl Default for TuiConfig {
    fn default() -> Self {
        TuiConfig {
            message_buffer: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// Attempt n waits `base * 2^(n-1)` ...
    #[serde(deserialize_with = "duration")]
    pub base: Duration,
    /// ... capped here.
    #[serde(deserialize_with = "duration")]
    pub max: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhatsappConfig {
    pub ws_url: String,
    /// Pinned WhatsApp Web version ("2.3000.1015901307"); unset = fetch it.
    #[serde(deserialize_with = "wa_version")]
    pub version: Option<(u32, u32, u32)>,
    /// A connection whose pings nothing answers for this long is given up
    /// and reconnected (credentials kept).
    #[serde(deserialize_with = "duration")]
    pub dead_after: Duration,
    /// Connections handshaking at once, at most: after an outage the
    /// sessions queue for a slot instead of reaching WhatsApp all at once.
    pub max_concurrent_handshakes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Empty = no auth: only this machine and `allow_from` may call then.
    pub token: String,
    /// Names besides loopback and the listen address that requests may carry
    /// in `Host`/`Origin` (the name the ERP calls the bridge by).
    pub allowed_hosts: Vec<String>,
    /// Clients allowed without the token: addresses or CIDR ranges, e.g. the
    /// old ERP app that calls the bridge from another host and sends none.
    pub allow_from: Vec<IpRange>,
}

/// An address or a CIDR range: `10.0.0.5`, `10.1.0.0/16`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

impl TryFrom<String> for IpRange {
    type Error = String;

    fn try_from(text: String) -> Result<IpRange, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.as_str(), None),
        };
        let network: std::net::IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {bits}"))?,
        };
        Ok(IpRange { network, prefix })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    /// Default: `<data_dir>/logs`.
    pub dir: Option<PathBuf>,
    /// Daily files kept before the oldest is removed.
    pub max_files: usize,
}

/// A session named in the config file: created at start if it does not exist.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredSession {
    pub id: String,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub webhook_token: Option<String>,
    /// With `[nats]`: this session's subject prefix instead of the
    /// config's; "" sends none of its events to NATS.
    #[serde(default)]
    pub nats_subject: Option<String>,
    /// Turn down calls to this number (unset: keep what the API or an
    /// earlier config set; default off).
    #[serde(default)]
    pub reject_calls: Option<bool>,
    /// With `reject_calls`: the text the caller gets.
    #[serde(default)]
    pub call_reply: Option<String>,
    /// How its webhook carries media: `base64` (default) or `url` (unset:
    /// keep what the API or an earlier config set).
    #[serde(default)]
    pub media: Option<crate::engine::backend::MediaMode>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        }
    }
}

impl From<BackoffConfig> for crate::engine::backoff::BackoffPolicy {
    fn from(config: BackoffConfig) -> Self {
        crate::engine::backoff::BackoffPolicy {
            base: config.base,
            max: config.max,
        }
    }
}

impl Default for WhatsappConfig {
    fn default() -> Self {
        WhatsappConfig {
            ws_url: DEFAULT_WS_URL.to_string(),
            version: None,
            dead_after: crate::engine::liveness::Liveness::default().dead_after,
            max_concurrent_handshakes: crate::engine::DEFAULT_MAX_HANDSHAKES,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            token: String::new(),
            allowed_hosts: Vec::new(),
            allow_from: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            dir: None,
            max_files: 14,
        }
    }
}

/// A config problem, located as precisely as the source allows.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", located(path, *line, key.as_deref(), message))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
}

fn located(path: &Path, line: Option<usize>, key: Option<&str>, message: &str) -> String {
    let mut out = format!("config error in {}", path.display());
    if let Some(line) = line {
        out.push_str(&format!(", line {line}"));
    }
    if let Some(key) = key {
        out.push_str(&format!(", key `{key}`"));
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is only used to label errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => {
                    let line = line_of(text, span.start);
                    (Some(line), key_at_line(text, line))
                }
                None => (None, None),
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message: e.message().trim().to_string(),
            }
        })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: find_key_line(text, &key),
                key: Some(key),
                message,
            })?;
        Ok(config)
    }

    /// Checks what serde cannot: relations between keys and value ranges.
    /// Returns the dotted key at fault and what is wrong with it.
    fn validate(&self) -> Result<(), (String, String)> {
        self.validate_media()?;
        if self.backoff.base.is_zero() {
            return Err(("backoff.base".into(), "must be greater than 0s".into()));
        }
        if self.backoff.max < self.backoff.base {
            return Err((
                "backoff.max".into(),
                format!(
                    "must be at least backoff.base ({})",
                    humantime::format_duration(self.backoff.base)
                ),
            ));
        }
        if !(self.whatsapp.ws_url.starts_with("ws://")
            || self.whatsapp.ws_url.starts_with("wss://"))
        {
            return Err((
                "whatsapp.ws_url".into(),
                "must start with ws:// or wss://".into(),
            ));
        }
        if !self.api.listen.ip().is_loopback()
            && self.api.token.is_empty()
            && self.api.allow_from.is_empty()
        {
            return Err((
                "api.token".into(),
                format!(
                    "must be set when api.listen ({}) is reachable from other machines; or list the clients allowed without a token in api.allow_from",
                    self.api.listen
                ),
            ));
        }
        if self.log.level.parse::<tracing::Level>().is_err() {
            return Err((
                "log.level".into(),
                "must be one of trace, debug, info, warn, error".into(),
            ));
        }
        for (key, value) in [
            ("webhook.timeout", self.webhook.timeout),
            ("webhook.retry_base", self.webhook.retry_base),
            ("webhook.max_age", self.webhook.max_age),
        ] {
            if value.is_zero() {
                return Err((key.into(), "must be greater than 0s".into()));
            }
        }
        if self.webhook.retry_max < self.webhook.retry_base {
            return Err((
                "webhook.retry_max".into(),
                "must be at least webhook.retry_base".into(),
            ));
        }
        if !(1..=MAX_MESSAGES_PER_POST).contains(&self.webhook.max_messages_per_post) {
            return Err((
                "webhook.max_messages_per_post".into(),
                format!("must be between 1 and {MAX_MESSAGES_PER_POST}"),
            ));
        }
        if self.webhook.max_post_bytes < 1024 {
            return Err((
                "webhook.max_post_bytes".into(),
                "must be at least 1024".into(),
            ));
        }
        if self.whatsapp.dead_after < Duration::from_secs(1) {
            return Err((
                "whatsapp.dead_after".into(),
                "must be at least 1s (WhatsApp needs time to answer a ping)".into(),
            ));
        }
        if self.whatsapp.max_concurrent_handshakes == 0 {
            return Err((
                "whatsapp.max_concurrent_handshakes".into(),
                "must be at least 1".into(),
            ));
        }
        if self.tui.message_buffer == 0 {
            return Err(("tui.message_buffer".into(), "must be at least 1".into()));
        }
        if self.log.max_files == 0 {
            return Err(("log.max_files".into(), "must be at least 1".into()));
        }
        if let Some(cluster) = &self.cluster {
            validate_cluster(cluster)?;
            if let Some(url) = &cluster.api_url {
                self.check_api_url(url)
                    .map_err(|why| ("cluster.api_url".to_string(), why))?;
            }
        }
        if let Some(nats) = &self.nats {
            validate_nats(nats)?;
        }
        let mut seen = std::collections::HashSet::new();
        for session in &self.sessions {
            if let Err(e) = SessionId::parse(&session.id) {
                return Err(("sessions.id".into(), e.to_string()));
            }
            if !seen.insert(session.id.as_str()) {
                return Err((
                    "sessions.id".into(),
                    format!("session `{}` is declared twice", session.id),
                ));
            }
            if let Some(url) = &session.webhook_url
                && !crate::session_files::is_webhook_url(url)
            {
                return Err((
                    "sessions.webhook_url".into(),
                    format!("`{url}` is not an http:// or https:// URL"),
                ));
            }
            if let Some(prefix) = session.nats_subject.as_deref().filter(|p| !p.is_empty()) {
                crate::nats::subject::check_prefix(prefix)
                    .map_err(|e| ("sessions.nats_subject".to_string(), e))?;
            }
            if session.call_reply.is_some() && session.reject_calls != Some(true) {
                return Err((
                    "sessions.call_reply".into(),
                    "is sent only after a rejected call: set reject_calls = true too".into(),
                ));
            }
            if self.cluster.is_some() && session.nats_subject.is_some() {
                return Err((
                    "sessions.nats_subject".into(),
                    "a session's own NATS subject with [cluster] is not supported yet: the \
                     cluster keeps only a session's webhook (its events go under \
                     nats.subject_prefix)"
                        .into(),
                ));
            }
            if self.cluster.is_some() && session.media.is_some() {
                return Err((
                    "sessions.media".into(),
                    "media URLs with [cluster] are not supported yet: the cluster keeps only a \
                     session's webhook"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_media(&self) -> Result<(), (String, String)> {
        let media = &self.media;
        let fail = |key: &str, why: String| Err((format!("media.{key}"), why));
        if media.max_age.is_zero() {
            return fail("max_age", "must be greater than 0s".into());
        }
        if media.max_bytes == 0 {
            return fail("max_bytes", "must be greater than 0".into());
        }
        if media.max_file_bytes == 0 || media.max_file_bytes > media.max_bytes {
            return fail(
                "max_file_bytes",
                format!(
                    "must be greater than 0 and at most media.max_bytes ({})",
                    media.max_bytes
                ),
            );
        }
        match &media.public_url {
            Some(url) => self
                .check_api_url(url)
                .or_else(|why| fail("public_url", why)),
            None => Ok(()),
        }
    }

    /// Whether `url` can reach this host's API from elsewhere: http(s), a
    /// host, no query, and a host name the API accepts (it refuses other
    /// names against DNS rebinding, so a URL naming one would get 403).
    fn check_api_url(&self, url: &str) -> Result<(), String> {
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .map(|rest| rest.split('/').next().unwrap_or(""))
            .filter(|authority| !authority.is_empty() && !url.contains(['?', '#']));
        let Some(authority) = host else {
            return Err(format!(
                "`{url}` is not an http:// or https:// URL with a host (and no query)"
            ));
        };
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority
                .rsplit_once(':')
                .map_or(authority, |(host, _)| host),
        };
        let allowed = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip == self.api.listen.ip())
            || self
                .api
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host));
        if !allowed {
            return Err(format!(
                "the API refuses requests for `{host}`: add it to api.allowed_hosts"
            ));
        }
        Ok(())
    }
}

fn validate_nats(nats: &NatsConfig) -> Result<(), (String, String)> {
    let scheme_ok = nats.url.split(',').all(|server| {
        let server = server.trim();
        !server.is_empty()
            && ["nats://", "tls://"]
                .iter()
                .any(|scheme| server.starts_with(scheme))
    });
    if !scheme_ok {
        return Err((
            "nats.url".into(),
            format!(
                "`{}` is not a NATS URL; write it like \"nats://127.0.0.1:4222\" (or tls://…)",
                crate::nats::transport::shown_url(&nats.url)
            ),
        ));
    }
    crate::nats::subject::check_prefix(&nats.subject_prefix)
        .map_err(|e| ("nats.subject_prefix".to_string(), e))?;
    if nats.tls_cert.is_some() != nats.tls_key.is_some() {
        return Err((
            if nats.tls_cert.is_some() {
                "nats.tls_key"
            } else {
                "nats.tls_cert"
            }
            .into(),
            "tls_cert and tls_key go together".into(),
        ));
    }
    // Files are read now, so a typo in a path stops the start at its line.
    for (key, path) in [
        ("nats.credentials", &nats.credentials),
        ("nats.tls_ca", &nats.tls_ca),
        ("nats.tls_cert", &nats.tls_cert),
        ("nats.tls_key", &nats.tls_key),
    ] {
        if let Some(path) = path
            && let Err(e) = std::fs::metadata(path)
        {
            return Err((key.into(), format!("cannot read {}: {e}", path.display())));
        }
    }
    if nats.ack_timeout.is_zero() {
        return Err(("nats.ack_timeout".into(), "must be greater than 0s".into()));
    }
    Ok(())
}

fn validate_cluster(cluster: &ClusterConfig) -> Result<(), (String, String)> {
    use crate::engine::whatsapp::pg_store::Setting;
    let url = &cluster.database_url;
    let key_of = |setting: Setting| match setting {
        Setting::Url => "cluster.database_url",
        Setting::CaFile => "cluster.database_ca",
    };
    let database = cluster.database().map_err(|e| {
        let message = match e.setting {
            Setting::Url => format!(
                "`{}`: {}; write it like \"postgres://wabridge:PASSWORD@db.internal:5432/wabridge\"",
                redact_url_password(url),
                e.message
            ),
            Setting::CaFile => e.message,
        };
        (key_of(e.setting).to_string(), message)
    })?;
    // The CA, client certificate and key files are read now, so a typo in
    // a path stops the start at the line that has it.
    database
        .check_files()
        .map_err(|e| (key_of(e.setting).to_string(), e.message))?;
    match cluster.node_name() {
        None => {
            return Err((
                "cluster.node".into(),
                "is not set and the hostname cannot be read; name this host".into(),
            ));
        }
        Some(node)
            if node.is_empty()
                || node.len() > 64
                || node.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            return Err((
                "cluster.node".into(),
                format!("`{node}` must be 1 to 64 characters without spaces"),
            ));
        }
        Some(_) => {}
    }
    for (key, value) in [
        ("cluster.renew_every_secs", cluster.renew_every_secs),
        ("cluster.takeover_every_secs", cluster.takeover_every_secs),
    ] {
        if value == Some(0) {
            return Err((key.into(), "must be at least 1".into()));
        }
    }
    if let Some(problem) = cluster.timings().problem() {
        let key = if problem.contains("batch") {
            "cluster.takeover_batch"
        } else if problem.contains("failed renewal") {
            "cluster.renew_every_secs"
        } else if cluster.margin_secs.is_some() {
            "cluster.margin_secs"
        } else {
            "cluster.lease_ttl_secs"
        };
        return Err((key.into(), problem));
    }
    Ok(())
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key defined on a line: the table header above it plus the
/// text left of `=`. Good enough for the flat tables this config uses.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?;
    let (key, _) = here.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let table = lines[..line - 1].iter().rev().find_map(|l| table_header(l));
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

fn table_header(line: &str) -> Option<String> {
    let line = line.trim();
    if !line.starts_with('[') {
        return None;
    }
    Some(
        line.trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string(),
    )
}

/// Line where a dotted key (as returned by `validate`) is written, if any.
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(header) = table_header(line) {
            current = header;
            continue;
        }
        let Some((left, _)) = line.split_once('=') else {
            continue;
        };
        if current == table && left.trim() == key {
            return Some(index + 1);
        }
    }
    None
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write it like \"5s\", \"500ms\" or \"1m\""
        ))
    })
}

fn wa_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(u32, u32, u32)>, D::Error> {
    let text = String::deserialize(d)?;
    parse_wa_version(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{text}` is not a WhatsApp Web version; write three numbers like \"2.3000.1015901307\""
        ))
    })
}

fn parse_wa_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/wabridge.toml"))
    }

    #[test]
    fn empty_config_gives_the_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.backoff.base, Duration::from_secs(5));
        assert_eq!(config.backoff.max, Duration::from_secs(60));
        assert_eq!(config.whatsapp.ws_url, DEFAULT_WS_URL);
        assert_eq!(config.whatsapp.version, None);
        assert_eq!(config.api.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.log.level, "info");
        assert!(config.sessions.is_empty());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[backoff]\nbase = \"5s\"\nmaximum = \"60s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/wabridge.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("key `backoff.maximum`"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse("[api]\nlisten = 3000\n").unwrap_err().to_string();
        assert!(err.contains("line 2, key `api.listen`"), "{err}");
    }

    #[test]
    fn an_open_bind_without_a_token_is_refused_naming_the_key() {
        let err = parse("[api]\nlisten = \"0.0.0.0:3000\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `api.token`"), "{err}");
        assert!(err.contains("api.allow_from"), "{err}");
        assert!(parse("[api]\nlisten = \"0.0.0.0:3000\"\ntoken = \"t\"\n").is_ok());
        let drop_in = parse(
            "[api]\nlisten = \"0.0.0.0:3000\"\nallow_from = [\"10.0.0.5\", \"10.1.0.0/16\"]\n",
        )
        .unwrap();
        assert_eq!(drop_in.api.allow_from.len(), 2);
    }

    #[test]
    fn allow_from_entries_are_addresses_or_ranges() {
        let err = parse("[api]\nallow_from = [\"10.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, key `api.allow_from`"), "{err}");
        assert!(err.contains("prefix must be 0 to 32"), "{err}");
        let err = parse("[api]\nallow_from = [\"erp.example\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an IP address"), "{err}");

        let range = |s: &str| IpRange::try_from(s.to_string()).unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(range("10.1.0.0/16").contains(ip("10.1.255.3")));
        assert!(!range("10.1.0.0/16").contains(ip("10.2.0.1")));
        assert!(range("10.0.0.5").contains(ip("10.0.0.5")));
        assert!(!range("10.0.0.5").contains(ip("10.0.0.6")));
        assert!(range("10.0.0.0/9").contains(ip("10.127.0.1")));
        assert!(!range("10.0.0.0/9").contains(ip("10.128.0.1")));
        assert!(range("10.0.0.5").contains(ip("::ffff:10.0.0.5")));
        assert!(range("fd00::/8").contains(ip("fd12::1")));
        assert!(!range("fd00::/8").contains(ip("10.0.0.5")));
        assert!(range("0.0.0.0/0").contains(ip("192.0.2.1")));
    }

    #[test]
    fn negative_duration_is_rejected_with_a_hint() {
        let err = parse("[backoff]\nbase = \"-5s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, key `backoff.base`"), "{err}");
        assert!(err.contains("write it like"), "{err}");
    }

    #[test]
    fn max_below_base_is_rejected_at_the_max_line() {
        let err = parse("[backoff]\nbase = \"10s\"\nmax = \"5s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3, key `backoff.max`"), "{err}");
    }

    #[test]
    fn hostile_session_id_is_rejected() {
        let err = parse("[[sessions]]\nid = \"../etc\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, key `sessions.id`"), "{err}");
    }

    #[test]
    fn webhook_must_be_http() {
        let err = parse("[[sessions]]\nid = \"a\"\nwebhook_url = \"ftp://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `sessions.webhook_url`"), "{err}");
    }

    #[test]
    fn the_liveness_bound_is_30s_and_can_be_set_but_not_below_1s() {
        assert_eq!(
            parse("").unwrap().whatsapp.dead_after,
            Duration::from_secs(30)
        );
        assert_eq!(
            parse("[whatsapp]\nmax_concurrent_handshakes = 3\n")
                .unwrap()
                .whatsapp
                .max_concurrent_handshakes,
            3
        );
        let err = parse("[whatsapp]\nmax_concurrent_handshakes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2, key `whatsapp.max_concurrent_handshakes`"),
            "{err}"
        );
        let config = parse("[whatsapp]\ndead_after = \"45s\"\n").unwrap();
        assert_eq!(config.whatsapp.dead_after, Duration::from_secs(45));
        let err = parse("[whatsapp]\ndead_after = \"200ms\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, key `whatsapp.dead_after`"), "{err}");
    }

    #[test]
    fn version_pin_parses_and_bad_pins_fail() {
        let config = parse("[whatsapp]\nversion = \"2.3000.1015901307\"\n").unwrap();
        assert_eq!(config.whatsapp.version, Some((2, 3000, 1015901307)));
        let err = parse("[whatsapp]\nversion = \"2.x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `whatsapp.version`"), "{err}");
    }

    #[test]
    fn without_a_cluster_section_nothing_is_clustered() {
        assert!(parse("").unwrap().cluster.is_none());
    }

    #[test]
    fn a_cluster_takes_a_url_a_node_and_timings() {
        let config = parse(
            "[cluster]\ndatabase_url = \"postgres://wb:s3cret@db:5432/wabridge\"\nnode = \"host-a\"\nlease_ttl_secs = 6\nrenew_every_secs = 2\nmargin_secs = 2\ntakeover_every_secs = 1\ntakeover_batch = 3\n",
        )
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.node_name().as_deref(), Some("host-a"));
        let t = cluster.timings();
        assert_eq!(t.ttl, Duration::from_secs(6));
        assert_eq!(t.renew_every, Duration::from_secs(2));
        assert_eq!(t.margin, Duration::from_secs(2));
        assert_eq!(t.takeover_every, Duration::from_secs(1));
        assert_eq!(t.takeover_batch, 3);
        // The password shows nowhere.
        let shown = format!("{cluster:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://wb:***@db:5432/wabridge"),
            "{shown}"
        );
    }

    #[test]
    fn cluster_defaults_are_the_designed_timings_and_the_hostname() {
        let config = parse("[cluster]\ndatabase_url = \"postgres://db/wabridge\"\n").unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(
            cluster.timings(),
            crate::cluster::lease::LeaseTimings::default()
        );
        assert!(cluster.node_name().is_some_and(|n| !n.is_empty()));
    }

    #[test]
    fn cluster_errors_name_the_line_and_key_and_never_the_password() {
        let err = parse("[cluster]\ndatabase_url = \"mysql://wb:s3cret@db/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, key `cluster.database_url`"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let url = "database_url = \"postgres://db/wabridge\"\n";
        let err = parse(&format!(
            "[cluster]\n{url}lease_ttl_secs = 6\nrenew_every_secs = 3\nmargin_secs = 2\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 4, key `cluster.renew_every_secs`"),
            "{err}"
        );
        assert!(err.contains("one failed renewal"), "{err}");
        let err = parse(&format!(
            "[cluster]\n{url}lease_ttl_secs = 6\nmargin_secs = 6\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 4, key `cluster.margin_secs`"), "{err}");
        let err = parse(&format!("[cluster]\n{url}takeover_batch = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3, key `cluster.takeover_batch`"),
            "{err}"
        );
        let err = parse(&format!("[cluster]\n{url}takeover_every_secs = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `cluster.takeover_every_secs`"), "{err}");
        let err = parse(&format!("[cluster]\n{url}node = \"a b\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3, key `cluster.node`"), "{err}");
        let err = parse("[cluster]\nnode = \"a\"\n").unwrap_err().to_string();
        assert!(err.contains("database_url"), "{err}");
        let err = parse(&format!("[cluster]\n{url}lease_ttl = 6\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3, key `cluster.lease_ttl`"), "{err}");
    }

    #[test]
    fn the_api_address_other_hosts_forward_to_must_be_one_the_api_accepts() {
        let url = "database_url = \"postgres://db/wabridge\"\n";
        let bound: std::net::SocketAddr = "127.0.0.1:3100".parse().unwrap();
        let config = parse(&format!("[cluster]\n{url}")).unwrap();
        assert_eq!(
            config.cluster_api_url(bound).as_deref(),
            Some("http://127.0.0.1:3100")
        );
        assert_eq!(
            config.cluster_api_url("0.0.0.0:3100".parse().unwrap()),
            None
        );
        let err = parse(&format!(
            "[cluster]\n{url}api_url = \"http://bridge-2.lan:3000\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3, key `cluster.api_url`"), "{err}");
        assert!(err.contains("api.allowed_hosts"), "{err}");
        let err = parse(&format!("[cluster]\n{url}api_url = \"bridge-2.lan\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `cluster.api_url`"), "{err}");
        let config = parse(&format!(
            "[api]\nallowed_hosts = [\"bridge-2.lan\"]\n[cluster]\n{url}api_url = \"http://bridge-2.lan:3000/\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.cluster_api_url(bound).as_deref(),
            Some("http://bridge-2.lan:3000")
        );
    }

    #[test]
    fn a_database_ca_is_read_at_load_and_a_bad_one_names_file_line_and_key() {
        let url = "database_url = \"postgres://wb:s3cret@db.internal/x\"\n";
        let err = parse(&format!(
            "[cluster]\n{url}node = \"a\"\ndatabase_ca = \"/nowhere/ca.pem\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("config error in /etc/wabridge.toml, line 4, key `cluster.database_ca`: cannot read the CA file /nowhere/ca.pem"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let not_pem = tmp.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let err = parse(&format!(
            "[cluster]\n{url}database_ca = \"{}\"\n",
            not_pem.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3, key `cluster.database_ca`"), "{err}");
        assert!(err.contains("holds no certificate"), "{err}");
        // The URL's sslrootcert is the same setting: a missing file there
        // is the URL's line.
        let err = parse("[cluster]\ndatabase_url = \"postgres://wb:s3cret@db/x?sslrootcert=/nowhere/root.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, key `cluster.database_url`"), "{err}");
        assert!(
            err.contains("cannot read the CA file /nowhere/root.pem"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        // Two different CAs: keep one.
        let err = parse("[cluster]\ndatabase_url = \"postgres://db/x?sslrootcert=/a.pem\"\ndatabase_ca = \"/b.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3, key `cluster.database_ca`"), "{err}");
        assert!(err.contains("keep one"), "{err}");
    }

    #[test]
    fn every_libpq_sslmode_is_accepted_and_a_wrong_one_names_the_url_line() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            parse(&format!(
                "[cluster]\ndatabase_url = \"postgres://db/x?sslmode={mode}\"\n"
            ))
            .unwrap();
        }
        let err = parse("[cluster]\nnode = \"a\"\ndatabase_url = \"postgres://wb:s3cret@db/x?sslmode=verify\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3, key `cluster.database_url`"), "{err}");
        assert!(
            err.contains(
                "sslmode `verify` is not one of disable, prefer, require, verify-ca, verify-full"
            ),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn passwords_are_masked_in_urls() {
        assert_eq!(
            redact_url_password("postgres://u:p%40ss@h:5/d?sslmode=require&password=x"),
            "postgres://u:***@h:5/d?sslmode=require&password=***"
        );
        assert_eq!(redact_url_password("postgres://h/d"), "postgres://h/d");
        assert_eq!(redact_url_password("postgres://u@h/d"), "postgres://u@h/d");
    }

    #[test]
    fn a_bad_nats_section_names_its_line_and_key_and_never_its_login() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let e = err("[nats]\nurl = \"http://t0ken@127.0.0.1:4222\"\n");
        assert!(e.contains("line 2, key `nats.url`"), "{e}");
        assert!(!e.contains("t0ken"), "{e}");
        let e = err("[nats]\nurl = \"nats://127.0.0.1:4222\"\nsubject_prefix = \"erp.*\"\n");
        assert!(e.contains("line 3, key `nats.subject_prefix`"), "{e}");
        let e = err("[nats]\nurl = \"nats://127.0.0.1:4222\"\ntls_ca = \"/nonexistent/ca.pem\"\n");
        assert!(
            e.contains("key `nats.tls_ca`") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let e = err("[nats]\nurl = \"nats://127.0.0.1:4222\"\ntls_cert = \"/etc/hostname\"\n");
        assert!(e.contains("key `nats.tls_key`"), "{e}");
        let e = err("[nats]\nurl = \"nats://127.0.0.1:4222\"\nack_timeout = \"soon\"\n");
        assert!(e.contains("line 3"), "{e}");
        let e = err("[[sessions]]\nid = \"shop\"\nnats_subject = \"a..b\"\n");
        assert!(e.contains("key `sessions.nats_subject`"), "{e}");
        parse(
            "[cluster]\ndatabase_url = \"postgres://127.0.0.1/w\"\nnode = \"a\"\n[nats]\nurl = \"nats://127.0.0.1:4222\"\n",
        )
        .unwrap();
        let e = err(
            "[cluster]\ndatabase_url = \"postgres://127.0.0.1/w\"\n[[sessions]]\nid = \"shop\"\nnats_subject = \"erp\"\n",
        );
        assert!(
            e.contains("key `sessions.nats_subject`") && e.contains("not supported yet"),
            "{e}"
        );
        let ok = parse("[nats]\nurl = \"nats://u:p@127.0.0.1:4222\"\n").unwrap();
        let nats = ok.nats.unwrap();
        assert_eq!(nats.subject_prefix, "wabridge");
        assert_eq!(nats.ack_timeout, Duration::from_secs(5));
        assert!(!format!("{nats:?}").contains(":p@"));
    }

    #[test]
    fn the_example_config_parses_and_sets_every_section() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.backoff.base, Duration::from_secs(5));
        assert_eq!(config.sessions.len(), 1);
        assert!(config.data_dir.is_some());
        assert!(config.whatsapp.version.is_some());
    }

    #[test]
    fn call_settings_are_checked_and_named_by_key() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let config = parse(
            "[[sessions]]\nid = \"shop\"\nreject_calls = true\ncall_reply = \"Please write\"\n",
        )
        .unwrap();
        assert_eq!(config.sessions[0].reject_calls, Some(true));
        let e = err("[[sessions]]\nid = \"shop\"\ncall_reply = \"Please write\"\n");
        assert!(e.contains("key `sessions.call_reply`"), "{e}");
        let e = err("[[sessions]]\nid = \"shop\"\nreject_calls = \"yes\"\n");
        assert!(e.contains("line 3"), "{e}");
        // A cluster keeps them in its database.
        parse(
            "[cluster]\ndatabase_url = \"postgres://127.0.0.1/w\"\nnode = \"a\"\n[[sessions]]\nid = \"shop\"\nreject_calls = true\n",
        )
        .unwrap();
    }

    #[test]
    fn media_settings_are_checked_and_urls_default_to_the_api() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let config = parse(
            "[api]\nlisten = \"127.0.0.1:3100\"\n[[sessions]]\nid = \"shop\"\nmedia = \"url\"\n",
        )
        .unwrap();
        assert_eq!(
            config.sessions[0].media,
            Some(crate::engine::backend::MediaMode::Url)
        );
        assert_eq!(config.media_limits().public_url, "http://127.0.0.1:3100");
        let e = err("[[sessions]]\nid = \"shop\"\nmedia = \"inline\"\n");
        assert!(e.contains("line 3"), "{e}");
        let e = err("[media]\npublic_url = \"ftp://erp\"\n");
        assert!(e.contains("key `media.public_url`"), "{e}");
        let e = err("[media]\nmax_age = \"0s\"\n");
        assert!(e.contains("key `media.max_age`"), "{e}");
        let e = err("[media]\nmax_bytes = 1000\nmax_file_bytes = 2000\n");
        assert!(e.contains("key `media.max_file_bytes`"), "{e}");
        let e = err("[media]\npublic_url = \"http://bridge.lan:3000\"\n");
        assert!(e.contains("add it to api.allowed_hosts"), "{e}");
        let e = err("[media]\npublic_url = \"http://\"\n");
        assert!(e.contains("key `media.public_url`"), "{e}");
        parse("[api]\nallowed_hosts = [\"bridge.lan\"]\n[media]\npublic_url = \"http://bridge.lan:3000\"\n")
            .unwrap();
    }
}
