//! The schema, as numbered migrations embedded in the binary. [`migrate`]
//! applies the missing ones in one transaction under an advisory lock, so
//! hosts starting at once apply each migration exactly once, and refuses a
//! database a newer wabridge has migrated further than this one knows.

use deadpool_postgres::Pool;

/// `pg_advisory_xact_lock` key of the migration ("wabridge" in ASCII).
const MIGRATION_LOCK: i64 = 0x7761_6272_6964_6765;

/// The migrations, in order; migration `n` is `MIGRATIONS[n - 1]`. Append
/// only: an applied migration never changes.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

/// The tables that hold a session's WhatsApp state (credentials, Signal
/// and app state, caches), each keyed by `session` first: what forgetting
/// a session deletes.
pub const SESSION_TABLES: &[&str] = &[
    "wa_device",
    "wa_identities",
    "wa_sessions",
    "wa_prekeys",
    "wa_signed_prekeys",
    "wa_sender_keys",
    "wa_app_state_keys",
    "wa_app_state_versions",
    "wa_app_state_mutation_macs",
    "wa_sender_key_devices",
    "wa_lid_pn_mapping",
    "wa_base_keys",
    "wa_device_registry",
    "wa_group_metadata",
    "wa_tc_tokens",
    "wa_sent_messages",
    "wa_pending_inbound",
    "wa_msg_secrets",
];

/// The version this binary brings a database to.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Every table's key starts with `session`. Times the library passes are
/// unix seconds (`bigint`), as in its SQLite store.
const V1: &str = r#"
CREATE TABLE session_leases (
    session text PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL,
    fence bigint NOT NULL
);

CREATE TABLE wa_device (
    session text PRIMARY KEY,
    device jsonb NOT NULL
);

CREATE TABLE wa_identities (
    session text NOT NULL,
    address text NOT NULL,
    key bytea NOT NULL,
    PRIMARY KEY (session, address)
);

CREATE TABLE wa_sessions (
    session text NOT NULL,
    address text NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (session, address)
);

CREATE TABLE wa_prekeys (
    session text NOT NULL,
    id integer NOT NULL,
    key bytea NOT NULL,
    uploaded boolean NOT NULL,
    PRIMARY KEY (session, id)
);

CREATE TABLE wa_signed_prekeys (
    session text NOT NULL,
    id integer NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (session, id)
);

CREATE TABLE wa_sender_keys (
    session text NOT NULL,
    address text NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (session, address)
);

CREATE TABLE wa_app_state_keys (
    session text NOT NULL,
    key_id bytea NOT NULL,
    key_data bytea NOT NULL,
    fingerprint bytea NOT NULL,
    timestamp bigint NOT NULL,
    PRIMARY KEY (session, key_id)
);

CREATE TABLE wa_app_state_versions (
    session text NOT NULL,
    name text NOT NULL,
    state bytea NOT NULL,
    PRIMARY KEY (session, name)
);

CREATE TABLE wa_app_state_mutation_macs (
    session text NOT NULL,
    name text NOT NULL,
    index_mac bytea NOT NULL,
    version bigint NOT NULL,
    value_mac bytea NOT NULL,
    PRIMARY KEY (session, name, index_mac)
);

CREATE TABLE wa_sender_key_devices (
    session text NOT NULL,
    group_jid text NOT NULL,
    device_jid text NOT NULL,
    has_key boolean NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (session, group_jid, device_jid)
);
CREATE INDEX wa_sender_key_devices_device ON wa_sender_key_devices (session, device_jid);

CREATE TABLE wa_lid_pn_mapping (
    session text NOT NULL,
    lid text NOT NULL,
    phone_number text NOT NULL,
    created_at bigint NOT NULL,
    learning_source text NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (session, lid)
);
CREATE INDEX wa_lid_pn_mapping_pn ON wa_lid_pn_mapping (session, phone_number, updated_at);

CREATE TABLE wa_base_keys (
    session text NOT NULL,
    address text NOT NULL,
    message_id text NOT NULL,
    base_key bytea NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (session, address, message_id)
);

CREATE TABLE wa_device_registry (
    session text NOT NULL,
    user_id text NOT NULL,
    devices_json text NOT NULL,
    timestamp bigint NOT NULL,
    phash text,
    raw_id bigint,
    updated_at bigint NOT NULL,
    PRIMARY KEY (session, user_id)
);

CREATE TABLE wa_group_metadata (
    session text NOT NULL,
    group_jid text NOT NULL,
    info bytea NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (session, group_jid)
);

CREATE TABLE wa_tc_tokens (
    session text NOT NULL,
    jid text NOT NULL,
    token bytea NOT NULL,
    token_timestamp bigint NOT NULL,
    sender_timestamp bigint,
    updated_at bigint NOT NULL,
    PRIMARY KEY (session, jid)
);

CREATE TABLE wa_sent_messages (
    session text NOT NULL,
    chat_jid text NOT NULL,
    message_id text NOT NULL,
    payload bytea NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (session, chat_jid, message_id)
);
CREATE INDEX wa_sent_messages_created ON wa_sent_messages (session, created_at);

CREATE TABLE wa_pending_inbound (
    session text NOT NULL,
    chat text NOT NULL,
    sender text NOT NULL,
    id text NOT NULL,
    message bytea NOT NULL,
    inserted_at bigint NOT NULL,
    PRIMARY KEY (session, chat, sender, id)
);
CREATE INDEX wa_pending_inbound_inserted ON wa_pending_inbound (session, inserted_at);

CREATE TABLE wa_msg_secrets (
    session text NOT NULL,
    chat text NOT NULL,
    sender text NOT NULL,
    msg_id text NOT NULL,
    secret bytea NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    message_ts bigint NOT NULL,
    PRIMARY KEY (session, chat, sender, msg_id)
);
CREATE INDEX wa_msg_secrets_expires ON wa_msg_secrets (session, expires_at);
"#;

/// The sessions a cluster serves (`src/cluster/`): any host adds one, the
/// host that takes its lease runs it. Settings as the API gave them.
const V2: &str = r#"
CREATE TABLE cluster_sessions (
    id text PRIMARY KEY,
    webhook_url text,
    webhook_token text,
    created_at timestamptz NOT NULL DEFAULT now()
);
"#;

/// The webhook outbox of a cluster (`src/webhook/pg_outbox.rs`): the same
/// rows as the SQLite outbox of a single host (`dead`: 0 live, 1 dead
/// letter, 2 delivered and kept only for its dedupe key), shared by every
/// host, so the new owner of a session delivers what its old host could
/// not, under the same delivery ids.
const V3: &str = r#"
CREATE TABLE webhook_outbox (
    seq bigserial PRIMARY KEY,
    delivery_id text NOT NULL UNIQUE,
    session text NOT NULL,
    dedupe_key text,
    body bytea NOT NULL,
    created_ms bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_ms bigint NOT NULL,
    last_error text,
    dead smallint NOT NULL DEFAULT 0,
    batch_id text,
    UNIQUE (session, dedupe_key)
);
CREATE INDEX webhook_outbox_by_session ON webhook_outbox (session, dead, seq);
CREATE INDEX webhook_outbox_by_age ON webhook_outbox (session, dead, created_ms);
"#;

/// What every host needs to know of a session it does not serve
/// (`src/cluster/`): `settings_version` goes up with every change the API
/// makes to the row (webhook, logout cleared, delete asked), so the serving
/// host picks the change up at its next renewal; `logged_out` is the shared
/// "logged out" mark (no host pairs it again until `/sessions/start`);
/// `delete_requested_at` is a DELETE made through any host, carried out by
/// the serving one; `status` is the serving host's last report of the
/// session (state, phone, attempt…) for the dashboards and `/sessions` of
/// the others, written by `status_node` at `status_at`.
const V4: &str = r#"
ALTER TABLE cluster_sessions
    ADD COLUMN settings_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN logged_out boolean NOT NULL DEFAULT false,
    ADD COLUMN delete_requested_at timestamptz,
    ADD COLUMN status jsonb,
    ADD COLUMN status_node text,
    ADD COLUMN status_at timestamptz;
"#;

/// The cluster's hosts and how another host reaches each one's API
/// (`[cluster] api_url`): a request for a session made to a host that does
/// not serve it is forwarded there (`src/api/forward.rs`). Written by each
/// host as it starts; `api_url` is null for a host that publishes none.
const V5: &str = r#"
CREATE TABLE cluster_nodes (
    node text PRIMARY KEY,
    api_url text,
    started_at timestamptz NOT NULL DEFAULT now()
);
"#;

/// The NATS target's outbox in a cluster (`src/nats/`): `webhook_outbox`'s
/// columns and indexes, a queue of its own so each target moves at its own
/// pace, as on one host (`outbox/nats.db` beside `outbox.db`).
const V6: &str = r#"
CREATE TABLE nats_outbox (
    seq bigserial PRIMARY KEY,
    delivery_id text NOT NULL UNIQUE,
    session text NOT NULL,
    dedupe_key text,
    body bytea NOT NULL,
    created_ms bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_ms bigint NOT NULL,
    last_error text,
    dead smallint NOT NULL DEFAULT 0,
    batch_id text,
    UNIQUE (session, dedupe_key)
);
CREATE INDEX nats_outbox_by_session ON nats_outbox (session, dead, seq);
CREATE INDEX nats_outbox_by_age ON nats_outbox (session, dead, created_ms);
"#;

/// A session's call policy, as the API and `[[sessions]]` set it: the
/// serving host turns calls down (and writes `call_reply` to the caller)
/// when `reject_calls`. A change bumps `settings_version` like a webhook's.
const V7: &str = r#"
ALTER TABLE cluster_sessions
    ADD COLUMN reject_calls boolean NOT NULL DEFAULT false,
    ADD COLUMN call_reply text;
"#;

/// Brings the database's schema to [`SCHEMA_VERSION`]. Safe to call from
/// many hosts at once; an error if the database is at a newer version.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS wabridge_schema_version (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM wabridge_schema_version",
            &[],
        )
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        anyhow::bail!(
            "the database's schema is at version {current}, newer than this wabridge knows \
             ({SCHEMA_VERSION}): a newer wabridge migrated it; run that version"
        );
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| anyhow::anyhow!("schema migration {version} failed: {e}"))?;
        tx.execute(
            "INSERT INTO wabridge_schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
