//! Forwarding to the ERP: the wire format (`payload`), the durable queue
//! (`outbox`, run on its own thread by `outbox_thread`) and the HTTP worker
//! per session (`deliver`).

pub mod deliver;
pub mod hub;
pub mod outbox;
pub mod outbox_thread;
pub mod payload;
