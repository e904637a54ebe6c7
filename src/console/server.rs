//! The control socket: `<data dir>/wabridge.sock`, where `wabridge attach`
//! reaches the running service. Local only, and only for the user who owns
//! the data dir: the socket is 0600 inside the 0700 data dir, and each
//! connection's peer credentials are checked as well (root is let in: it
//! can read the data dir anyway).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::hub::{Console, NOTICE_QUEUE};
use super::wire::{
    self, DashboardFrame, MAX_REQUEST_LINE, PROTOCOL, ReadError, ServiceFrame, write_frame,
};
use crate::paths::DataDir;

/// How long a dashboard has to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the dashboard socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the socket and serves dashboards until the task is aborted. Only
/// the process holding the data dir's lock may call this: a socket file
/// already there is a crashed run's, and is replaced.
pub fn serve(console: Console, data: &DataDir) -> Result<JoinHandle<()>, ServeError> {
    let path = data.console_socket();
    let bind_error = |source| ServeError::Bind {
        path: path.clone(),
        source,
    };
    let owner = std::fs::metadata(data.root()).map_err(bind_error)?.uid();
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    let listener = UnixListener::bind(&path).map_err(bind_error)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    tracing::info!("dashboard socket on {} (wabridge attach)", path.display());
    Ok(tokio::spawn(accept(listener, console, owner, path)))
}

async fn accept(listener: UnixListener, console: Console, owner: u32, path: PathBuf) {
    let _remove = RemoveOnDrop(path);
    // Dropped with this task: stopping the server hangs up on every
    // dashboard, which then says the service is gone.
    let mut dashboards = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: try again shortly.
                    tracing::warn!("dashboard socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // Reap the ended ones, so the set does not grow.
            Some(_) = dashboards.join_next(), if !dashboards.is_empty() => continue,
        };
        let console = console.clone();
        dashboards.spawn(async move {
            match serve_dashboard(console, stream, owner).await {
                Ok(()) | Err(ReadError::Closed) => {
                    tracing::debug!("a dashboard detached")
                }
                Err(e) => tracing::warn!("a dashboard's connection ended: {e}"),
            }
        });
    }
}

/// The socket goes with the service (its task), so `wabridge` started
/// later does not mistake a stopped service for a running one.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether `uid` may attach to a data dir owned by `owner`.
fn allowed(uid: u32, owner: u32) -> bool {
    uid == owner || uid == 0
}

async fn serve_dashboard(
    console: Console,
    stream: UnixStream,
    owner: u32,
) -> Result<(), ReadError> {
    let peer = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if !allowed(peer, owner) {
        let reason = format!("user {peer} does not own this data dir (user {owner} does)");
        let _ = write_frame(
            &mut write,
            &ServiceFrame::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, reason).into());
    }
    write_frame(
        &mut write,
        &ServiceFrame::Hello {
            protocol: PROTOCOL,
            service: wire::this_version(),
            pid: std::process::id(),
        },
    )
    .await?;
    let hello = tokio::time::timeout(HELLO_WITHIN, wire::read_frame(&mut read, MAX_REQUEST_LINE))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no hello in time"))??;
    match hello {
        DashboardFrame::Hello { protocol, .. } if protocol == PROTOCOL => {}
        DashboardFrame::Hello { protocol, client } => {
            let reason = format!(
                "this service ({}) speaks dashboard protocol {PROTOCOL}; {client} speaks {protocol}: attach with the same version of wabridge as the service",
                wire::this_version()
            );
            let _ = write_frame(
                &mut write,
                &ServiceFrame::Refused {
                    reason: reason.clone(),
                },
            )
            .await;
            return Err(std::io::Error::other(reason).into());
        }
        DashboardFrame::Request { .. } => {
            return Err(std::io::Error::other("a request before hello").into());
        }
    }

    let mut attachment = console.attach();
    for frame in attachment.first_frames() {
        write_frame(&mut write, &frame).await?;
    }
    let (notice_tx, mut notices) = mpsc::channel(NOTICE_QUEUE);
    let mut requests = tokio::spawn(read_requests(console.clone(), read, notice_tx));
    loop {
        tokio::select! {
            frames = attachment.next(&console) => {
                let Some(frames) = frames else { break };
                for frame in frames {
                    write_frame(&mut write, &frame).await?;
                }
            }
            Some(text) = notices.recv() => {
                write_frame(&mut write, &ServiceFrame::Notice { text }).await?;
            }
            ended = &mut requests => {
                return ended.unwrap_or(Err(ReadError::Closed));
            }
        }
    }
    requests.abort();
    Ok(())
}

/// Carries out one dashboard's requests until it hangs up (or sends
/// something that is not a request: then its connection is closed).
async fn read_requests(
    console: Console,
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    notices: mpsc::Sender<String>,
) -> Result<(), ReadError> {
    loop {
        let request = match wire::read_frame(&mut read, MAX_REQUEST_LINE).await? {
            DashboardFrame::Request { request } => request,
            DashboardFrame::Hello { .. } => {
                return Err(std::io::Error::other("a second hello").into());
            }
        };
        console.execute_detached(request, notices.clone());
    }
}
