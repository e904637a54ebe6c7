//! Subjects: `<prefix>.<session>.<event>`, e.g.
//! `wabridge.shop-1.messages.upsert`. A consumer subscribes to
//! `wabridge.>` for everything, `wabridge.shop-1.>` for one session, or
//! `wabridge.*.messages.upsert` for one event of every session.

/// Subjects start with this unless `[nats] subject_prefix` or the
/// session's `nats_subject` says otherwise.
pub const DEFAULT_PREFIX: &str = "wabridge";

/// Why a session's own prefix cannot be set in a cluster: its database
/// keeps only a session's webhook.
pub const NO_OWN_PREFIX_IN_CLUSTER: &str = "a session's own NATS subject with [cluster] is not supported yet (its events go under [nats] subject_prefix)";

/// The subject of `event` of `session` under `prefix`. A `.` in the
/// session id would split it into two tokens (and a `*` subscription
/// would miss it), so it is written `%2E`; ids never hold a `%`, so the
/// id can be read back unambiguously.
pub fn subject(prefix: &str, session: &str, event: &str) -> String {
    format!("{prefix}.{}.{event}", session.replace('.', "%2E"))
}

/// Checks a prefix an operator gave: dot-separated tokens of printable
/// characters without spaces or the wildcards `*` and `>`. The message
/// says what is wrong.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("is empty".into());
    }
    if prefix.len() > 200 {
        return Err("is longer than 200 characters".into());
    }
    if prefix.split('.').any(str::is_empty) {
        return Err(format!(
            "`{prefix}` has an empty token (a leading, trailing or double '.')"
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
    {
        return Err(format!(
            "`{prefix}` holds {c:?}: subjects take no spaces, control characters or wildcards"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_keep_one_token_per_session() {
        assert_eq!(
            subject("wabridge", "shop-1", "messages.upsert"),
            "wabridge.shop-1.messages.upsert"
        );
        assert_eq!(
            subject("erp.wa", "acme.in", "connection.update"),
            "erp.wa.acme%2Ein.connection.update"
        );
    }

    #[test]
    fn prefixes_with_wildcards_spaces_or_empty_tokens_are_refused() {
        assert!(check_prefix("wabridge").is_ok());
        assert!(check_prefix("erp.whatsapp").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "tab\there"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
