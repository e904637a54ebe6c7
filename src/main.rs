//! The `wabridge` binary; the application itself is `wabridge::app`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wabridge::app::Cli::parse();
    match wabridge::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wabridge: {message}");
            ExitCode::FAILURE
        }
    }
}
