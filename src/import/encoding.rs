//! The byte and number encodings found in one Baileys auth folder.
//!
//! Baileys and libsignal-node write bytes four ways, sometimes in the same
//! file: `{"type":"Buffer","data":"<base64>"}`, `{"type":"Buffer","data":
//! [1,2,…]}`, a plain base64 string, and an index object `{"0":1,"1":2,…}`.
//! Integers are sometimes strings. Each helper says which field failed and
//! why, never what it held (it may be a private key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// What is wrong with one field (the caller adds file and field names).
pub type FieldResult<T> = Result<T, String>;

pub fn bytes(value: &Value) -> FieldResult<Vec<u8>> {
    match value {
        Value::String(text) => base64(text),
        Value::Array(items) => byte_array(items),
        Value::Object(map) if map.get("type").and_then(Value::as_str) == Some("Buffer") => {
            match map.get("data") {
                Some(Value::String(text)) => base64(text),
                Some(Value::Array(items)) => byte_array(items),
                _ => Err("a Buffer without string or array data".into()),
            }
        }
        Value::Object(map) => {
            // `{"0":1,"1":2,…}`: a typed array that went through JSON.
            let mut out = vec![0u8; map.len()];
            for (index, byte) in map {
                let index: usize = index
                    .parse()
                    .ok()
                    .filter(|i| *i < out.len())
                    .ok_or("an index object with a key that is not a position")?;
                out[index] = byte_value(byte)?;
            }
            Ok(out)
        }
        Value::Null => Err("missing".into()),
        other => Err(format!("unknown byte encoding ({})", kind(other))),
    }
}

/// Exactly `N` bytes.
pub fn exact<const N: usize>(value: &Value) -> FieldResult<[u8; N]> {
    let raw = bytes(value)?;
    let len = raw.len();
    raw.try_into()
        .map_err(|_| format!("{len} bytes where {N} are expected"))
}

/// A Curve25519 public key as 32 bytes: Baileys stores its own as 32 bytes,
/// libsignal-node as 33 with a leading type byte 0x05.
pub fn public_key(value: &Value) -> FieldResult<[u8; 32]> {
    let raw = bytes(value)?;
    match raw.len() {
        32 => Ok(raw.try_into().expect("checked length")),
        33 if raw[0] == 0x05 => Ok(raw[1..].try_into().expect("checked length")),
        33 => Err(format!("33 bytes with key type {:#04x}, not 0x05", raw[0])),
        n => Err(format!("{n} bytes where a 32-byte public key is expected")),
    }
}

/// The 33-byte libsignal form of a public key (type byte first).
pub fn public_key_33(value: &Value) -> FieldResult<Vec<u8>> {
    let key = public_key(value)?;
    let mut out = Vec::with_capacity(33);
    out.push(0x05);
    out.extend_from_slice(&key);
    Ok(out)
}

/// An integer that may be written as a number or a string.
pub fn integer(value: &Value) -> FieldResult<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| "not a whole number".to_string()),
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| "a string that is not a whole number".to_string()),
        Value::Null => Err("missing".into()),
        other => Err(format!("{} where a number is expected", kind(other))),
    }
}

/// A non-negative integer that fits `u32`.
pub fn unsigned(value: &Value) -> FieldResult<u32> {
    let n = integer(value)?;
    u32::try_from(n).map_err(|_| format!("{n} is out of range"))
}

fn base64(text: &str) -> FieldResult<Vec<u8>> {
    STANDARD
        .decode(text.trim())
        .map_err(|_| "a string that is not base64".into())
}

fn byte_array(items: &[Value]) -> FieldResult<Vec<u8>> {
    items.iter().map(byte_value).collect()
}

fn byte_value(item: &Value) -> FieldResult<u8> {
    integer(item)
        .ok()
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| "a byte list with an entry that is not 0–255".into())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn all_four_byte_encodings_decode_alike() {
        let want = vec![1u8, 2, 255];
        for value in [
            json!({"type": "Buffer", "data": "AQL/"}),
            json!({"type": "Buffer", "data": [1, 2, 255]}),
            json!("AQL/"),
            json!({"0": 1, "1": "2", "2": 255}),
        ] {
            assert_eq!(bytes(&value).unwrap(), want, "{value}");
        }
    }

    #[test]
    fn bad_encodings_are_named() {
        assert_eq!(
            bytes(&json!(true)).unwrap_err(),
            "unknown byte encoding (a boolean)"
        );
        assert!(
            bytes(&json!("not base64!"))
                .unwrap_err()
                .contains("not base64")
        );
        assert!(bytes(&json!([1, 256])).unwrap_err().contains("0–255"));
        assert!(
            bytes(&json!({"0": 1, "5": 2}))
                .unwrap_err()
                .contains("position")
        );
    }

    #[test]
    fn public_keys_accept_32_or_typed_33_bytes() {
        let key = [7u8; 32];
        let mut typed = vec![5u8];
        typed.extend_from_slice(&key);
        assert_eq!(public_key(&json!(STANDARD.encode(key))).unwrap(), key);
        assert_eq!(public_key(&json!(STANDARD.encode(&typed))).unwrap(), key);
        typed[0] = 6;
        assert!(public_key(&json!(STANDARD.encode(&typed))).is_err());
        assert!(
            public_key(&json!(STANDARD.encode([1u8; 31])))
                .unwrap_err()
                .contains("31 bytes")
        );
        assert!(
            exact::<32>(&json!(STANDARD.encode([1u8; 33])))
                .unwrap_err()
                .contains("33 bytes where 32")
        );
    }

    #[test]
    fn integers_may_be_strings() {
        assert_eq!(integer(&json!("1795520402649")).unwrap(), 1_795_520_402_649);
        assert_eq!(unsigned(&json!(31)).unwrap(), 31);
        assert!(unsigned(&json!(-1)).is_err());
        assert!(integer(&json!("x")).is_err());
    }
}
