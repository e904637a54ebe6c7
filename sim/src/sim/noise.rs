//! The server side of WhatsApp's Noise handshakes: XX for a first or
//! registering connect, IK for a device that cached our static key. One
//! static key lives as long as the simulator, or IK would fail once.

use wacore::handshake::NoiseHandshake;
use wacore::libsignal::protocol::KeyPair;
use wacore::noise::NoiseCipher;
use wacore_binary::consts::{NOISE_PATTERN_IK, NOISE_PATTERN_XX, WA_CONN_HEADER};
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use super::transport::Frames;

/// Which handshake a connection used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Xx,
    Ik,
}

pub struct ServerIdentity {
    pub static_kp: KeyPair,
    pub cert_chain: Vec<u8>,
}

impl ServerIdentity {
    pub fn generate() -> ServerIdentity {
        let static_kp = KeyPair::generate(&mut rand::rng());
        let cert_chain = wacore_noise::test_util::build_cert_chain_bytes(&pub_bytes(&static_kp));
        ServerIdentity {
            static_kp,
            cert_chain,
        }
    }
}

pub fn pub_bytes(kp: &KeyPair) -> [u8; 32] {
    kp.public_key
        .public_key_bytes()
        .try_into()
        .expect("X25519 public keys are 32 bytes")
}

/// What the handshake established.
pub struct Established {
    pub handshake: Handshake,
    /// The client's Noise static public key (its `noise_key`).
    pub client_static: [u8; 32],
    pub payload: wa::ClientPayload,
    pub read: NoiseCipher,
    pub write: NoiseCipher,
}

/// Runs the responder side on a fresh connection; `None` if the client went
/// away or spoke nonsense mid-handshake.
pub async fn respond(server: &ServerIdentity, frames: &mut Frames) -> anyhow::Result<Established> {
    let hello = frames.next_frame().await?;
    let hello = wa::HandshakeMessage::decode_from_slice(&hello)?;
    let client_hello = hello
        .client_hello
        .into_option()
        .ok_or_else(|| anyhow::anyhow!("no client hello"))?;
    let client_eph: [u8; 32] = client_hello
        .ephemeral
        .ok_or_else(|| anyhow::anyhow!("no ephemeral"))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad ephemeral"))?;
    let server_eph = KeyPair::generate(&mut rand::rng());
    let server_eph_pub = pub_bytes(&server_eph);

    match (client_hello.r#static, client_hello.payload) {
        // IK: the client already knows our static key and sends its own,
        // plus the login payload, in the first message.
        (Some(encrypted_static), Some(encrypted_payload)) => {
            let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
            noise.authenticate(&pub_bytes(&server.static_kp));
            noise.authenticate(&client_eph);
            noise.mix_shared_secret(server.static_kp.private_key.serialize(), &client_eph)?;
            let client_static: [u8; 32] = noise
                .decrypt(&encrypted_static)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("bad client static"))?;
            noise.mix_shared_secret(server.static_kp.private_key.serialize(), &client_static)?;
            let payload =
                wa::ClientPayload::decode_from_slice(&noise.decrypt(&encrypted_payload)?)?;
            noise.authenticate(&server_eph_pub);
            noise.mix_shared_secret(server_eph.private_key.serialize(), &client_eph)?;
            noise.mix_shared_secret(server_eph.private_key.serialize(), &client_static)?;
            let encrypted_cert = noise.encrypt(&server.cert_chain)?;
            frames
                .send_frame(&server_hello(server_eph_pub, None, encrypted_cert))
                .await?;
            let (read, write) = noise.finish()?;
            Ok(Established {
                handshake: Handshake::Ik,
                client_static,
                payload,
                read,
                write,
            })
        }
        _ => {
            let mut noise = NoiseHandshake::new(NOISE_PATTERN_XX, &WA_CONN_HEADER)?;
            noise.authenticate(&client_eph);
            noise.authenticate(&server_eph_pub);
            noise.mix_shared_secret(server_eph.private_key.serialize(), &client_eph)?;
            let encrypted_static = noise.encrypt(&pub_bytes(&server.static_kp))?;
            noise.mix_shared_secret(server.static_kp.private_key.serialize(), &client_eph)?;
            let encrypted_cert = noise.encrypt(&server.cert_chain)?;
            frames
                .send_frame(&server_hello(
                    server_eph_pub,
                    Some(encrypted_static),
                    encrypted_cert,
                ))
                .await?;
            let finish = wa::HandshakeMessage::decode_from_slice(&frames.next_frame().await?)?;
            let finish = finish
                .client_finish
                .into_option()
                .ok_or_else(|| anyhow::anyhow!("no client finish"))?;
            let client_static: [u8; 32] = noise
                .decrypt(&finish.r#static.unwrap_or_default())?
                .try_into()
                .map_err(|_| anyhow::anyhow!("bad client static"))?;
            noise.mix_shared_secret(server_eph.private_key.serialize(), &client_static)?;
            let payload = wa::ClientPayload::decode_from_slice(
                &noise.decrypt(&finish.payload.unwrap_or_default())?,
            )?;
            let (read, write) = noise.finish()?;
            Ok(Established {
                handshake: Handshake::Xx,
                client_static,
                payload,
                read,
                write,
            })
        }
    }
}

fn server_hello(
    ephemeral: [u8; 32],
    encrypted_static: Option<Vec<u8>>,
    payload: Vec<u8>,
) -> Vec<u8> {
    wa::HandshakeMessage {
        server_hello: waproto::buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral.to_vec()),
            r#static: encrypted_static,
            payload: Some(payload),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}
