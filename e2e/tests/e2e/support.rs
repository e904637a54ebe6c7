//! The shared test kit, with child processes bound to the insecure simulator
//! client instead of the product binary.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use wabridge_sim::{baileys, log_capture, pairing, receiver, screen, sim, tmux};

pub mod process {
    use std::path::Path;
    use std::process::Command;

    pub use wabridge_sim::process::*;

    pub const BINARY: &str = env!("CARGO_BIN_EXE_insecure-sim-client");

    pub fn wabridge(args: &[&str]) -> Command {
        command(BINARY, args)
    }

    pub fn headless(config: &Path, data: &Path) -> Command {
        headless_command(BINARY, config, data)
    }
}
