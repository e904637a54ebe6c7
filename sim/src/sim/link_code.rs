//! Pairing by a code typed on the phone, the server's and the phone's side.
//!
//! 1. The companion asks for a code for a phone number
//!    (`<link_code_companion_reg stage="companion_hello">`), sending its
//!    ephemeral public key wrapped under the code it is about to show; the
//!    server answers with a pairing ref.
//! 2. The phone's user types the code: the phone unwraps the companion's key
//!    with it and answers (`stage="primary_hello"`, a notification) with an
//!    ephemeral key of its own, wrapped the same way, and its identity key.
//! 3. The companion sends its key bundle (`stage="companion_finish"`),
//!    encrypted under the two ephemerals' agreement. Only a phone that typed
//!    the right code can open it; inside is what the adv secret is derived
//!    from, which keys the `<pair-success>` HMAC as the QR's secret does.
//!
//! The wrapping and the key bundle are whatsapp-rust's own
//! (`wacore::pair_code::PairCodeUtils`); what is written here is the phone's
//! half, which the library does not have.

use wacore::libsignal::crypto::aes_256_gcm_decrypt;
use wacore::libsignal::protocol::{KeyPair, PublicKey};
use wacore::pair_code::PairCodeUtils;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::NodeContent;

use super::phone::{Companion, Phone};

/// The tag of every stage, inside the IQ or the notification.
pub const TAG: &str = "link_code_companion_reg";

/// HKDF info of the key bundle's encryption key.
const BUNDLE_KEY_INFO: &[u8] = b"link_code_pairing_key_bundle_encryption_key";
/// HKDF info of the adv secret derived from the bundle.
const ADV_SECRET_INFO: &[u8] = b"adv_secret";

/// What a companion sent when it asked for a code (`companion_hello`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    /// The phone number (digits) the companion asked to be linked to.
    pub phone: String,
    /// Its ephemeral public key wrapped under the code it shows:
    /// salt (32) ‖ IV (16) ‖ AES-256-CTR ciphertext (32).
    pub wrapped_ephemeral: Vec<u8>,
    /// The ref the server answered with, echoed by every later stage.
    pub pairing_ref: String,
}

impl CodeRequest {
    /// Reads a `companion_hello`; `None` if it is not a well-formed one.
    pub fn parse(reg: &Node, pairing_ref: String) -> Option<CodeRequest> {
        let jid = reg.attrs.get("jid")?.to_string();
        let phone = jid.strip_suffix("@s.whatsapp.net")?.to_string();
        let wrapped_ephemeral = bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")?;
        let well_formed = !phone.is_empty()
            && phone.bytes().all(|b| b.is_ascii_digit())
            && wrapped_ephemeral.len() == 80;
        well_formed.then_some(CodeRequest {
            phone,
            wrapped_ephemeral,
            pairing_ref,
        })
    }
}

/// The server's answer to a `companion_hello`: the pairing ref.
pub fn companion_hello_answer(iq_id: &str, pairing_ref: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("from", "s.whatsapp.net")
        .attr("type", "result")
        .attr("id", iq_id.to_string())
        .children([NodeBuilder::new(TAG)
            .children([NodeBuilder::new("link_code_pairing_ref")
                .bytes(pairing_ref.as_bytes().to_vec())
                .build()])
            .build()])
        .build()
}

/// The phone's half of one attempt: what it needs to open the bundle the
/// companion answers with.
pub struct Attempt {
    pub pairing_ref: String,
    ephemeral: KeyPair,
    /// The companion's ephemeral key as the typed code unwraps it: garbage
    /// when the code was wrong, which the phone cannot tell yet.
    companion_ephemeral: [u8; 32],
    /// The phone's ephemeral public key wrapped under the typed code.
    wrapped: [u8; 80],
}

/// The phone's user typed `code`: unwrap the companion's key with it and
/// wrap a fresh ephemeral key of the phone's with it. Slow (two PBKDF2
/// derivations of 2^17 rounds): run it off the async threads.
pub fn type_code(request: &CodeRequest, code: &str) -> anyhow::Result<Attempt> {
    let companion_ephemeral =
        PairCodeUtils::decrypt_primary_ephemeral_pub(&request.wrapped_ephemeral, code)?;
    let ephemeral = KeyPair::generate(&mut rand::rng());
    let public: [u8; 32] = ephemeral
        .public_key
        .public_key_bytes()
        .try_into()
        .map_err(|_| anyhow::anyhow!("ephemeral key is not 32 bytes"))?;
    Ok(Attempt {
        pairing_ref: request.pairing_ref.clone(),
        ephemeral,
        companion_ephemeral,
        wrapped: PairCodeUtils::encrypt_ephemeral_pub(&public, code),
    })
}

/// The `primary_hello` notification the server relays from the phone.
pub fn primary_hello(phone: &Phone, attempt: &Attempt, id: &str) -> Node {
    NodeBuilder::new("notification")
        .attr("from", "s.whatsapp.net")
        .attr("type", TAG)
        .attr("id", id.to_string())
        .attr("t", chrono::Utc::now().timestamp().to_string())
        .children([NodeBuilder::new(TAG)
            .attr("stage", "primary_hello")
            .children([
                NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                    .bytes(attempt.wrapped.to_vec())
                    .build(),
                NodeBuilder::new("primary_identity_pub")
                    .bytes(phone.identity.public_key.public_key_bytes().to_vec())
                    .build(),
                NodeBuilder::new("link_code_pairing_ref")
                    .bytes(attempt.pairing_ref.as_bytes().to_vec())
                    .build(),
            ])
            .build()])
        .build()
}

/// Opens the key bundle of a `companion_finish` as the phone does, and
/// derives the adv secret the companion derived with it. Fails when the
/// code typed was not the one the companion showed: the two sides then
/// agree on different keys and the bundle does not decrypt.
pub fn open_key_bundle(phone: &Phone, attempt: &Attempt, reg: &Node) -> anyhow::Result<Companion> {
    let wrapped = bytes(reg, "link_code_pairing_wrapped_key_bundle")
        .ok_or_else(|| anyhow::anyhow!("companion_finish without a key bundle"))?;
    // salt (32) ‖ IV (12) ‖ AES-256-GCM of a 96-byte bundle with its tag (16).
    anyhow::ensure!(
        wrapped.len() == 32 + 12 + 96 + 16,
        "key bundle of {} bytes",
        wrapped.len()
    );
    let (salt, rest) = wrapped.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let ephemeral_shared = attempt.ephemeral.private_key.calculate_agreement(
        &PublicKey::from_djb_public_key_bytes(&attempt.companion_ephemeral)?,
    )?;
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&ephemeral_shared, Some(salt), BUNDLE_KEY_INFO, &mut key)
        .map_err(|e| anyhow::anyhow!("bundle key: {e:?}"))?;
    let iv: [u8; 12] = iv.try_into()?;
    let mut bundle = Vec::with_capacity(96);
    aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle)
        .map_err(|_| anyhow::anyhow!("the key bundle does not open: the code typed is wrong"))?;
    // companion identity (32) ‖ primary identity (32) ‖ random (32).
    let (companion_identity, rest) = bundle.split_at(32);
    let (primary_identity, random) = rest.split_at(32);
    anyhow::ensure!(
        primary_identity == phone.identity.public_key.public_key_bytes(),
        "the key bundle names another phone"
    );
    anyhow::ensure!(
        bytes(reg, "companion_identity_public").as_deref() == Some(companion_identity),
        "the key bundle names another companion"
    );
    let identity_shared = phone
        .identity
        .private_key
        .calculate_agreement(&PublicKey::from_djb_public_key_bytes(companion_identity)?)?;
    let mut secret = Vec::with_capacity(96);
    secret.extend_from_slice(&ephemeral_shared);
    secret.extend_from_slice(&identity_shared);
    secret.extend_from_slice(random);
    let mut adv_secret = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&secret, None, ADV_SECRET_INFO, &mut adv_secret)
        .map_err(|e| anyhow::anyhow!("adv secret: {e:?}"))?;
    Ok(Companion {
        pairing_ref: attempt.pairing_ref.clone(),
        identity_pub: companion_identity.try_into()?,
        adv_secret,
    })
}

/// A `<passkey_prologue_request>` notification: the phone wants a passkey
/// assertion (WebAuthn request options, JSON) before it links the companion.
pub fn passkey_request(id: &str) -> Node {
    use base64::Engine as _;
    let challenge: [u8; 32] = rand::random();
    let options = serde_json::json!({
        "challenge": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge),
        "rpId": "whatsapp.com",
        "allowCredentials": [],
        "userVerification": "required",
        "timeout": 60000,
    });
    NodeBuilder::new("notification")
        .attr("from", "s.whatsapp.net")
        .attr("type", "passkey_prologue_request")
        .attr("id", id.to_string())
        .attr("t", chrono::Utc::now().timestamp().to_string())
        .children([NodeBuilder::new("passkey_request_options")
            .bytes(options.to_string().into_bytes())
            .build()])
        .build()
}

/// The bytes of `node`'s child `tag`.
fn bytes(node: &Node, tag: &str) -> Option<Vec<u8>> {
    match &node.get_optional_child(tag)?.content {
        Some(NodeContent::Bytes(b)) => Some(b.clone()),
        _ => None,
    }
}
