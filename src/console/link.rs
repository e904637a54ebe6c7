//! The dashboard's end of the feed, the same whether the service runs in
//! this process (channels to the console) or elsewhere (the socket, see
//! `client`): frames come in, requests go out.

use tokio::sync::mpsc;

use super::hub::{Console, NOTICE_QUEUE};
use super::wire::{Request, ServiceFrame};

/// What the dashboard hears.
#[derive(Debug)]
pub enum LinkEvent {
    Frame(Box<ServiceFrame>),
    /// The service went away (why); the link tries again by itself and a
    /// `backfill` follows when it is back.
    Gone(String),
    /// The link gave up for good (why): e.g. the service was replaced by one
    /// that speaks another protocol.
    Closed(String),
}

pub struct Link {
    pub events: mpsc::Receiver<LinkEvent>,
    pub requests: mpsc::Sender<Request>,
}

/// Requests a dashboard may have in flight before it is told to wait.
pub const REQUEST_QUEUE: usize = 32;
/// Frames buffered between the feed and the screen.
pub const EVENT_QUEUE: usize = 1024;

impl Link {
    /// The dashboard of the service in this process: the same attachment
    /// and requests as over the socket (`server.rs`), through channels.
    pub fn in_process(console: Console) -> Link {
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (requests, mut request_rx) = mpsc::channel::<Request>(REQUEST_QUEUE);
        tokio::spawn(async move {
            let mut attachment = console.attach();
            let (notice_tx, mut notices) = mpsc::channel(NOTICE_QUEUE);
            let mut frames = attachment.first_frames();
            loop {
                for frame in frames.drain(..) {
                    if event_tx
                        .send(LinkEvent::Frame(Box::new(frame)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                tokio::select! {
                    next = attachment.next(&console) => match next {
                        Some(next) => frames = next,
                        None => return,
                    },
                    Some(text) = notices.recv() => frames.push(ServiceFrame::Notice { text }),
                    request = request_rx.recv() => match request {
                        Some(request) => console.execute_detached(request, notice_tx.clone()),
                        None => return,
                    },
                }
            }
        });
        Link { events, requests }
    }
}
