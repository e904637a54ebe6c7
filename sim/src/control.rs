//! The simulated people's side of the simulator's control API: a person
//! writes to a linked device, edits or deletes what they wrote, reacts,
//! or calls, as a phone would, so a demo (the `simulator` example) and the
//! tests drive the same path. Bodies are JSON; unknown fields are refused.
//!
//! Every route takes who acts and where:
//! - `from`: `asha` (default), `ben`, `carla` or `dev`;
//! - `addressing`: `pn` (the number in `from`), `lid` (a LID with the
//!   number beside it, default) or `lid-hidden` (a LID and nothing else);
//! - `device`: the linked device to write to (default: the newest login);
//! - `group` (not for `/call`): `<id>@g.us` to act in that group (`from`
//!   joins it; the server learns it, named `subject` on `/message`, if it
//!   did not know it).
//!
//! `POST /message` sends one message:
//! - `text`: the message, or a document's caption, or a live location's
//!   caption; required unless one of the kinds below is given, refused
//!   with a location, contact cards or a poll (they carry no text);
//! - at most one kind: `document` `{"filename", "mimetype", "content"}` (a
//!   file, content as text); `location` `{"latitude", "longitude", "name"?,
//!   "address"?, "live"?}` (`live`: a shared live location, which has no
//!   name or address); `contacts` `[{"name", "phone"}]` (one: a contact
//!   card, several: one message with them all; vCards made from name and
//!   number); `poll` `{"name", "options": [..]}` (single choice, 2 to 12
//!   distinct options);
//! - `quote` `{"id", "text"?}`: a reply quoting message `id` (one the
//!   client sent, or one of `from`'s), whose text the quote copies;
//! - `forwarded`: true marks it forwarded (not with `quote`);
//! - `unreadable_first`: true sends it first as a message the device cannot
//!   decrypt, then readable under the same id once the device asks for it
//!   again (a retry receipt), as a sender's phone does; not in a group.
//!
//! `POST /edit` `{"id", "text"}`: `from` changes the text of their message
//! `id`. `POST /revoke` `{"id"}`: `from` deletes their message `id` for
//! everyone; with `"author"` (a person) and `group`, `from` deletes the
//! author's message as the group's admin (made one first, unless
//! `"not_admin": true`: a member's forged delete). `POST /reaction` `{"id", "emoji"}`: `from` reacts to message
//! `id` (theirs, or one the client sent); `""` takes the reaction back.
//! `POST /call` `{"video"?}`: `from` calls (the device must be online).
//!
//! Answers: `/message` `{"id", "device"}`; `/edit`, `/revoke`,
//! `/reaction` `{"id": "<the new message's id>", "target": "<the id acted
//! on>", "device"}`; `/call` `{"callId", "device"}`; or 400 with
//! `{"error"}` saying what is wrong.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use waproto::whatsapp as wa;

use crate::sim::{Addressing, Person, Simulator, kinds};

/// The routes, to merge into a control API or serve alone.
pub fn message_routes(sim: Simulator) -> Router {
    Router::new()
        .route("/message", post(message))
        .route("/edit", post(edit))
        .route("/revoke", post(revoke))
        .route("/reaction", post(reaction))
        .route("/call", post(call))
        .with_state(sim)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    #[serde(default)]
    pub text: Option<String>,
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
    pub location: Option<LocationRequest>,
    #[serde(default)]
    pub contacts: Option<Vec<ContactRequest>>,
    #[serde(default)]
    pub poll: Option<PollRequest>,
    #[serde(default)]
    pub quote: Option<QuoteRequest>,
    #[serde(default)]
    pub forwarded: bool,
    #[serde(default)]
    pub unreadable_first: bool,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationRequest {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub live: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    pub name: String,
    pub phone: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    pub name: String,
    pub options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    pub id: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub addressing: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub device: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub id: String,
    /// Whose message, when not `from`'s: `from` deletes it as the group's
    /// admin (and is made one).
    #[serde(default)]
    pub author: Option<String>,
    /// With `author`: `from` is not made admin first (a member's forged
    /// delete).
    #[serde(default)]
    pub not_admin: bool,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub addressing: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub device: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionRequest {
    pub id: String,
    pub emoji: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub addressing: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub device: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    #[serde(default)]
    pub video: bool,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub addressing: Option<String>,
    #[serde(default)]
    pub device: Option<u32>,
}

type Reply = (StatusCode, Json<Value>);

fn bad(error: impl std::fmt::Display) -> Reply {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error.to_string() })),
    )
}

fn ok(answer: Value) -> Reply {
    (StatusCode::OK, Json(answer))
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

/// Who acts, named as they are on the wire, and on which linked device.
struct Actor {
    from: Person,
    addressing: Addressing,
    device: u32,
}

impl Actor {
    fn new(
        sim: &Simulator,
        from: Option<&str>,
        how: Option<&str>,
        device: Option<u32>,
    ) -> Result<Actor, Reply> {
        let from_name = from.unwrap_or("asha");
        let Some(from) = person(from_name) else {
            return Err(bad(format!(
                "from: {from_name:?} is not one of asha, ben, carla, dev"
            )));
        };
        let how = how.unwrap_or("lid");
        let Some(addressing) = addressing(how) else {
            return Err(bad(format!(
                "addressing: {how:?} is not one of pn, lid, lid-hidden"
            )));
        };
        let device = match device.or_else(|| sim.live_logins().last().map(|(_, device)| *device)) {
            Some(device) => device,
            None => return Err(bad("no linked device is logged in: pair a session first")),
        };
        Ok(Actor {
            from,
            addressing,
            device,
        })
    }

    /// The person's JID as their own phone names them.
    fn jid(&self) -> String {
        match self.addressing {
            Addressing::Pn => format!("{}@s.whatsapp.net", self.from.pn),
            Addressing::LidWithPn | Addressing::LidHidden => format!("{}@lid", self.from.lid),
        }
    }

    /// The chat as the person's phone names it: the group, or the account.
    fn chat(&self, sim: &Simulator, group: Option<&str>) -> String {
        group.map_or_else(|| sim.account_jid(self.addressing), str::to_string)
    }

    /// Who wrote message `id` as the person's phone names them: the
    /// account if the client sent it, else the person.
    fn author_of(&self, sim: &Simulator, group: Option<&str>, id: &str) -> String {
        match (sim.sent_by_client(id), group) {
            (false, _) => self.jid(),
            // The simulated groups are LID-addressed.
            (true, Some(_)) => sim.account_jid(Addressing::LidWithPn),
            (true, None) => sim.account_jid(self.addressing),
        }
    }

    /// Sends `message`, in `group` if given (joining it first).
    async fn send(
        &self,
        sim: &Simulator,
        group: Option<(&str, &str)>,
        message: &wa::Message,
    ) -> Reply {
        let sent = match group {
            Some((group, subject)) => {
                sim.join_group(group, subject, &self.from);
                sim.send_group_message(self.device, group, &self.from, self.addressing, message)
                    .await
            }
            None => {
                sim.send_message(self.device, &self.from, self.addressing, message)
                    .await
            }
        };
        match sent {
            Ok(id) => ok(json!({ "id": id, "device": self.device })),
            Err(e) => bad(format!("cannot send to device {}: {e:#}", self.device)),
        }
    }
}

fn group(group: Option<&str>) -> Result<Option<&str>, Reply> {
    match group {
        Some(group) if !group.ends_with("@g.us") => {
            Err(bad(format!("group: {group:?} must end in @g.us")))
        }
        group => Ok(group),
    }
}

/// The subject a group the server learns from an action gets.
const DEFAULT_SUBJECT: &str = "Simulated group";

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Reply> {
    body.map(|Json(request)| request)
        .map_err(|e| bad(e.body_text()))
}

async fn message(
    State(sim): State<Simulator>,
    request: Result<Json<MessageRequest>, JsonRejection>,
) -> Reply {
    let request = match body(request) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let actor = match Actor::new(
        &sim,
        request.from.as_deref(),
        request.addressing.as_deref(),
        request.device,
    ) {
        Ok(actor) => actor,
        Err(reply) => return reply,
    };
    let group = match group(request.group.as_deref()) {
        Ok(group) => group,
        Err(reply) => return reply,
    };
    let mut message = match content(&sim, &request) {
        Ok(message) => message,
        Err(reply) => return reply,
    };
    match (&request.quote, request.forwarded) {
        (Some(_), true) => return bad("quote and forwarded: a forwarded message quotes nothing"),
        (Some(quote), false) => {
            let author = actor.author_of(&sim, group, &quote.id);
            let context = kinds::quote(&quote.id, &author, quote.text.as_deref());
            message = kinds::with_context(message, context);
        }
        (None, true) => message = kinds::with_context(message, kinds::forwarded()),
        (None, false) => {}
    }
    if request.unreadable_first {
        if group.is_some() {
            return bad("unreadable_first: only in a 1:1 chat (a group's retry is not simulated)");
        }
        return match sim.send_unreadable_then(actor.device, &actor.from, actor.addressing, &message)
        {
            Ok(id) => ok(json!({ "id": id, "device": actor.device })),
            Err(e) => bad(format!("cannot send to device {}: {e:#}", actor.device)),
        };
    }
    let subject = request.subject.as_deref().unwrap_or(DEFAULT_SUBJECT);
    actor
        .send(&sim, group.map(|g| (g, subject)), &message)
        .await
}

/// The message `/message` asks for, before a quote or the forwarded mark.
fn content(sim: &Simulator, request: &MessageRequest) -> Result<wa::Message, Reply> {
    let kinds_given = [
        request.document.is_some(),
        request.location.is_some(),
        request.contacts.is_some(),
        request.poll.is_some(),
    ];
    if kinds_given.iter().filter(|given| **given).count() > 1 {
        return Err(bad(
            "document, location, contacts, poll: a message is one of them, send them one by one",
        ));
    }
    let text = request.text.as_deref().unwrap_or_default();
    let no_text = |kind: &str, instead: &str| {
        if text.is_empty() {
            Ok(())
        } else {
            Err(bad(format!("text: {kind} carries no text ({instead})")))
        }
    };
    if let Some(document) = &request.document {
        let file = (
            document.mimetype.as_str(),
            document.filename.as_str(),
            document.content.as_bytes(),
        );
        return sim
            .document_message(file, text, None)
            .map_err(|e| bad(format!("document: {e:#}")));
    }
    if let Some(location) = &request.location {
        if !(-90.0..=90.0).contains(&location.latitude)
            || !(-180.0..=180.0).contains(&location.longitude)
        {
            return Err(bad(
                "location: latitude must be within -90..90 and longitude within -180..180",
            ));
        }
        if location.live {
            if location.name.is_some() || location.address.is_some() {
                return Err(bad(
                    "location: a live location has no name or address (text is its caption)",
                ));
            }
            let caption = (!text.is_empty()).then_some(text);
            return Ok(kinds::live_location(
                location.latitude,
                location.longitude,
                caption,
            ));
        }
        no_text("a location", "name the place with location.name")?;
        return Ok(kinds::location(
            location.latitude,
            location.longitude,
            location.name.as_deref(),
            location.address.as_deref(),
        ));
    }
    if let Some(people) = &request.contacts {
        no_text("a contact card", "the cards are the message")?;
        let mut cards = Vec::new();
        for card in people {
            if card.name.trim().is_empty() {
                return Err(bad("contacts: every card needs a name"));
            }
            if !card.phone.chars().any(|c| c.is_ascii_digit()) {
                return Err(bad(format!(
                    "contacts: {:?} has no digits in its phone {:?}",
                    card.name, card.phone
                )));
            }
            cards.push((card.name.clone(), kinds::vcard(&card.name, &card.phone)));
        }
        return match cards.as_slice() {
            [] => Err(bad("contacts: give at least one {\"name\", \"phone\"}")),
            [(name, vcard)] => Ok(kinds::contact(name, vcard)),
            [(first, _), rest @ ..] => {
                let others = match rest.len() {
                    1 => "1 other contact".to_string(),
                    n => format!("{n} other contacts"),
                };
                Ok(kinds::contacts(&format!("{first} and {others}"), &cards))
            }
        };
    }
    if let Some(poll) = &request.poll {
        no_text("a poll", "its question is poll.name")?;
        if poll.name.trim().is_empty() {
            return Err(bad("poll: name (the question) is empty"));
        }
        if !(2..=12).contains(&poll.options.len()) {
            return Err(bad(format!(
                "poll: {} options; WhatsApp takes 2 to 12",
                poll.options.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = poll.options.iter().find(|o| !seen.insert(o.as_str())) {
            return Err(bad(format!("poll: option {twice:?} is there twice")));
        }
        if poll.options.iter().any(|o| o.trim().is_empty()) {
            return Err(bad("poll: an option is empty"));
        }
        return Ok(kinds::poll(&poll.name, &poll.options));
    }
    if text.is_empty() {
        return Err(bad(
            "text: required (or send a document, location, contacts or poll)",
        ));
    }
    Ok(kinds::text(text))
}

async fn edit(
    State(sim): State<Simulator>,
    request: Result<Json<EditRequest>, JsonRejection>,
) -> Reply {
    let request = match body(request) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if request.text.is_empty() {
        return bad("text: the new text is empty (to delete the message, POST /revoke)");
    }
    let target = request.id.clone();
    act_on_message(
        &sim,
        (request.from, request.addressing, request.device),
        request.group.as_deref(),
        &target,
        |chat| kinds::edit(&target, &chat, &request.text),
    )
    .await
}

async fn revoke(
    State(sim): State<Simulator>,
    request: Result<Json<RevokeRequest>, JsonRejection>,
) -> Reply {
    let request = match body(request) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let target = request.id.clone();
    let author = match request.author.as_deref() {
        None => None,
        Some(_) if request.group.is_none() => {
            return bad("author: only in a group (an admin deletes another member's message)");
        }
        Some(name) => match person(name) {
            Some(author) => Some(author),
            None => {
                return bad(format!(
                    "author: {name:?} is not one of asha, ben, carla, dev"
                ));
            }
        },
    };
    if let (Some(group), Some(from), false) = (
        request.group.as_deref(),
        author
            .as_ref()
            .and(person(request.from.as_deref().unwrap_or("asha"))),
        request.not_admin,
    ) {
        sim.make_admin(group, &from);
    }
    act_on_message(
        &sim,
        (request.from, request.addressing, request.device),
        request.group.as_deref(),
        &target,
        |chat| match &author {
            // The simulated groups are LID-addressed.
            Some(author) => kinds::admin_revoke(&target, &chat, &format!("{}@lid", author.lid)),
            None => kinds::revoke(&target, &chat),
        },
    )
    .await
}

async fn reaction(
    State(sim): State<Simulator>,
    request: Result<Json<ReactionRequest>, JsonRejection>,
) -> Reply {
    let request = match body(request) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let target = request.id.clone();
    let in_group = request.group.is_some();
    act_on_message(
        &sim,
        (request.from, request.addressing, request.device),
        request.group.as_deref(),
        &target,
        |chat| {
            // Seen from the person's phone: their own message, or the
            // client's (in a group, named by its author).
            let theirs = sim.sent_by_client(&target);
            let mut key = kinds::key(&chat, &target, !theirs);
            if theirs && in_group {
                key.participant = Some(sim.account_jid(Addressing::LidWithPn));
            }
            kinds::reaction(key, &request.emoji)
        },
    )
    .await
}

/// An edit, a delete or a reaction: `make` builds the message about
/// `target` from the chat's JID.
async fn act_on_message(
    sim: &Simulator,
    (from, how, device): (Option<String>, Option<String>, Option<u32>),
    group_jid: Option<&str>,
    target: &str,
    make: impl FnOnce(String) -> wa::Message,
) -> Reply {
    let actor = match Actor::new(sim, from.as_deref(), how.as_deref(), device) {
        Ok(actor) => actor,
        Err(reply) => return reply,
    };
    let group = match group(group_jid) {
        Ok(group) => group,
        Err(reply) => return reply,
    };
    if target.is_empty() {
        return bad("id: which message? it is empty");
    }
    let message = make(actor.chat(sim, group));
    let (status, Json(mut answer)) = actor
        .send(sim, group.map(|g| (g, DEFAULT_SUBJECT)), &message)
        .await;
    if status == StatusCode::OK {
        answer["target"] = json!(target);
    }
    (status, Json(answer))
}

async fn call(
    State(sim): State<Simulator>,
    request: Result<Json<CallRequest>, JsonRejection>,
) -> Reply {
    let request = match body(request) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let actor = match Actor::new(
        &sim,
        request.from.as_deref(),
        request.addressing.as_deref(),
        request.device,
    ) {
        Ok(actor) => actor,
        Err(reply) => return reply,
    };
    match sim.send_call(actor.device, &actor.from, actor.addressing, request.video) {
        Ok(call_id) => ok(json!({ "callId": call_id, "device": actor.device })),
        Err(e) => bad(format!("cannot call device {}: {e:#}", actor.device)),
    }
}
