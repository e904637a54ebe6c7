//! What each session's client keeps in memory between messages. As with the
//! store (`store_config.rs`), a process holds one client per session, so a
//! per-client default is paid a hundred times.

use whatsapp_rust::CacheConfig;

/// Chat lanes kept per client. The library gives every chat a lane: a queue
/// and a worker task that decrypts the chat's messages in order. An idle
/// lane is kept until the cache is full, and its parked task holds ~9.5 KiB,
/// so the default 5,000 lanes would be ~47 MiB for one busy account. With 550
/// chats per session (the content benchmark: 500 people, 50 groups), lanes
/// were 118 of the 182 MiB heap at 20 sessions (heaptrack).
///
/// Only idle lanes are evicted (the library never evicts one holding or
/// running a message), and the next message of an evicted chat gets a new
/// lane: order within a chat is kept either way. So the capacity bounds only
/// idle lanes, not how many chats decrypt at once; a new lane is one task
/// spawn against a message's crypto and disk write.
const CHAT_LANES: u64 = 16;

pub fn client_cache_config() -> CacheConfig {
    CacheConfig {
        chat_lanes_capacity: CHAT_LANES,
        ..CacheConfig::default()
    }
}
