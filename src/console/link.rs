//! The dashboard's end of the feed, the same whether the service runs in
//! this process (channels to the console) or elsewhere (the socket, see
//! `client`): frames come in, requests go out.

use tokio::sync::mpsc;

use super::hub::Console;
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
    /// The dashboard of the service in this process.
    pub fn in_process(console: Console) -> Link {
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (requests, mut request_rx) = mpsc::channel::<Request>(REQUEST_QUEUE);
        let feed_console = console.clone();
        let notices = event_tx.clone();
        tokio::spawn(async move {
            let mut attachment = feed_console.attach();
            let backfill = ServiceFrame::Backfill(attachment.backfill.clone());
            if event_tx
                .send(LinkEvent::Frame(Box::new(backfill)))
                .await
                .is_err()
            {
                return;
            }
            while let Some(frames) = attachment.next(&feed_console).await {
                for frame in frames {
                    if event_tx
                        .send(LinkEvent::Frame(Box::new(frame)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some(request) = request_rx.recv().await {
                let console = console.clone();
                let notices = notices.clone();
                // Never hold the next request behind a slow one (a logout).
                tokio::spawn(async move {
                    if let Err(text) = console.execute(request).await {
                        let _ = notices
                            .send(LinkEvent::Frame(Box::new(ServiceFrame::Notice { text })))
                            .await;
                    }
                });
            }
        });
        Link { events, requests }
    }
}
