//! Test support shared by the integration tests; each test crate uses a part.
#![allow(dead_code)]

pub mod baileys;
pub mod fake_backend;
pub mod log_capture;
pub mod pairing;
pub mod process;
pub mod receiver;
pub mod screen;
pub mod sim;
pub mod tmux;
