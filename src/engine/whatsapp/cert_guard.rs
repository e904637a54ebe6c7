//! Whether this build checks the WhatsApp server's certificate chain.
//!
//! whatsapp-rust has a compile-time feature, `danger-skip-cert-chain-verify`,
//! that makes every client accept any chain; the test kit needs it to talk to
//! the loopback simulator. Cargo unifies features across everything one
//! command builds, so a `wabridge` binary can pick it up from a build that
//! also compiled the end-to-end tests. The product binary asks the library
//! itself, at start, whether it still rejects a chain whose signatures are
//! zeros, and refuses to run when it does not: such a build could be
//! impersonated by anybody on the network path.

use whatsapp_rust::buffa::Message as _;
use whatsapp_rust::wacore::handshake::{HandshakeError, HandshakeUtils};
use whatsapp_rust::waproto::whatsapp::CertChain;
use whatsapp_rust::waproto::whatsapp::cert_chain::NoiseCertificate;
use whatsapp_rust::waproto::whatsapp::cert_chain::noise_certificate::Details;

/// True when the library verifies certificate signatures, i.e. a chain that
/// is well formed but signed with zeros is refused as a verification failure.
pub fn certificate_chain_is_verified() -> bool {
    let server_static = [0x5a; 32];
    let certificate = |details: Details| NoiseCertificate {
        details: Some(details.encode_to_vec()),
        signature: Some(vec![0; 64]),
    };
    let chain = CertChain {
        intermediate: whatsapp_rust::buffa::MessageField::some(certificate(Details {
            serial: Some(1),
            issuer_serial: Some(0),
            key: Some(vec![0x33; 32]),
            ..Details::default()
        })),
        leaf: whatsapp_rust::buffa::MessageField::some(certificate(Details {
            serial: Some(2),
            issuer_serial: Some(1),
            key: Some(server_static.to_vec()),
            ..Details::default()
        })),
    };
    matches!(
        HandshakeUtils::verify_server_cert(&chain.encode_to_vec(), &server_static),
        Err(HandshakeError::CertVerification(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product's own build (this crate's unit tests never enable the
    /// bypass) verifies signatures; `wabridge-e2e` checks the opposite.
    #[test]
    fn the_product_build_verifies_certificate_signatures() {
        assert!(certificate_chain_is_verified());
    }
}
