//! This build has whatsapp-rust's certificate bypass compiled in (that is
//! what lets it talk to the simulator), and the product's start-up guard
//! sees it: a `wabridge` built this way refuses to run.

#[test]
fn the_guard_detects_a_build_that_skips_the_certificate_check() {
    assert!(!wabridge::engine::whatsapp::certificate_chain_is_verified());
}
