//! Forwarding to the ERP: the wire format (`payload`), the durable queue
//! (`outbox`, run on its own thread by `outbox_thread`) and the HTTP worker
//! per session (`deliver`), and the engine's outbound seam spoken as the old
//! bridge's webhooks (`bridge`). With `[cluster]` the queue is PostgreSQL's
//! (`pg_outbox`); `queue` is the seam both sit behind.

pub mod bridge;
pub mod deliver;
pub mod hub;
pub mod outbox;
pub mod outbox_thread;
pub mod payload;
pub mod pg_outbox;
pub mod queue;
