//! wabridge's test kit: the loopback WhatsApp server (`sim`) that the real
//! whatsapp-rust client connects to, and the helpers the integration tests,
//! benchmarks and the simulator example share (a webhook receiver, pairing
//! through the simulator, a scripted backend, QR readers, tmux, child
//! processes, a throwaway PostgreSQL server, a throwaway NATS server with
//! JetStream).
//!
//! Nothing here turns off a certificate check: a client that should accept
//! the simulator's self-made chain is built in the `wabridge-e2e` package.

pub mod baileys;
pub mod control;
pub mod delay_proxy;
pub mod fake_backend;
pub mod log_capture;
pub mod nats;
pub mod netns;
pub mod pairing;
pub mod postgres;
pub mod process;
pub mod receiver;
pub mod screen;
pub mod sim;
pub mod small_disk;
pub mod tmux;
