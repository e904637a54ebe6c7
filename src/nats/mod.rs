//! NATS JetStream as a delivery target beside the webhook (issue #17): the
//! same events with the same bodies, on subjects
//! `<prefix>.<session>.<event>`, through an outbox of their own with the
//! webhook's guarantees (persisted before WhatsApp is acknowledged, removed
//! only on JetStream's publish ack, per-session order, one delivery id per
//! event, sent as `Nats-Msg-Id` so the stream drops a resend).
//!
//! `subject` names subjects; `transport` connects and publishes (the
//! [`crate::webhook::deliver::Transport`] the delivery workers use).

pub mod subject;
pub mod transport;

use std::sync::Arc;

use crate::paths::DataDir;
use crate::webhook::deliver::DeliverySettings;
use crate::webhook::hub::Hub;
use crate::webhook::outbox::Outbox;
use crate::webhook::outbox_thread::OutboxThread;
use crate::webhook::pg_outbox::{FenceSource, OutboxTable, PgOutbox};
use crate::webhook::queue::Queue;

/// Every session's NATS target, with its own outbox.
pub type NatsHub = Hub<transport::JetStream>;

/// Connects to the server (in the background: the outbox keeps what comes
/// meanwhile) and opens `<data>/outbox/nats.db`, the NATS target's own
/// queue, so that it moves at its own pace beside the webhook's. Retries and
/// expiry follow `[webhook]`'s; one event per publish.
pub async fn open_hub(
    data: &DataDir,
    settings: &transport::NatsSettings,
    delivery: DeliverySettings,
) -> Result<Arc<NatsHub>, String> {
    let path = data.root().join("outbox").join("nats.db");
    let outbox = OutboxThread::start(Arc::new(
        Outbox::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?,
    ));
    over(outbox.into(), settings, delivery).await
}

/// [`open_hub`] in a cluster: the queue is the database's `nats_outbox`,
/// every write fenced by the lease this host holds, so a session's
/// undelivered events follow it to whichever host serves it next (as its
/// webhook's do).
pub async fn open_cluster_hub(
    pool: deadpool_postgres::Pool,
    fences: FenceSource,
    settings: &transport::NatsSettings,
    delivery: DeliverySettings,
) -> Result<Arc<NatsHub>, String> {
    let outbox = PgOutbox::start(pool, fences, OutboxTable::Nats)
        .await
        .map_err(|e| format!("cannot open the cluster's NATS outbox: {e}"))?;
    over(outbox.into(), settings, delivery).await
}

async fn over(
    outbox: Queue,
    settings: &transport::NatsSettings,
    delivery: DeliverySettings,
) -> Result<Arc<NatsHub>, String> {
    let transport = transport::JetStream::connect(settings).await?;
    let delivery = DeliverySettings {
        max_messages_per_post: 1,
        signing_secret: None,
        ..delivery
    };
    Ok(Hub::with_transport(outbox, transport, delivery))
}
