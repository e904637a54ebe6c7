//! `creds.json` → whatsapp-rust's `Device`: the linked device's own keys and
//! identity, so the client logs in as the same device (its Noise static key
//! is Baileys' `noiseKey`) without a QR.

use std::str::FromStr;
use std::sync::Arc;

use serde_json::{Map, Value};
use whatsapp_rust::Jid;
use whatsapp_rust::wacore::libsignal::protocol::{KeyPair, PrivateKey};
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::waproto::whatsapp as wa;

use super::encoding;

/// What a person recognises a device by, for the report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeviceSummary {
    pub pn: String,
    pub lid: Option<String>,
    #[serde(rename = "pushName")]
    pub push_name: String,
}

pub struct ImportedCreds {
    pub device: Device,
    pub summary: DeviceSummary,
    /// Pre-keys below this id were uploaded to WhatsApp.
    pub first_unuploaded_pre_key: u32,
}

/// Why creds.json cannot be imported; `NeverPaired` is a skip, not a fault.
pub enum CredsError {
    NeverPaired,
    Invalid(String),
}

impl From<String> for CredsError {
    fn from(why: String) -> Self {
        CredsError::Invalid(why)
    }
}

impl From<&str> for CredsError {
    fn from(why: &str) -> Self {
        CredsError::Invalid(why.to_string())
    }
}

/// `name` may be a dotted path (`signedPreKey.keyId`): its last part is
/// looked up in `map`, the whole is named in errors.
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a Value, String> {
    let key = name.rsplit('.').next().unwrap_or(name);
    map.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("field `{name}`: missing"))
}

fn decode<T>(
    map: &Map<String, Value>,
    name: &str,
    how: impl Fn(&Value) -> encoding::FieldResult<T>,
) -> Result<T, String> {
    how(field(map, name)?).map_err(|why| format!("field `{name}`: {why}"))
}

/// A `{private, public}` pair whose public half must follow from the
/// private; `name` is its field in the file ("" for a whole pre-key file).
pub(super) fn key_pair(value: &Value, name: &str) -> Result<KeyPair, String> {
    let path = |part: &str| match name {
        "" => part.to_string(),
        name => format!("{name}.{part}"),
    };
    let map = value.as_object().ok_or_else(|| match name {
        "" => "not a key pair".to_string(),
        name => format!("field `{name}`: not a key pair"),
    })?;
    let private = decode(map, &path("private"), encoding::exact::<32>)?;
    let public = decode(map, &path("public"), encoding::public_key)?;
    let private = PrivateKey::deserialize(&private)
        .map_err(|e| format!("field `{}`: not a Curve25519 key: {e}", path("private")))?;
    let derived = private
        .public_key()
        .map_err(|e| format!("field `{}`: {e}", path("private")))?;
    if derived.public_key_bytes() != public {
        let mismatch = "the public key does not belong to the private key";
        return Err(match name {
            "" => mismatch.to_string(),
            name => format!("field `{name}`: {mismatch}"),
        });
    }
    Ok(KeyPair::new(derived, private))
}

fn jid(value: &str, name: &str) -> Result<Jid, String> {
    Jid::from_str(value).map_err(|_| format!("field `{name}`: \"{value}\" is not a JID"))
}

pub fn convert(json: &Value) -> Result<ImportedCreds, CredsError> {
    let creds = json
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    // `registered` stays false for QR-linked devices: `me` and `account` are
    // what pairing leaves behind.
    let (Some(me), Some(account)) = (
        creds.get("me").and_then(Value::as_object),
        creds.get("account").and_then(Value::as_object),
    ) else {
        return Err(CredsError::NeverPaired);
    };

    let mut device = Device::new();
    device.noise_key = key_pair(field(creds, "noiseKey")?, "noiseKey")?;
    device.identity_key = key_pair(field(creds, "signedIdentityKey")?, "signedIdentityKey")?;
    let signed = field(creds, "signedPreKey")?
        .as_object()
        .ok_or("field `signedPreKey`: not an object")?;
    device.signed_pre_key = key_pair(field(signed, "keyPair")?, "signedPreKey.keyPair")?;
    device.signed_pre_key_signature =
        decode(signed, "signedPreKey.signature", encoding::exact::<64>)?;
    device.signed_pre_key_id = decode(signed, "signedPreKey.keyId", encoding::unsigned)?;
    // Baileys draws ids from 0..255 (a generator bug); 0 occurs and works.
    device.registration_id = decode(creds, "registrationId", encoding::unsigned)?;
    device.adv_secret_key = decode(creds, "advSecretKey", encoding::exact::<32>)?;

    let me_id = field(me, "me.id")?
        .as_str()
        .ok_or("field `me.id`: not a string")?;
    let pn = jid(me_id, "me.id")?;
    let lid = match me.get("lid").and_then(Value::as_str) {
        Some(raw) => {
            let mut lid = jid(raw, "me.lid")?;
            // Baileys may store the LID without the device: it is the same
            // device as the phone-number JID.
            if lid.device == 0 {
                lid.device = pn.device;
            }
            Some(lid)
        }
        None => None,
    };
    device.push_name = me
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let account_part = |name: &str| decode(account, &format!("account.{name}"), encoding::bytes);
    device.account = Some(Arc::new(wa::ADVSignedDeviceIdentity {
        details: Some(account_part("details")?),
        account_signature_key: Some(account_part("accountSignatureKey")?),
        account_signature: Some(account_part("accountSignature")?),
        device_signature: Some(account_part("deviceSignature")?),
    }));

    let counter = |name| match creds.get(name).filter(|v| !v.is_null()) {
        Some(v) => encoding::unsigned(v).map_err(|why| format!("field `{name}`: {why}")),
        None => Ok(1),
    };
    device.next_pre_key_id = counter("nextPreKeyId")?;
    let first_unuploaded = counter("firstUnuploadedPreKeyId")?;
    device.first_unupload_pre_key_id = first_unuploaded;
    device.server_has_prekeys = first_unuploaded > 1;
    if let Some(routing) = creds.get("routingInfo").filter(|v| !v.is_null()) {
        device.edge_routing_info =
            Some(encoding::bytes(routing).map_err(|why| format!("field `routingInfo`: {why}"))?);
    }
    device.props_hash = creds
        .get("lastPropHash")
        .and_then(Value::as_str)
        .map(str::to_string);
    // The first connect is a full (XX) handshake that learns the server's
    // certificate; Baileys kept none we could use.
    device.server_cert_chain = None;

    let summary = DeviceSummary {
        pn: pn.to_string(),
        lid: lid.as_ref().map(Jid::to_string),
        push_name: device.push_name.clone(),
    };
    device.pn = Some(pn);
    device.lid = lid;
    Ok(ImportedCreds {
        device,
        summary,
        first_unuploaded_pre_key: first_unuploaded,
    })
}
