//! How each session's SQLite store is opened. A process holds one store per
//! session, so what a connection keeps for itself is paid a hundred times.

use diesel::connection::{CacheSize, Connection};
use whatsapp_rust::store::SqliteStoreConfig;

/// SQLite's page cache per store. The library's 512 KiB fills as a store
/// grows (Signal sessions, LID mappings); pages beyond it are read from the
/// OS's file cache, which is not this process's memory. At 100 idle sessions
/// the page caches were SQLite's largest part (heaptrack: 15.7 MiB), and
/// 64 KiB took 6 MiB off the process.
const PAGE_CACHE_KIB: u32 = 64;

/// The library's low-memory defaults (one connection per store), with the
/// smaller page cache and without diesel's prepared-statement cache, which
/// keeps every statement a connection ever ran compiled (~60 KiB per idle
/// session measured). Preparing one again costs microseconds against a
/// message's crypto and I/O.
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
