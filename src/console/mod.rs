//! The dashboard's feed: what a dashboard shows and what it may ask, served
//! by the running service to the dashboard in its own process and to
//! `wabridge attach` over a Unix socket in the data dir.
//!
//! - `hub`: the service's side: the state a dashboard attaches to, the live
//!   frames, the requests carried out on the engine;
//! - `wire`: the frames and their JSON-lines encoding (versioned);
//! - `server`: the socket, owner-only;
//! - `link`: the dashboard's side, in-process or
//! - `client`: over the socket, re-attaching when the service comes back.

pub mod client;
pub mod hub;
pub mod link;
pub mod server;
pub mod wire;

pub use hub::Console;
pub use link::{Link, LinkEvent};
