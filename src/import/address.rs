//! Names in a Baileys auth folder: libsignal-node addresses
//! (`<user>[_<domain>].<device>`) and the file names built from them, turned
//! into the keys whatsapp-rust's store uses (`<user>[:<device>]@<server>.0`).
//!
//! A wrong address fails silently later (the client just starts a new
//! Signal session), so anything unexpected is refused here with its name.

use std::fmt;

/// Which WhatsApp server a user lives on, from libsignal-node's domain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    PhoneNumber,
    Lid,
    Hosted,
    HostedLid,
}

impl Domain {
    fn from_number(n: u16) -> Option<Domain> {
        match n {
            0 => Some(Domain::PhoneNumber),
            1 => Some(Domain::Lid),
            128 => Some(Domain::Hosted),
            129 => Some(Domain::HostedLid),
            _ => None,
        }
    }

    /// The server as whatsapp-rust writes it inside Signal addresses.
    fn signal_server(self) -> &'static str {
        match self {
            Domain::PhoneNumber => "c.us",
            Domain::Lid => "lid",
            Domain::Hosted => "hosted",
            Domain::HostedLid => "hosted.lid",
        }
    }
}

/// One peer device, as libsignal-node names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalAddress {
    pub user: String,
    pub domain: Domain,
    /// The WhatsApp device number (0 is the phone itself).
    pub device: u16,
}

impl SignalAddress {
    /// Parses `<user>[_<domain>].<device>`, e.g. `260477250707536_1.0`.
    pub fn parse(raw: &str) -> Result<SignalAddress, String> {
        let bad = |why: &str| Err(format!("address \"{}\" {why}", shown(raw)));
        let Some((name, device)) = raw.rsplit_once('.') else {
            return bad("has no .<device>");
        };
        let Ok(device) = device.parse::<u16>() else {
            return bad("has a device that is not a number");
        };
        let (user, domain) = match name.rsplit_once('_') {
            Some((user, domain)) => match domain.parse().ok().and_then(Domain::from_number) {
                Some(domain) => (user, domain),
                None => return bad("has an unknown domain"),
            },
            None => (name, Domain::PhoneNumber),
        };
        if !is_user(user) {
            return bad("has a user that is not 1–20 digits");
        }
        Ok(SignalAddress {
            user: user.to_string(),
            domain,
            device,
        })
    }

    /// The key whatsapp-rust's store uses for this device's Signal state.
    pub fn store_key(&self) -> String {
        let device = match self.device {
            0 => String::new(),
            n => format!(":{n}"),
        };
        format!("{}{device}@{}.0", self.user, self.domain.signal_server())
    }
}

impl fmt::Display for SignalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.store_key())
    }
}

/// A group JID as it appears in sender-key file names: `<digits>@g.us`, or a
/// legacy `<creator>-<time>@g.us`.
pub fn group_jid(raw: &str) -> Result<String, String> {
    let valid = raw.strip_suffix("@g.us").is_some_and(|id| {
        let mut parts = id.split('-');
        let first_ok = parts.next().is_some_and(is_user);
        let rest: Vec<&str> = parts.collect();
        first_ok && rest.len() <= 1 && rest.iter().all(|p| is_user(p))
    });
    if valid {
        Ok(raw.to_string())
    } else {
        Err(format!("group \"{}\" is not a group id", shown(raw)))
    }
}

/// What a file in the folder holds, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFile {
    Creds,
    Session(SignalAddress),
    Identity(SignalAddress),
    PreKey(u32),
    SenderKey {
        group: String,
        sender: SignalAddress,
    },
    /// `lid-mapping-<pn>.json` holds the LID user of a phone number.
    LidOfPhone(String),
    /// `lid-mapping-<lid>_reverse.json` holds the phone number of a LID user.
    PhoneOfLid(String),
    /// Key id as Baileys encoded it in the name (base64, `/` as `__`).
    AppStateSyncKey(String),
    TcToken(String),
    /// The old bridge's own `{webhookUrl, webhookToken}`.
    WebhookConfig,
    /// Files whatsapp-rust rebuilds by itself (app-state versions,
    /// sender-key memory, device lists, the tc-token index).
    NotNeeded,
    Unknown,
}

impl AuthFile {
    /// Classifies a file name; a malformed name of a known kind is an error.
    pub fn classify(name: &str) -> Result<AuthFile, String> {
        let Some(stem) = name.strip_suffix(".json") else {
            return Ok(AuthFile::Unknown);
        };
        if stem == "creds" {
            return Ok(AuthFile::Creds);
        }
        if stem == "webhook-config" {
            return Ok(AuthFile::WebhookConfig);
        }
        if stem == "tctoken-__index"
            || [
                "app-state-sync-version-",
                "sender-key-memory-",
                "device-list-",
            ]
            .iter()
            .any(|p| stem.starts_with(p))
        {
            return Ok(AuthFile::NotNeeded);
        }
        if let Some(address) = stem.strip_prefix("session-") {
            return SignalAddress::parse(address).map(AuthFile::Session);
        }
        if let Some(address) = stem.strip_prefix("identity-key-") {
            return SignalAddress::parse(address).map(AuthFile::Identity);
        }
        if let Some(id) = stem.strip_prefix("pre-key-") {
            return id
                .parse()
                .map(AuthFile::PreKey)
                .map_err(|_| format!("pre-key id \"{}\" is not a number", shown(id)));
        }
        if let Some(rest) = stem.strip_prefix("sender-key-") {
            // Legacy group ids contain '-': split from the right.
            let mut parts = rest.rsplitn(3, "--");
            let (Some(device), Some(user), Some(group)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "sender-key name \"{}\" is not <group>--<user>--<device>",
                    shown(rest)
                ));
            };
            return Ok(AuthFile::SenderKey {
                group: group_jid(group)?,
                sender: SignalAddress::parse(&format!("{user}.{device}"))?,
            });
        }
        if let Some(rest) = stem.strip_prefix("lid-mapping-") {
            let (user, reverse) = match rest.strip_suffix("_reverse") {
                Some(lid) => (lid, true),
                None => (rest, false),
            };
            if !is_user(user) {
                return Err(format!(
                    "lid-mapping user \"{}\" is not digits",
                    shown(user)
                ));
            }
            return Ok(if reverse {
                AuthFile::PhoneOfLid(user.to_string())
            } else {
                AuthFile::LidOfPhone(user.to_string())
            });
        }
        if let Some(id) = stem.strip_prefix("app-state-sync-key-") {
            return Ok(AuthFile::AppStateSyncKey(id.replace("__", "/")));
        }
        if let Some(jid) = stem.strip_prefix("tctoken-") {
            return tc_token_user(jid).map(|_| AuthFile::TcToken(jid.to_string()));
        }
        Ok(AuthFile::Unknown)
    }
}

/// `447700900123@s.whatsapp.net` / `260477250707536@lid` → (user, is_lid).
pub fn tc_token_user(jid: &str) -> Result<(String, bool), String> {
    let parsed = match jid.split_once('@') {
        Some((user, "s.whatsapp.net" | "c.us")) if is_user(user) => Some((user, false)),
        Some((user, "lid")) if is_user(user) => Some((user, true)),
        _ => None,
    };
    parsed
        .map(|(user, lid)| (user.to_string(), lid))
        .ok_or_else(|| format!("tc-token contact \"{}\" is not a user JID", shown(jid)))
}

fn is_user(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// A name safe to print: escaped, and cut short.
fn shown(raw: &str) -> String {
    raw.chars()
        .take(60)
        .flat_map(char::escape_default)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_store_keys() {
        for (raw, key) in [
            ("260477250707536_1.0", "260477250707536@lid.0"),
            ("88888888888888_1.3", "88888888888888:3@lid.0"),
            ("447700900123.0", "447700900123@c.us.0"),
            ("447700900123.12", "447700900123:12@c.us.0"),
            ("5_128.0", "5@hosted.0"),
            ("5_129.2", "5:2@hosted.lid.0"),
        ] {
            assert_eq!(SignalAddress::parse(raw).unwrap().store_key(), key, "{raw}");
        }
    }

    #[test]
    fn hostile_addresses_are_refused() {
        for raw in [
            "../../etc.0",
            "123",
            "123.x",
            "123_7.0",
            "12a.0",
            "_1.0",
            "123.70000",
        ] {
            assert!(SignalAddress::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn file_names_classify() {
        use AuthFile::*;
        let cases = [
            ("creds.json", Creds),
            ("pre-key-12.json", PreKey(12)),
            (
                "lid-mapping-919075167132.json",
                LidOfPhone("919075167132".into()),
            ),
            (
                "lid-mapping-260477250707536_reverse.json",
                PhoneOfLid("260477250707536".into()),
            ),
            (
                "app-state-sync-key-AAAAAP__+.json",
                AppStateSyncKey("AAAAAP/+".into()),
            ),
            ("tctoken-__index.json", NotNeeded),
            (
                "tctoken-447700900123@s.whatsapp.net.json",
                TcToken("447700900123@s.whatsapp.net".into()),
            ),
            ("app-state-sync-version-regular.json", NotNeeded),
            ("notes.txt", Unknown),
        ];
        for (name, want) in cases {
            assert_eq!(AuthFile::classify(name).unwrap(), want, "{name}");
        }
        assert_eq!(
            AuthFile::classify("sender-key-123-456@g.us--260477250707536_1--0.json").unwrap(),
            SenderKey {
                group: "123-456@g.us".into(),
                sender: SignalAddress::parse("260477250707536_1.0").unwrap(),
            }
        );
        for bad in [
            "session-..%2F..%2Fx.json",
            "pre-key-x.json",
            "sender-key-evil--1.json",
            "sender-key-1@s.whatsapp.net--1--0.json",
            "lid-mapping-../x.json",
            "tctoken-x@evil.json",
        ] {
            assert!(AuthFile::classify(bad).is_err(), "{bad}");
        }
    }
}
