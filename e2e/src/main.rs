//! `insecure-sim-client`: the wabridge application built with whatsapp-rust's
//! certificate-check bypass, so that the end-to-end tests can run it against
//! the loopback simulator. Never ship it: it accepts any server that speaks
//! the protocol. The product binary (`wabridge`) refuses to start when built
//! this way; this one skips that guard on purpose.

fn main() -> std::process::ExitCode {
    wabridge::app::main("insecure-sim-client")
}
