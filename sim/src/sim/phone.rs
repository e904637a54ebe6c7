//! The simulated primary phone: linking a companion (by scanning its QR code,
//! or by a code typed on the phone, see `link_code`) it answers with a
//! `<pair-success>` whose device identity is signed the way the real phone
//! signs it (HMAC keyed by the companion's adv secret, account signature by
//! the phone's identity key), so the real client accepts it.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::buffa::Message;
use waproto::whatsapp as wa;

/// WhatsApp's prefix for the account signature over a device identity.
const ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];

pub struct Phone {
    pub identity: KeyPair,
    /// Phone number digits of the account.
    pub pn: String,
    /// LID digits of the account.
    pub lid: String,
}

/// What the phone knows of a companion it links: read from its QR code, or
/// opened from the key bundle of a pairing by code.
pub struct Companion {
    pub pairing_ref: String,
    pub identity_pub: [u8; 32],
    pub adv_secret: [u8; 32],
}

pub fn scan(qr_payload: &str) -> anyhow::Result<Companion> {
    let parts: Vec<&str> = qr_payload.split(',').collect();
    anyhow::ensure!(parts.len() >= 4, "not a pairing QR payload: {qr_payload}");
    let decode = |s: &str| -> anyhow::Result<[u8; 32]> {
        base64::engine::general_purpose::STANDARD
            .decode(s)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("QR key is not 32 bytes"))
    };
    Ok(Companion {
        pairing_ref: parts[0].to_string(),
        identity_pub: decode(parts[2])?,
        adv_secret: decode(parts[3])?,
    })
}

impl Phone {
    pub fn new(pn: &str, lid: &str) -> Phone {
        Phone {
            identity: KeyPair::generate(&mut rand::rng()),
            pn: pn.to_string(),
            lid: lid.to_string(),
        }
    }

    /// The `<iq><pair-success>` linking `companion` as `device`.
    pub fn pair_success(
        &self,
        companion: &Companion,
        device: u16,
        iq_id: &str,
    ) -> anyhow::Result<Node> {
        let inner = wa::ADVDeviceIdentity {
            raw_id: Some(u32::from(device)),
            timestamp: Some(chrono::Utc::now().timestamp() as u64),
            key_index: Some(u32::from(device)),
            account_type: Some(wa::ADVEncryptionType::E2EE),
            device_type: Some(wa::ADVEncryptionType::E2EE),
        }
        .encode_to_vec();
        let mut to_sign = ACCOUNT_SIGNATURE_PREFIX.to_vec();
        to_sign.extend_from_slice(&inner);
        to_sign.extend_from_slice(&companion.identity_pub);
        let signature = self
            .identity
            .private_key
            .calculate_signature(&to_sign, &mut rand::rng())?;
        let signed = wa::ADVSignedDeviceIdentity {
            details: Some(inner),
            account_signature_key: Some(self.identity.public_key.public_key_bytes().to_vec()),
            account_signature: Some(signature.to_vec()),
            device_signature: None,
        }
        .encode_to_vec();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&companion.adv_secret)?;
        mac.update(&signed);
        let identity = wa::ADVSignedDeviceIdentityHMAC {
            details: Some(signed),
            hmac: Some(mac.finalize().into_bytes().to_vec()),
            account_type: Some(wa::ADVEncryptionType::E2EE),
        }
        .encode_to_vec();
        Ok(NodeBuilder::new("iq")
            .attr("from", "s.whatsapp.net")
            .attr("type", "set")
            .attr("id", iq_id.to_string())
            .children([NodeBuilder::new("pair-success")
                .children([
                    NodeBuilder::new("device-identity")
                        .attr("key-index", device.to_string())
                        .bytes(identity)
                        .build(),
                    NodeBuilder::new("platform").attr("name", "smba").build(),
                    NodeBuilder::new("device")
                        .attr("jid", format!("{}:{device}@s.whatsapp.net", self.pn))
                        .attr("lid", format!("{}:{device}@lid", self.lid))
                        .build(),
                    // A business name sets the push name at pairing, so the
                    // client does not wait for one from app-state sync.
                    NodeBuilder::new("biz")
                        .attr("name", "Simulated Shop")
                        .build(),
                ])
                .build()])
            .build())
    }
}
