//! The `wabridge` binary; the application itself is `wabridge::app`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A build whose WhatsApp library skips the server's certificate check
    // (cargo can unify the test kit's feature into a build of this binary)
    // must never talk to the network: refuse before doing anything.
    if !wabridge::engine::whatsapp::certificate_chain_is_verified() {
        eprintln!(
            "wabridge: this build does not check WhatsApp's server certificate \
             (whatsapp-rust's danger-skip-cert-chain-verify was compiled in, e.g. by \
             `cargo test --workspace`); refusing to run. Rebuild it with `cargo build --release`."
        );
        return ExitCode::from(3);
    }
    wabridge::app::main("wabridge")
}
