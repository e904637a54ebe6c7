//! A TCP proxy on 127.0.0.1 that delays everything it forwards, each way,
//! by a fixed time: a slow link (a congested mobile network, a satellite
//! hop) for the client in front of it, where the kernel here has no netem.
//! Bytes keep their order and are never held longer than the delay; the
//! bandwidth is loopback's.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct DelayProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `target`,
    /// `delay` late in each direction.
    pub async fn start(target: SocketAddr, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        forward(client_read, server_write, delay),
                        forward(server_read, client_write, delay),
                    );
                });
            }
        });
        DelayProxy { addr, task }
    }

    /// The WebSocket URL of the simulator behind the proxy.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads `from`, and writes each chunk to `to` once `delay` has passed
/// since it was read; an end of stream is passed on the same way.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = from.read(&mut buffer).await.unwrap_or(0);
            // An empty chunk stands for the end of the stream.
            let _ = chunks.send((Instant::now() + delay, buffer[..read].to_vec()));
            if read == 0 {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if chunk.is_empty() || to.write_all(&chunk).await.is_err() {
                let _ = to.shutdown().await;
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
