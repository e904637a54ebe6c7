//! The old Node bridge's webhook wire format (ARCHITECTURE.md: the wire formats), byte for byte
//! in field names, plus our additions: `fromLid`, `fromResolved`, and the
//! fields a plain text message never has (`type`, `caption`, `location`,
//! ...), left out when empty so that a text message's body is the old
//! bridge's to the byte; and events of our own (`message.edited`,
//! `message.revoked`, `message.reaction`, `call.received`).

use serde::Serialize;

/// One entry of `messages.upsert`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WireMessage {
    pub id: String,
    /// Phone digits when known; the LID digits otherwise (then
    /// `fromResolved` is false), as the old consumers expect a string here.
    pub from: String,
    pub text: String,
    /// Unix seconds.
    pub timestamp: i64,
    pub push_name: Option<String>,
    pub media: Option<WireMedia>,
    pub is_group: bool,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub reply_to: Option<WireReply>,
    /// Ours: the sender's LID digits when it came as one.
    pub from_lid: Option<String>,
    /// Ours: false when `from` is a LID because the number is hidden.
    pub from_resolved: bool,
    /// Ours: the kind of content; absent means `text`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<WireLocation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<WireContact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<WirePoll>,
    /// Ours: the quoted message of a reply, with who wrote it (`replyTo`
    /// keeps the old bridge's two fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quoted: Option<WireQuoted>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    /// Ours: a notice for a message that could not be decrypted (yet).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unreadable: bool,
    /// Ours: the id of the unreadable notice this message is the real
    /// content of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireLocation {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireContact {
    pub name: Option<String>,
    /// Phone digits found in the card.
    pub numbers: Vec<String>,
    pub vcard: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePoll {
    pub name: String,
    pub options: Vec<String>,
    /// How many options a voter may pick; 0 means any number.
    pub selectable_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireQuoted {
    pub message_id: String,
    pub text: Option<String>,
    /// Phone digits of who wrote it, when the reply says...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// ... or their LID digits, when it names them by LID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_lid: Option<String>,
}

/// Whose message a group's admin deleted: their number when known, else
/// their LID (never passed off as a number).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAuthor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_lid: Option<String>,
}

/// Who did something, as `messages.upsert` names a sender.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePerson {
    pub from: String,
    pub from_lid: Option<String>,
    pub from_resolved: bool,
    pub push_name: Option<String>,
    /// The group it happened in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The id of the unreadable notice this is the readable resend of (a
    /// reaction or an edit can be unreadable at first, like a message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireMedia {
    /// Base64; absent when over the size cap (then `omitted` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    pub mimetype: String,
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted: Option<String>,
    /// Ours, in URL mode: where to GET the file (with the API's auth)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// ... its size in bytes...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// ... and until when (unix seconds) the URL works.
    #[serde(rename = "expiresAt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireReply {
    pub message_id: String,
    pub text: Option<String>,
}

/// The events the old bridge posted.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    ConnectionUpdate {
        status: &'static str,
        error: Option<String>,
    },
    MessagesUpsert(Vec<WireMessage>),
    MessageStatus {
        message_id: String,
        status: &'static str,
        /// Unix milliseconds.
        timestamp: i64,
    },
    /// Ours: a sender edited a message.
    MessageEdited {
        message_id: String,
        text: String,
        /// Unix seconds.
        edited_at: i64,
        by: WirePerson,
    },
    /// Ours: a sender deleted a message for everyone: their own, or, as a
    /// group's admin, `author`'s.
    MessageRevoked {
        message_id: String,
        /// Unix seconds.
        revoked_at: i64,
        by: WirePerson,
        author: Option<WireAuthor>,
    },
    /// Ours: a reaction, or (`removed`) one taken back.
    MessageReaction {
        message_id: String,
        emoji: String,
        removed: bool,
        /// Unix seconds.
        timestamp: i64,
        by: WirePerson,
    },
    /// Ours: a call to the session's number.
    CallReceived {
        call_id: String,
        video: bool,
        rejected: bool,
        /// Unix seconds.
        timestamp: i64,
        by: WirePerson,
    },
}

impl WebhookEvent {
    pub fn name(&self) -> &'static str {
        match self {
            WebhookEvent::ConnectionUpdate { .. } => "connection.update",
            WebhookEvent::MessagesUpsert(_) => "messages.upsert",
            WebhookEvent::MessageStatus { .. } => "message.status",
            WebhookEvent::MessageEdited { .. } => "message.edited",
            WebhookEvent::MessageRevoked { .. } => "message.revoked",
            WebhookEvent::MessageReaction { .. } => "message.reaction",
            WebhookEvent::CallReceived { .. } => "call.received",
        }
    }

    /// The JSON body: `{"sessionId", "event", ...event fields}`.
    pub fn body(&self, session_id: &str) -> Vec<u8> {
        let mut body = serde_json::json!({
            "sessionId": session_id,
            "event": self.name(),
        });
        let fields = match self {
            WebhookEvent::ConnectionUpdate { status, error } => {
                let mut fields = serde_json::json!({ "status": status });
                if let Some(error) = error {
                    fields["error"] = serde_json::Value::from(error.as_str());
                }
                fields
            }
            WebhookEvent::MessagesUpsert(messages) => serde_json::json!({ "messages": messages }),
            WebhookEvent::MessageStatus {
                message_id,
                status,
                timestamp,
            } => serde_json::json!({
                "messageId": message_id,
                "status": status,
                "timestamp": timestamp,
            }),
            WebhookEvent::MessageEdited {
                message_id,
                text,
                edited_at,
                by,
            } => with_person(
                serde_json::json!({ "messageId": message_id, "text": text, "editedAt": edited_at }),
                by,
            ),
            WebhookEvent::MessageRevoked {
                message_id,
                revoked_at,
                by,
                author,
            } => {
                let mut body = serde_json::json!({ "messageId": message_id, "revokedAt": revoked_at, "by": by.from });
                if let Some(author) = author {
                    body["author"] = serde_json::json!(author);
                }
                with_person(body, by)
            }
            WebhookEvent::MessageReaction {
                message_id,
                emoji,
                removed,
                timestamp,
                by,
            } => with_person(
                serde_json::json!({
                    "messageId": message_id, "emoji": emoji, "removed": removed, "timestamp": timestamp,
                }),
                by,
            ),
            WebhookEvent::CallReceived {
                call_id,
                video,
                rejected,
                timestamp,
                by,
            } => with_person(
                serde_json::json!({
                    "callId": call_id, "video": video, "rejected": rejected, "timestamp": timestamp,
                }),
                by,
            ),
        };
        if let (Some(body), serde_json::Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        serde_json::to_vec(&body).expect("JSON values always serialize")
    }
}

/// `fields` and the person's (`from`, `fromLid`, `fromResolved`,
/// `pushName`, `groupId`), flat as `messages.upsert` has them.
fn with_person(mut fields: serde_json::Value, person: &WirePerson) -> serde_json::Value {
    if let (Some(fields), serde_json::Value::Object(person)) = (
        fields.as_object_mut(),
        serde_json::to_value(person).expect("JSON values always serialize"),
    ) {
        fields.extend(person);
    }
    fields
}

/// One `messages.upsert` body holding the messages of several, in order;
/// None unless every body is a `messages.upsert` of the same session. Used
/// to send a backlog several messages per POST, when the receiver allows it.
pub fn merge_upserts(bodies: &[&[u8]]) -> Option<Vec<u8>> {
    merge_upsert_prefix(bodies)
        .filter(|(_, merged)| *merged == bodies.len())
        .map(|(body, _)| body)
}

/// Like [`merge_upserts`] for the longest leading run of `messages.upsert`
/// bodies of one session: the merged body and how many bodies it holds;
/// None when the first body is not one. Each body is parsed once.
pub fn merge_upsert_prefix(bodies: &[&[u8]]) -> Option<(Vec<u8>, usize)> {
    let mut session = None;
    let mut messages = Vec::new();
    let mut merged = 0;
    for body in bodies {
        let Some((id, list)) = upsert_parts(body) else {
            break;
        };
        if *session.get_or_insert_with(|| id.clone()) != id {
            break;
        }
        messages.extend(list);
        merged += 1;
    }
    let body = serde_json::json!({
        "sessionId": session?,
        "event": "messages.upsert",
        "messages": messages,
    });
    Some((
        serde_json::to_vec(&body).expect("JSON values always serialize"),
        merged,
    ))
}

/// The session id and messages of a `messages.upsert` body.
fn upsert_parts(body: &[u8]) -> Option<(serde_json::Value, Vec<serde_json::Value>)> {
    let serde_json::Value::Object(mut body) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    if body.get("event")? != "messages.upsert" {
        return None;
    }
    match (body.remove("sessionId")?, body.remove("messages")?) {
        (id, serde_json::Value::Array(list)) => Some((id, list)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn upserts_merge_in_order_and_nothing_else_does() {
        let upsert = |id: &str| {
            json!({"sessionId": "s", "event": "messages.upsert", "messages": [{"id": id}]})
                .to_string()
        };
        let (a, b) = (upsert("a"), upsert("b"));
        let merged = merge_upserts(&[a.as_bytes(), b.as_bytes()]).unwrap();
        assert_eq!(
            parse(merged),
            json!({"sessionId": "s", "event": "messages.upsert", "messages": [{"id": "a"}, {"id": "b"}]})
        );
        let status = WebhookEvent::ConnectionUpdate {
            status: "Connected",
            error: None,
        }
        .body("s");
        assert_eq!(merge_upserts(&[a.as_bytes(), &status]), None);
        let other = a.replace("\"s\"", "\"t\"");
        assert_eq!(merge_upserts(&[a.as_bytes(), other.as_bytes()]), None);
        assert_eq!(merge_upserts(&[b"not json"]), None);
    }

    fn parse(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn connection_update_matches_the_old_bridge() {
        let event = WebhookEvent::ConnectionUpdate {
            status: "Connected",
            error: None,
        };
        assert_eq!(
            parse(event.body("WA-1")),
            json!({"sessionId": "WA-1", "event": "connection.update", "status": "Connected"})
        );
    }

    #[test]
    fn messages_upsert_has_every_field_of_the_old_bridge_plus_ours() {
        let message = WireMessage {
            id: "3EB0ABC".into(),
            from: "919075167132".into(),
            text: "hello".into(),
            timestamp: 1_764_000_000,
            push_name: Some("Asha".into()),
            media: None,
            is_group: false,
            group_id: None,
            group_name: None,
            reply_to: None,
            from_lid: Some("260477250707536".into()),
            from_resolved: true,
            ..WireMessage::default()
        };
        let body = parse(WebhookEvent::MessagesUpsert(vec![message]).body("WA-1"));
        assert_eq!(
            body,
            json!({
                "sessionId": "WA-1",
                "event": "messages.upsert",
                "messages": [{
                    "id": "3EB0ABC", "from": "919075167132", "text": "hello",
                    "timestamp": 1_764_000_000, "pushName": "Asha", "media": null,
                    "isGroup": false, "groupId": null, "groupName": null, "replyTo": null,
                    "fromLid": "260477250707536", "fromResolved": true
                }]
            })
        );
    }

    #[test]
    fn message_status_uses_milliseconds() {
        let event = WebhookEvent::MessageStatus {
            message_id: "3EB0".into(),
            status: "Read",
            timestamp: 1_764_000_000_123,
        };
        assert_eq!(
            parse(event.body("s")),
            json!({"sessionId": "s", "event": "message.status", "messageId": "3EB0", "status": "Read", "timestamp": 1_764_000_000_123i64})
        );
    }
}
