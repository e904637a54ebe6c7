//! wabridge: keeps WhatsApp linked-device sessions alive and forwards their
//! messages to business systems. The binary in `main.rs` wires these parts.

pub mod api;
pub mod app;
pub mod cluster;
pub mod config;
pub mod console;
pub mod engine;
pub mod headless;
pub mod import;
pub mod logging;
pub mod media_store;
pub mod migrate_store;
pub mod nats;
pub mod paths;
pub mod qr;
pub mod session_files;
pub mod tui;
pub mod webhook;
