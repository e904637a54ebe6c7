//! How each session's SQLite store is opened. A process holds one store per
//! session, so what a connection keeps for itself is paid a hundred times.

use diesel::connection::{CacheSize, Connection};
use whatsapp_rust::store::SqliteStoreConfig;

/// The library's low-memory defaults (one connection, 512 KiB page cache),
/// minus diesel's prepared-statement cache: it keeps every statement a
/// connection ever ran compiled (~100 of them, a few KiB each), which
/// measured ~200 KiB per idle session. Preparing a statement again costs
/// microseconds against a message's milliseconds of crypto and I/O.
const PAGE_CACHE_KIB: u32 = 64;

pub fn session_store_config() -> SqliteStoreConfig {
    let config = SqliteStoreConfig {
        cache_size_kib: PAGE_CACHE_KIB,
        ..SqliteStoreConfig::default()
    };
    config.with_connection_init(|conn| {
        conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        Ok(())
    })
}
