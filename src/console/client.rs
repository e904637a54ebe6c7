//! `wabridge attach`'s end of the socket: connects, says hello, and turns
//! the service's frames into a `Link` for the dashboard. When the service
//! goes away (a restart, a crash) the link says so and keeps trying; when
//! it is back, its backfill brings the dashboard up to date.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::link::{EVENT_QUEUE, Link, LinkEvent, REQUEST_QUEUE};
use super::wire::{
    self, DashboardFrame, MAX_SERVICE_LINE, PROTOCOL, ReadError, Request, ServiceFrame, write_frame,
};

/// How often a link whose service went away tries again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no wabridge service is running on this data dir (nothing answers on {0})")]
    NoService(PathBuf),
    #[error("the service refused this dashboard: {0}")]
    Refused(String),
    #[error("cannot attach through {path}: {detail}")]
    Failed { path: PathBuf, detail: String },
}

/// One handshaken connection: the service's hello, then the stream.
struct Attached {
    hello: ServiceFrame,
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

/// Attaches to the service on `path`; fails at once when none answers.
pub async fn attach(path: &Path) -> Result<Link, AttachError> {
    let first = handshake(path).await?;
    let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
    let (requests, request_rx) = mpsc::channel(REQUEST_QUEUE);
    tokio::spawn(run(path.to_path_buf(), first, event_tx, request_rx));
    Ok(Link { events, requests })
}

async fn handshake(path: &Path) -> Result<Attached, AttachError> {
    let failed = |detail: String| AttachError::Failed {
        path: path.to_path_buf(),
        detail,
    };
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                AttachError::NoService(path.to_path_buf())
            }
            _ => failed(e.to_string()),
        })?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let hello: ServiceFrame = wire::read_frame(&mut read, MAX_SERVICE_LINE)
        .await
        .map_err(|e| failed(e.to_string()))?;
    match &hello {
        ServiceFrame::Hello { protocol, .. } if *protocol == PROTOCOL => {}
        ServiceFrame::Hello {
            protocol, service, ..
        } => {
            return Err(AttachError::Refused(format!(
                "the running service ({service}) speaks dashboard protocol {protocol}, this dashboard ({}) speaks {PROTOCOL}: attach with the same version of wabridge as the service",
                wire::this_version()
            )));
        }
        ServiceFrame::Refused { reason } => return Err(AttachError::Refused(reason.clone())),
        other => return Err(failed(format!("expected a hello, got {other:?}"))),
    }
    let ours = DashboardFrame::Hello {
        protocol: PROTOCOL,
        client: wire::this_version(),
    };
    write_frame(&mut write, &ours)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(Attached { hello, read, write })
}

/// Feeds the dashboard from one connection after another until the
/// dashboard goes away.
async fn run(
    path: PathBuf,
    first: Attached,
    events: mpsc::Sender<LinkEvent>,
    mut requests: mpsc::Receiver<Request>,
) {
    let mut current = first;
    loop {
        if events
            .send(LinkEvent::Frame(Box::new(current.hello.clone())))
            .await
            .is_err()
        {
            return;
        }
        let why = match relay(current, &events, &mut requests).await {
            Some(why) => why,
            None => return,
        };
        if events.send(LinkEvent::Gone(why)).await.is_err() {
            return;
        }
        current = loop {
            tokio::select! {
                _ = tokio::time::sleep(RETRY_EVERY) => {}
                request = requests.recv() => {
                    let Some(_) = request else { return };
                    let text = "not sent: the service is not running".to_string();
                    if events.send(LinkEvent::Frame(Box::new(ServiceFrame::Notice { text }))).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
            match handshake(&path).await {
                Ok(attached) => break attached,
                Err(AttachError::Refused(why)) => {
                    let _ = events.send(LinkEvent::Closed(why)).await;
                    return;
                }
                Err(_) => {}
            }
        };
    }
}

/// Passes frames in and requests out until the connection ends (returns
/// why) or the dashboard is gone (None). Frames are read by a task of their
/// own: a read interrupted half-way would lose part of a line.
async fn relay(
    attached: Attached,
    events: &mpsc::Sender<LinkEvent>,
    requests: &mut mpsc::Receiver<Request>,
) -> Option<String> {
    let Attached {
        mut read,
        mut write,
        ..
    } = attached;
    let frames = events.clone();
    let mut reader = tokio::spawn(async move {
        loop {
            match wire::read_frame::<_, ServiceFrame>(&mut read, MAX_SERVICE_LINE).await {
                Ok(frame) => frames.send(LinkEvent::Frame(Box::new(frame))).await.ok()?,
                Err(ReadError::Closed | ReadError::ClosedMidFrame) => {
                    return Some("the service went away".to_string());
                }
                Err(e) => return Some(format!("lost the service: {e}")),
            }
        }
    });
    let why = loop {
        tokio::select! {
            ended = &mut reader => break ended.ok().flatten(),
            request = requests.recv() => {
                let Some(request) = request else { break None };
                if let Err(e) = write_frame(&mut write, &DashboardFrame::Request { request }).await {
                    break Some(format!("lost the service: {e}"));
                }
            }
        }
    };
    reader.abort();
    why
}
