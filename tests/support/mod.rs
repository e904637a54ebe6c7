//! Test support for the product's own integration tests: the shared test kit
//! (`wabridge-sim`), with child processes bound to the product binary.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use wabridge_sim::{
    baileys, fake_backend, log_capture, pairing, receiver, screen, sim, small_disk, tmux,
};

/// Child processes of the product `wabridge` binary, which checks the
/// server's certificate chain like the copy a user installs.
pub mod process {
    use std::path::Path;
    use std::process::Command;

    pub use wabridge_sim::process::*;

    pub const BINARY: &str = env!("CARGO_BIN_EXE_wabridge");

    pub fn wabridge(args: &[&str]) -> Command {
        command(BINARY, args)
    }

    pub fn headless(config: &Path, data: &Path) -> Command {
        headless_command(BINARY, config, data)
    }
}
