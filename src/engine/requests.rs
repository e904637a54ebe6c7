//! Work that needs the live connection (sending, lookups): queued to the
//! session's supervisor, which runs it only while connected and otherwise
//! answers "Session not connected", never waiting for a reconnect.

use tokio::sync::oneshot;

use super::backend::{Answer, Outgoing, Query, Sent, WaClient};

#[derive(Debug)]
pub enum Op {
    Send(Outgoing),
    Query(Query),
}

#[derive(Debug)]
pub enum Done {
    Sent(Sent),
    Answer(Answer),
}

pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Done, RequestError>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Session not found")]
    NotFound,
    /// The old bridge's words, which ERP code may compare.
    #[error("Session not connected")]
    NotConnected,
    #[error("{0}")]
    Failed(String),
}

/// Runs the request on a live connection without holding up the
/// supervisor, or refuses it.
pub(crate) fn run_or_refuse<C: WaClient>(live: Option<C>, request: Request) {
    let Some(client) = live else {
        let _ = request.reply.send(Err(RequestError::NotConnected));
        return;
    };
    tokio::spawn(async move {
        let result = match request.op {
            Op::Send(message) => client.send(message).await.map(Done::Sent),
            Op::Query(query) => client.query(query).await.map(Done::Answer),
        };
        let _ = request.reply.send(result.map_err(RequestError::Failed));
    });
}
