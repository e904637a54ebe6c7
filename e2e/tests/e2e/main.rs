//! wabridge end to end against the loopback simulator, in one test binary:
//! the real whatsapp-rust client in-process and the application as a child
//! process (`insecure-sim-client`, the only build that accepts the
//! simulator's certificate chain).

mod support;

mod api;
mod attach;
mod cert_guard;
mod clock;
mod cluster;
mod cluster_nats;
mod cluster_ops;
mod cluster_views;
mod crash;
mod customer_actions;
mod headless;
mod import;
mod lifecycle;
mod media_urls;
mod messages;
mod migrate_store;
mod nats;
mod network;
mod pair_code;
mod pairing;
mod pg_store;
mod sim_control;
mod tmux;
