//! Who may call the API, decided before any handler runs.
//!
//! - **DNS rebinding:** a web page in the operator's browser can point a name
//!   it controls at 127.0.0.1 and talk to the API as "same origin". Such a
//!   request carries that name in `Host`, so only loopback names and
//!   addresses, the listen address and the names in `api.allowed_hosts` pass.
//! - **Cross-site requests:** a page elsewhere can still POST to
//!   127.0.0.1:3000 directly; browsers then send its `Origin`, which must be
//!   one of the allowed hosts too. Programs (the ERP, curl) send none.
//! - **Clients:** without `api.token` only this machine and the addresses in
//!   `api.allow_from` may call; with a token, everybody else must send it.
//!   `/health` stays open to monitors, but says only the overall status to a
//!   caller without the token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::config::IpRange;

/// What the API allows, from `[api]`.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Empty = no token (only loopback and `allow_from` clients then).
    pub token: String,
    /// `Host`/`Origin` names allowed besides loopback and the listen address.
    pub allowed_hosts: Vec<String>,
    /// Clients that may call without the token.
    pub allow_from: Vec<IpRange>,
    /// The address the API listens on (its IP is an allowed host).
    pub listen: Option<SocketAddr>,
}

/// Whether the caller proved it may see everything (token, loopback without a
/// token, or an `allow_from` client); handlers that answer anybody (`/health`)
/// say less to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trusted(pub bool);

pub async fn check(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let policy = &state.access;
    if let Err(refusal) = policy.check_names(request.headers()) {
        return refusal.into_response();
    }
    // `serve` records every connection's peer; a router driven in-process
    // (tests, no socket) has none and is this machine.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    let trusted = match policy.client(peer, request.headers()) {
        Ok(()) => true,
        Err(_) if request.uri().path() == "/health" => false,
        Err(refusal) => return refusal.into_response(),
    };
    request.extensions_mut().insert(Trusted(trusted));
    next.run(request).await
}

impl AccessPolicy {
    /// `Host` and `Origin` must name this machine or an allowed host.
    fn check_names(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().unwrap_or("");
            if !self.host_allowed(strip_port(host)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Host {host:?} is not allowed (a page may be reaching this API through DNS rebinding); add it to api.allowed_hosts if it is yours"
                    ),
                ));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .map(|rest| strip_port(rest.split('/').next().unwrap_or("")));
            if !host.is_some_and(|h| self.host_allowed(h)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("cross-site request from {origin:?} refused"),
                ));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        let listed = || {
            self.allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(&host))
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            // An address the operator listed too: a cluster host's
            // `api_url` (`http://10.0.0.5:3000`) while it listens on 0.0.0.0.
            return ip.is_loopback() || self.listen.is_some_and(|l| l.ip() == ip) || listed();
        }
        listed()
    }

    /// The caller is allowed everything: by address, or by token.
    fn client(&self, ip: IpAddr, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.allow_from.iter().any(|range| range.contains(ip)) {
            return Ok(());
        }
        if self.token.is_empty() {
            return if ip.is_loopback() {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{ip} may not call this API: add it to api.allow_from or set api.token"
                    ),
                ))
            };
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), self.token.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized"))
        }
    }
}

/// `example.com:3000` → `example.com`; `[::1]:3000` → `[::1]`; `::1` stays.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        AccessPolicy {
            allowed_hosts: vec!["bridge.internal".to_string()],
            listen: Some("10.0.0.2:3000".parse().unwrap()),
            ..AccessPolicy::default()
        }
    }

    #[test]
    fn loopback_names_the_listen_address_and_allowed_hosts_pass() {
        let p = policy();
        for host in [
            "localhost",
            "LOCALHOST.",
            "app.localhost",
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "10.0.0.2",
            "bridge.internal",
        ] {
            assert!(p.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.3",
            "[::2]",
            "",
        ] {
            assert!(!p.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:3000"), "example.com");
        assert_eq!(strip_port("[::1]:3000"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("localhost"), "localhost");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
