//! The simulated people's side of the simulator's control API: `POST
//! /message` has a person write to a linked device, as a phone would, so a
//! demo (the `simulator` example) and the tests drive the same path.
//!
//! Body (JSON):
//! - `text` (required): the message, or a document's caption;
//! - `from`: `asha` (default), `ben`, `carla` or `dev`;
//! - `addressing`: `pn` (the number in `from`), `lid` (a LID with the
//!   number beside it, default) or `lid-hidden` (a LID and nothing else);
//! - `group`: `<id>@g.us` to write in that group (`from` joins it; the
//!   server learns it, named `subject`, if it did not know it);
//! - `document`: `{"filename", "mimetype", "content"}` to send a file
//!   (content as text) with `text` as its caption;
//! - `device`: the linked device to write to (default: the newest login).
//!
//! Answer: `{"id": "<message id>", "device": n}`, or 400 with `{"error"}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::{Addressing, Person, Simulator};

/// The routes, to merge into a control API or serve alone.
pub fn message_routes(sim: Simulator) -> Router {
    Router::new()
        .route("/message", post(message))
        .with_state(sim)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    pub text: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub addressing: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub document: Option<DocumentRequest>,
    #[serde(default)]
    pub device: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRequest {
    pub filename: String,
    pub mimetype: String,
    pub content: String,
}

type Reply = (StatusCode, Json<Value>);

fn bad(error: impl std::fmt::Display) -> Reply {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error.to_string() })),
    )
}

/// The simulated people, by the names the API takes.
pub fn person(name: &str) -> Option<Person> {
    match name {
        "asha" => Some(Person::asha()),
        "ben" => Some(Person::ben()),
        "carla" => Some(Person::carla()),
        "dev" => Some(Person::dev()),
        _ => None,
    }
}

fn addressing(name: &str) -> Option<Addressing> {
    match name {
        "pn" => Some(Addressing::Pn),
        "lid" => Some(Addressing::LidWithPn),
        "lid-hidden" => Some(Addressing::LidHidden),
        _ => None,
    }
}

async fn message(
    State(sim): State<Simulator>,
    body: Result<Json<MessageRequest>, axum::extract::rejection::JsonRejection>,
) -> Reply {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return bad(e.body_text()),
    };
    let from_name = request.from.as_deref().unwrap_or("asha");
    let Some(from) = person(from_name) else {
        return bad(format!(
            "from: {from_name:?} is not one of asha, ben, carla, dev"
        ));
    };
    let how = request.addressing.as_deref().unwrap_or("lid");
    let Some(addressing) = addressing(how) else {
        return bad(format!(
            "addressing: {how:?} is not one of pn, lid, lid-hidden"
        ));
    };
    let device = match request
        .device
        .or_else(|| sim.live_logins().last().map(|(_, device)| *device))
    {
        Some(device) => device,
        None => return bad("no linked device is logged in: pair a session first"),
    };
    let sent = match (&request.group, &request.document) {
        (Some(_), Some(_)) => return bad("a document in a group is not simulated yet"),
        (Some(group), None) => {
            if !group.ends_with("@g.us") {
                return bad(format!("group: {group:?} must end in @g.us"));
            }
            let subject = request.subject.as_deref().unwrap_or("Simulated group");
            sim.join_group(group, subject, &from);
            sim.send_group_text(device, group, &from, addressing, &request.text)
                .await
        }
        (None, Some(document)) => {
            sim.send_document(
                device,
                &from,
                addressing,
                (
                    &document.mimetype,
                    &document.filename,
                    document.content.as_bytes(),
                ),
                &request.text,
            )
            .await
        }
        (None, None) => {
            sim.send_text(device, &from, addressing, &request.text)
                .await
        }
    };
    match sent {
        Ok(id) => (StatusCode::OK, Json(json!({ "id": id, "device": device }))),
        Err(e) => bad(format!("cannot send to device {device}: {e:#}")),
    }
}
