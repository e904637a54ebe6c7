//! Forwarding to the ERP: the wire format (`payload`), the durable queue
//! (`outbox`) and the HTTP worker per session (`deliver`).

pub mod deliver;
pub mod hub;
pub mod outbox;
pub mod payload;
