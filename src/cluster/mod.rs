//! Several wabridge hosts sharing one PostgreSQL: every session served by
//! exactly one host at a time (docs/cluster.md). Without `[cluster]` in the
//! config nothing here runs.

pub mod control;
pub mod lease;
pub mod manager;
pub mod status;
pub mod store;
pub mod view;
