//! What a connection's end means, as a pure function (ARCHITECTURE.md: rules): keep
//! the credentials and back off, restart at once, stop for the operator, or
//! wipe the credentials because the device was unlinked.

use std::time::Duration;

use std::time::Instant;

/// How a connection ended, in library-neutral terms. The WhatsApp adapter
/// maps the library's events to these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseSignal {
    /// `<failure reason=...>` or a stream error that logs the device out;
    /// `code` is 401 for "logged out / device removed", 403 for a locked
    /// account, 406 for an unknown logout.
    LoggedOut { code: u16 },
    /// `<failure reason=402>`: banned for `lifts_in`.
    TemporaryBan { code: i32, lifts_in: Duration },
    /// `<failure reason=405>`.
    ClientOutdated,
    /// Another client took over the session (conflict "replaced", 409, 440).
    Replaced,
    /// A `<failure>` that is not a logout (500, 503, 409, ...).
    ConnectFailure { code: u16 },
    /// The socket closed after the session was up.
    SocketClosed { detail: String },
    /// Nothing answered our pings for this long: the link is gone even
    /// though the socket never said so (`liveness.rs`).
    NoAnswer { silent_for: Duration },
    /// All six pairing QR codes expired unscanned.
    QrCodesExhausted,
    /// The server's certificate chain did not verify: whoever answered is not
    /// WhatsApp, or something on the path intercepts the connection.
    CertificateInvalid { detail: String },
}

/// Everything the supervisor saw during one run of the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// `PairSuccess` arrived: the server's 515 restart follows.
    pub paired: bool,
    /// The session reached Connected.
    pub connected: bool,
    /// The last close-ish event, if the library sent one.
    pub close: Option<CloseSignal>,
    /// A stream error code seen while the socket stayed open; reported in the
    /// log line when the socket closes later without its own reason.
    pub stream_error: Option<String>,
    /// The previous run also ended in an immediate restart: a second one in a
    /// row is backed off, so a server that keeps sending 515 cannot spin us.
    pub previous_was_restart: bool,
    /// Items the server announced for the offline sync, while it has not
    /// finished: set when the run ends, the sync was cut short.
    pub offline_sync_pending: Option<u32>,
}

/// Why a session stopped and waits for the operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltReason {
    Replaced,
    TemporaryBan {
        code: i32,
        #[serde(with = "super::state::remaining", rename = "lifts_in_ms")]
        lifts_at: Instant,
    },
    ClientOutdated,
    AccountLocked,
    UnknownLogout,
    PairingTimedOut,
    StoreUnreadable {
        moved_to: String,
    },
    /// The session's settings (its webhook) cannot be read: forwarding
    /// without knowing the webhook would ack messages nobody receives.
    SettingsUnreadable {
        detail: String,
    },
}

impl HaltReason {
    /// Plain words for the dashboard and the API, relative to `now`.
    pub fn describe(&self, now: Instant) -> String {
        match self {
            HaltReason::Replaced => {
                "replaced by another client (the session is open elsewhere)".to_string()
            }
            HaltReason::TemporaryBan { lifts_at, .. } => {
                let left = lifts_at.saturating_duration_since(now);
                format!("temporary ban, lifts in {}", human_duration(left))
            }
            HaltReason::ClientOutdated => {
                "client outdated: WhatsApp refuses this version; update wabridge".to_string()
            }
            HaltReason::AccountLocked => "account locked by WhatsApp (403)".to_string(),
            HaltReason::UnknownLogout => {
                "logged out by WhatsApp for an unknown reason (406)".to_string()
            }
            HaltReason::PairingTimedOut => {
                "pairing timed out: no QR code was scanned; reconnect for new codes".to_string()
            }
            HaltReason::StoreUnreadable { moved_to } => {
                format!(
                    "session store could not be opened; moved to {moved_to}; reconnect to pair again"
                )
            }
            HaltReason::SettingsUnreadable { detail } => format!(
                "session settings unreadable ({detail}); set the webhook again, then reconnect"
            ),
        }
    }
}

/// What the supervisor does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Reconnect with the saved credentials after the backoff delay.
    Backoff,
    /// Reconnect at once without counting an attempt (the 515 restart).
    RestartNow,
    /// Keep the credentials and wait for the operator.
    Halt(HaltReason),
    /// The device was unlinked: delete this session's credentials.
    Wipe,
}

/// A decision plus what the log line reports, in the old service's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseVerdict {
    pub decision: Decision,
    /// Status code for `Connection closed for <id>. Status: <code>.`; the old
    /// service's codes (Baileys' DisconnectReason) where there is one.
    pub status: u16,
    pub description: String,
}

/// Baileys' codes for closes that carry no code of their own.
pub const STATUS_CONNECTION_LOST: u16 = 408;
pub const STATUS_CONNECTION_CLOSED: u16 = 428;
pub const STATUS_REPLACED: u16 = 440;
pub const STATUS_RESTART_REQUIRED: u16 = 515;
/// Ours, for a chain that did not verify (no Baileys code; nginx's "SSL
/// Certificate Error"), so the log line's status is not a network error's.
pub const STATUS_CERTIFICATE_INVALID: u16 = 495;

pub fn classify(outcome: &RunOutcome, now: Instant) -> CloseVerdict {
    let verdict = |decision, status, description: &str| CloseVerdict {
        decision,
        status,
        description: description.to_string(),
    };
    match &outcome.close {
        Some(CloseSignal::LoggedOut { code: 403 }) => verdict(
            Decision::Halt(HaltReason::AccountLocked),
            403,
            "account locked",
        ),
        Some(CloseSignal::LoggedOut { code: 406 }) => verdict(
            Decision::Halt(HaltReason::UnknownLogout),
            406,
            "unknown logout",
        ),
        Some(CloseSignal::LoggedOut { code }) => {
            verdict(Decision::Wipe, *code, "logged out, device unlinked")
        }
        Some(CloseSignal::TemporaryBan { code, lifts_in }) => CloseVerdict {
            decision: Decision::Halt(HaltReason::TemporaryBan {
                code: *code,
                lifts_at: now + *lifts_in,
            }),
            status: 402,
            description: format!("temporary ban for {}", human_duration(*lifts_in)),
        },
        Some(CloseSignal::ClientOutdated) => verdict(
            Decision::Halt(HaltReason::ClientOutdated),
            405,
            "client outdated",
        ),
        Some(CloseSignal::Replaced) => verdict(
            Decision::Halt(HaltReason::Replaced),
            STATUS_REPLACED,
            "replaced by another client",
        ),
        Some(CloseSignal::QrCodesExhausted) => verdict(
            Decision::Halt(HaltReason::PairingTimedOut),
            STATUS_CONNECTION_LOST,
            "QR codes expired unscanned",
        ),
        // Credentials stay: a later connect may reach the real server.
        Some(CloseSignal::CertificateInvalid { detail }) => CloseVerdict {
            decision: Decision::Backoff,
            status: STATUS_CERTIFICATE_INVALID,
            description: format!(
                "server certificate invalid: the connection may be intercepted ({detail})"
            ),
        },
        Some(CloseSignal::ConnectFailure { code }) => {
            verdict(Decision::Backoff, *code, "server refused the connection")
        }
        Some(CloseSignal::NoAnswer { silent_for }) => CloseVerdict {
            decision: Decision::Backoff,
            status: STATUS_CONNECTION_LOST,
            description: format!(
                "no answer from WhatsApp for {}",
                human_duration(*silent_for)
            ),
        },
        Some(CloseSignal::SocketClosed { detail }) => CloseVerdict {
            decision: Decision::Backoff,
            status: stream_error_status(outcome).unwrap_or(STATUS_CONNECTION_CLOSED),
            description: format!("connection closed: {detail}"),
        },
        // No close event after a stream error: the server ended the stream
        // because of that error.
        None if stream_error_status(outcome).is_some() => CloseVerdict {
            decision: Decision::Backoff,
            status: stream_error_status(outcome).unwrap_or(STATUS_CONNECTION_LOST),
            description: "the server ended the stream after a stream error".to_string(),
        },
        // No close event: the library ended the run on purpose. After pairing
        // (or once the session was up) that is the server's 515 restart.
        None if outcome.paired || (outcome.connected && !outcome.previous_was_restart) => verdict(
            Decision::RestartNow,
            STATUS_RESTART_REQUIRED,
            "restart required",
        ),
        None if outcome.connected => verdict(
            Decision::Backoff,
            STATUS_RESTART_REQUIRED,
            "restart required again; backing off",
        ),
        None => CloseVerdict {
            decision: Decision::Backoff,
            status: stream_error_status(outcome).unwrap_or(STATUS_CONNECTION_LOST),
            description: "could not connect (network error or handshake timeout)".to_string(),
        },
    }
}

fn stream_error_status(outcome: &RunOutcome) -> Option<u16> {
    outcome.stream_error.as_deref()?.parse().ok()
}

/// "52m", "1h 5m", "30s": coarse, for people.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs.div_ceil(60)),
        _ => {
            let (h, m) = (secs / 3600, (secs % 3600) / 60);
            if m == 0 {
                format!("{h}h")
            } else {
                format!("{h}h {m}m")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(signal: CloseSignal) -> RunOutcome {
        RunOutcome {
            connected: true,
            close: Some(signal),
            ..RunOutcome::default()
        }
    }

    fn decide(outcome: RunOutcome) -> (Decision, u16) {
        let v = classify(&outcome, Instant::now());
        (v.decision, v.status)
    }

    #[test]
    fn only_a_401_style_logout_wipes_credentials() {
        assert_eq!(
            decide(closed(CloseSignal::LoggedOut { code: 401 })),
            (Decision::Wipe, 401)
        );
        assert_eq!(
            decide(closed(CloseSignal::LoggedOut { code: 516 })),
            (Decision::Wipe, 516)
        );
        assert_eq!(
            decide(closed(CloseSignal::LoggedOut { code: 403 })),
            (Decision::Halt(HaltReason::AccountLocked), 403)
        );
        assert_eq!(
            decide(closed(CloseSignal::LoggedOut { code: 406 })),
            (Decision::Halt(HaltReason::UnknownLogout), 406)
        );
    }

    #[test]
    fn replaced_outdated_and_exhausted_qr_halt_keeping_credentials() {
        assert_eq!(
            decide(closed(CloseSignal::Replaced)),
            (Decision::Halt(HaltReason::Replaced), 440)
        );
        assert_eq!(
            decide(closed(CloseSignal::ClientOutdated)),
            (Decision::Halt(HaltReason::ClientOutdated), 405)
        );
        assert_eq!(
            decide(closed(CloseSignal::QrCodesExhausted)).0,
            Decision::Halt(HaltReason::PairingTimedOut)
        );
    }

    #[test]
    fn temporary_ban_halts_with_its_expiry() {
        let now = Instant::now();
        let outcome = closed(CloseSignal::TemporaryBan {
            code: 101,
            lifts_in: Duration::from_secs(3120),
        });
        let verdict = classify(&outcome, now);
        let Decision::Halt(reason) = verdict.decision else {
            panic!("{verdict:?}")
        };
        assert_eq!(reason.describe(now), "temporary ban, lifts in 52m");
        assert_eq!(verdict.status, 402);
    }

    #[test]
    fn server_errors_and_network_failures_back_off() {
        for code in [405u16, 408, 428, 500, 503, 409] {
            assert_eq!(
                decide(closed(CloseSignal::ConnectFailure { code })),
                (Decision::Backoff, code)
            );
        }
        let never_connected = RunOutcome::default();
        assert_eq!(decide(never_connected), (Decision::Backoff, 408));
        assert_eq!(
            decide(closed(CloseSignal::SocketClosed {
                detail: "stream ended (EOF)".into()
            })),
            (Decision::Backoff, 428)
        );
    }

    #[test]
    fn a_silent_link_backs_off_keeping_credentials_and_says_how_long() {
        let verdict = classify(
            &closed(CloseSignal::NoAnswer {
                silent_for: Duration::from_secs(31),
            }),
            Instant::now(),
        );
        assert_eq!(verdict.decision, Decision::Backoff);
        assert_eq!(verdict.status, 408);
        assert_eq!(verdict.description, "no answer from WhatsApp for 31s");
    }

    #[test]
    fn an_invalid_certificate_backs_off_keeping_credentials_and_says_so() {
        let outcome = RunOutcome {
            close: Some(CloseSignal::CertificateInvalid {
                detail: "leaf signature failed XEdDSA verify".to_string(),
            }),
            ..RunOutcome::default()
        };
        let verdict = classify(&outcome, Instant::now());
        assert_eq!(verdict.decision, Decision::Backoff);
        assert_eq!(verdict.status, STATUS_CERTIFICATE_INVALID);
        assert!(
            verdict
                .description
                .starts_with("server certificate invalid: the connection may be intercepted"),
            "{}",
            verdict.description
        );
    }

    #[test]
    fn a_stream_error_code_is_reported_when_the_socket_then_closes() {
        let mut outcome = closed(CloseSignal::SocketClosed {
            detail: "eof".into(),
        });
        outcome.stream_error = Some("500".into());
        assert_eq!(decide(outcome), (Decision::Backoff, 500));
    }

    #[test]
    fn a_stream_ended_by_the_server_after_a_stream_error_backs_off() {
        let outcome = RunOutcome {
            connected: true,
            stream_error: Some("500".into()),
            ..RunOutcome::default()
        };
        assert_eq!(decide(outcome), (Decision::Backoff, 500));
    }

    #[test]
    fn restart_after_pairing_is_immediate_even_twice() {
        let outcome = RunOutcome {
            paired: true,
            previous_was_restart: true,
            ..RunOutcome::default()
        };
        assert_eq!(decide(outcome), (Decision::RestartNow, 515));
    }

    #[test]
    fn a_repeating_restart_is_backed_off() {
        let first = RunOutcome {
            connected: true,
            ..RunOutcome::default()
        };
        assert_eq!(decide(first.clone()).0, Decision::RestartNow);
        let again = RunOutcome {
            previous_was_restart: true,
            ..first
        };
        assert_eq!(decide(again), (Decision::Backoff, 515));
    }

    #[test]
    fn every_halt_reason_reads_as_plain_words() {
        let now = Instant::now();
        for reason in [
            HaltReason::Replaced,
            HaltReason::ClientOutdated,
            HaltReason::AccountLocked,
            HaltReason::UnknownLogout,
            HaltReason::PairingTimedOut,
            HaltReason::StoreUnreadable {
                moved_to: "/d/s.corrupt-1".into(),
            },
            HaltReason::SettingsUnreadable {
                detail: "kept as /d/s/session.json.unreadable-1".into(),
            },
            HaltReason::TemporaryBan {
                code: 101,
                lifts_at: now + Duration::from_secs(90),
            },
        ] {
            let text = reason.describe(now);
            assert!(text.len() > 10 && !text.contains("HaltReason"), "{text}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::from_secs(17)), "17s");
        assert_eq!(human_duration(Duration::from_secs(3120)), "52m");
        assert_eq!(human_duration(Duration::from_secs(3900)), "1h 5m");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2h");
    }
}
