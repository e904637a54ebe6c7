//! The old bridge's lookup routes: check-number, contact-info,
//! group-metadata (participants with resolved phone numbers) and
//! subscribe-presence, answered by the session's live connection.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::send::receiver_jid;
use super::{ApiError, ApiState};
use crate::engine::backend::{Answer, Query};
use crate::paths::SessionId;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupRequest {
    session_id: Option<String>,
    phone: Option<String>,
    phones: Option<Vec<String>>,
    jid: Option<String>,
    group_id: Option<String>,
}

impl LookupRequest {
    fn session(&self) -> Result<SessionId, ApiError> {
        let raw = self
            .session_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_request("sessionId is required"))?;
        Ok(SessionId::parse(raw)?)
    }

    /// The contact, as `jid` or `phone` (old bridge receiver rules).
    fn contact(&self) -> Result<String, ApiError> {
        match (&self.jid, &self.phone) {
            (Some(jid), _) => receiver_jid(jid),
            (None, Some(phone)) => receiver_jid(phone),
            (None, None) => return Err(ApiError::bad_request("jid or phone is required")),
        }
        .map_err(ApiError::bad_request)
    }
}

async fn ask(state: &ApiState, id: &SessionId, query: Query) -> Result<Answer, ApiError> {
    Ok(state.engine.query(id, query).await?)
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

type Body = Result<Json<LookupRequest>, JsonRejection>;

/// `POST /sessions/check-number`: `phone` → one answer, `phones` → a list.
pub async fn check_number(
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let id = request.session()?;
    let single = request.phones.is_none();
    let phones: Vec<String> = match (&request.phones, &request.phone) {
        (Some(list), _) => list.iter().map(|p| digits(p)).collect(),
        (None, Some(phone)) => vec![digits(phone)],
        (None, None) => return Err(ApiError::bad_request("phone or phones is required")),
    };
    if phones.is_empty() || phones.iter().any(|p| !(7..=15).contains(&p.len())) {
        return Err(ApiError::bad_request(
            "phone numbers must have 7 to 15 digits",
        ));
    }
    let Answer::Numbers(checks) = ask(&state, &id, Query::CheckNumbers(phones)).await? else {
        return Err(ApiError::new(StatusCode::BAD_GATEWAY, "unexpected answer"));
    };
    let results: Vec<Value> = checks
        .iter()
        .map(|c| json!({ "phone": c.phone, "exists": c.exists, "jid": c.jid, "lid": c.lid, "isBusiness": c.is_business }))
        .collect();
    Ok(Json(if single {
        results.into_iter().next().unwrap_or(Value::Null)
    } else {
        json!({ "results": results })
    }))
}

/// `POST /sessions/contact-info`
pub async fn contact_info(
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let id = request.session()?;
    let Answer::Contact(c) = ask(&state, &id, Query::ContactInfo(request.contact()?)).await? else {
        return Err(ApiError::new(StatusCode::BAD_GATEWAY, "unexpected answer"));
    };
    Ok(Json(json!({
        "jid": c.jid, "lid": c.lid, "status": c.status, "pictureId": c.picture_id,
        "isBusiness": c.is_business, "verifiedName": c.verified_name,
    })))
}

/// `POST /sessions/group-metadata`: participants carry their phone numbers.
pub async fn group_metadata(
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let id = request.session()?;
    let group = request
        .group_id
        .as_deref()
        .or(request.jid.as_deref())
        .ok_or_else(|| ApiError::bad_request("groupId is required"))?;
    let group = if group.contains('@') {
        group.to_string()
    } else {
        format!("{group}@g.us")
    };
    let Answer::Group(g) = ask(&state, &id, Query::GroupMetadata(group)).await? else {
        return Err(ApiError::new(StatusCode::BAD_GATEWAY, "unexpected answer"));
    };
    let participants: Vec<Value> = g
        .participants
        .iter()
        .map(|p| json!({ "id": p.jid, "phone": p.phone, "lid": p.lid, "admin": p.admin }))
        .collect();
    Ok(Json(json!({
        "id": g.id, "subject": g.subject, "creation": g.creation, "participants": participants,
    })))
}

/// `POST /sessions/subscribe-presence`
pub async fn subscribe_presence(
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let id = request.session()?;
    ask(&state, &id, Query::SubscribePresence(request.contact()?)).await?;
    Ok(Json(json!({ "status": "subscribed" })))
}
