//! `insecure-sim-client`: the wabridge application built with whatsapp-rust's
//! certificate-check bypass, so that the end-to-end tests can run it against
//! the loopback simulator. Never ship it: it accepts any server that speaks
//! the protocol. The product binary (`wabridge`) refuses to start when built
//! this way; this one skips that guard on purpose.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wabridge::app::Cli::parse();
    match wabridge::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("insecure-sim-client: {message}");
            ExitCode::FAILURE
        }
    }
}
