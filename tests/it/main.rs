//! The product's integration tests, one binary (one link of the whatsapp-rust
//! stack instead of one per file). Each module tests one face of the product;
//! `support` holds what they share.

mod support;

mod api;
mod api_access;
mod api_compat;
mod backlog_views;
mod cli;
mod clock_jump;
mod cluster_store;
mod cluster_view;
mod console;
mod engine_events;
mod engine_messages;
mod engine_webhooks;
mod fixture_device;
mod import_fixture;
mod import_safety;
mod migrate_store;
mod nats_harness;
mod nats_target;
mod outbox_model;
mod pg_outbox;
mod pg_store;
mod pg_tls;
mod product_binary;
mod store_errors;
mod supervisor;
mod tui;
mod webhook_delivery;
