//! The simulator's media host: where the client uploads encrypted media
//! and downloads what people send. It is handed to the client as its HTTP
//! client (the library's seam for media), since the real hosts are HTTPS
//! on the internet; what it stores stays in memory.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::wacore::net::StreamingHttpResponse;

/// The one host the simulator's `media_conn` names.
pub const HOST: &str = "media.sim";

#[derive(Clone, Default)]
pub struct MediaHost {
    /// Direct path → encrypted bytes.
    blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Bytes of stored media the client has read, over all downloads.
    served: Arc<AtomicU64>,
}

impl MediaHost {
    /// Stores `bytes` as a person's phone uploads them; returns the direct path.
    pub fn put(&self, bytes: Vec<u8>) -> String {
        let mut blobs = self.blobs.lock().unwrap();
        let path = format!("/d/{}", blobs.len() + 1);
        blobs.insert(path.clone(), bytes);
        path
    }

    pub fn get(&self, direct_path: &str) -> Option<Vec<u8>> {
        self.blobs.lock().unwrap().get(direct_path).cloned()
    }

    /// How many bytes of media downloads the client has read so far: a
    /// client that stops reading what it will not keep reads less than it
    /// was offered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

/// A download body that counts what the client actually reads.
struct Counted {
    bytes: std::io::Cursor<Vec<u8>>,
    served: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Small chunks, as a network would hand them over.
        let len = buf.len().min(16 * 1024);
        let n = self.bytes.read(&mut buf[..len])?;
        self.served.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

/// The path part of a URL, without scheme, host and query.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("/", |at| &rest[at..]);
    path.split('?').next().unwrap_or(path)
}

#[whatsapp_rust::async_trait]
impl HttpClient for MediaHost {
    async fn execute(&self, request: HttpRequest) -> whatsapp_rust::anyhow::Result<HttpResponse> {
        let response = |status_code, body: Vec<u8>| HttpResponse { status_code, body };
        if request.method == "POST" && path_of(&request.url).starts_with("/mms/") {
            if request.url.contains("resume=1") {
                return Ok(response(404, b"{}".to_vec()));
            }
            let path = self.put(request.body.map(|b| b.to_vec()).unwrap_or_default());
            let body = serde_json::json!({
                "url": format!("https://{HOST}{path}"),
                "direct_path": path,
            });
            return Ok(response(200, body.to_string().into_bytes()));
        }
        Ok(match self.get(path_of(&request.url)) {
            Some(bytes) => {
                self.served.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                response(200, bytes)
            }
            None => response(404, Vec::new()),
        })
    }

    fn supports_streaming(&self) -> bool {
        true
    }

    fn execute_streaming(
        &self,
        request: HttpRequest,
    ) -> whatsapp_rust::anyhow::Result<StreamingHttpResponse> {
        let (status_code, bytes) = match self.get(path_of(&request.url)) {
            Some(bytes) => (200, bytes),
            None => (404, Vec::new()),
        };
        Ok(StreamingHttpResponse {
            status_code,
            body: Box::new(Counted {
                bytes: std::io::Cursor::new(bytes),
                served: self.served.clone(),
            }),
        })
    }
}
