//! Who sent a message, as a phone number whenever it can be known
//! (ARCHITECTURE.md: a sender's number): a PN sender, the stanza's alternate id, the library's
//! stored LID↔PN pair, or the group's participant list. Never invented: when
//! all fail the LID is passed on, flagged unresolved.

/// A phone number as WhatsApp takes it: 7 to 15 digits, country code first.
pub fn is_phone_number(digits: &str) -> bool {
    (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The user part of a JID string: `"919075167132:3@s.whatsapp.net"` →
/// `"919075167132"`.
pub fn user_of(jid: &str) -> &str {
    let user = jid.split('@').next().unwrap_or(jid);
    user.split(':').next().unwrap_or(user)
}

pub fn is_lid(jid: &str) -> bool {
    jid.ends_with("@lid") || jid.ends_with("@hosted.lid")
}

pub fn is_pn(jid: &str) -> bool {
    jid.ends_with("@s.whatsapp.net") || jid.ends_with("@c.us") || jid.ends_with("@hosted")
}

/// How the number was found; `Participant` is logged like the old bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Sender,
    SenderAlt,
    Store,
    Participant,
    Unresolved,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Phone digits, or the LID digits when unresolved.
    pub from: String,
    /// The sender's LID digits when it is known.
    pub from_lid: Option<String>,
    pub resolved: bool,
    pub source: Source,
}

/// What the adapter could look up about a sender.
#[derive(Debug, Clone, Default)]
pub struct Lookups<'a> {
    pub sender: &'a str,
    pub sender_alt: Option<&'a str>,
    /// The library's stored phone number for the sender's LID.
    pub stored_pn: Option<&'a str>,
    /// The phone number the group's participant list gives for the LID.
    pub participant_pn: Option<&'a str>,
}

pub fn resolve(l: &Lookups) -> Resolution {
    let lid = [Some(l.sender), l.sender_alt]
        .into_iter()
        .flatten()
        .find(|j| is_lid(j))
        .map(|j| user_of(j).to_string());
    let found = |from: &str, source| Resolution {
        from: user_of(from).to_string(),
        from_lid: lid.clone(),
        resolved: true,
        source,
    };
    if is_pn(l.sender) {
        return found(l.sender, Source::Sender);
    }
    if let Some(alt) = l.sender_alt.filter(|a| is_pn(a)) {
        return found(alt, Source::SenderAlt);
    }
    if let Some(pn) = l.stored_pn.filter(|p| !p.is_empty()) {
        return found(pn, Source::Store);
    }
    if let Some(pn) = l.participant_pn.filter(|p| !p.is_empty()) {
        return found(pn, Source::Participant);
    }
    Resolution {
        from: lid.clone().unwrap_or_else(|| user_of(l.sender).to_string()),
        from_lid: lid,
        resolved: false,
        source: Source::Unresolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pn_sender_is_used_as_is() {
        let r = resolve(&Lookups {
            sender: "919075167132:2@s.whatsapp.net",
            ..Lookups::default()
        });
        assert_eq!(
            (r.from.as_str(), r.resolved, r.source),
            ("919075167132", true, Source::Sender)
        );
        assert_eq!(r.from_lid, None);
    }

    #[test]
    fn a_lid_sender_with_a_pn_alt_uses_the_alt_and_keeps_the_lid() {
        let r = resolve(&Lookups {
            sender: "260477250707536@lid",
            sender_alt: Some("919075167132@s.whatsapp.net"),
            ..Lookups::default()
        });
        assert_eq!(r.from, "919075167132");
        assert_eq!(r.from_lid.as_deref(), Some("260477250707536"));
        assert_eq!(r.source, Source::SenderAlt);
    }

    #[test]
    fn the_store_then_the_participant_list_are_asked_in_that_order() {
        let both = Lookups {
            sender: "260477250707536@lid",
            stored_pn: Some("111"),
            participant_pn: Some("222"),
            ..Lookups::default()
        };
        assert_eq!(resolve(&both).from, "111");
        let participant_only = Lookups {
            stored_pn: None,
            ..both
        };
        let r = resolve(&participant_only);
        assert_eq!((r.from.as_str(), r.source), ("222", Source::Participant));
    }

    #[test]
    fn an_unknown_number_is_flagged_never_invented() {
        let r = resolve(&Lookups {
            sender: "260477250707536:1@lid",
            sender_alt: None,
            stored_pn: Some(""),
            participant_pn: None,
        });
        assert_eq!(r.from, "260477250707536");
        assert!(!r.resolved);
        assert_eq!(r.from_lid.as_deref(), Some("260477250707536"));
        assert_eq!(r.source, Source::Unresolved);
    }

    #[test]
    fn user_parts() {
        assert_eq!(user_of("1:2@s.whatsapp.net"), "1");
        assert_eq!(user_of("120363@g.us"), "120363");
        assert_eq!(user_of("nojid"), "nojid");
    }
}
