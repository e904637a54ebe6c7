//! `GET /media/<id>`: a file the webhook named by URL (a session in media
//! URL mode), streamed from disk with the API's own auth in front. The
//! sender chose its type and name, so it is served as a download that a
//! browser never renders or sniffs: a customer's HTML cannot run as our
//! origin.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;

use super::{ApiError, ApiState};

const CHUNK: usize = 64 * 1024;

pub async fn get(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such media: unknown, expired or removed to stay within [media] max_bytes",
        )
        .into_response()
    };
    let Some(store) = state.media.clone() else {
        return unknown();
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let opened = tokio::task::spawn_blocking(move || store.open_file(&id, now_ms)).await;
    let Ok(Some((file, meta))) = opened else {
        return unknown();
    };
    let file = tokio::fs::File::from_std(file);
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&meta.mimetype)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition(meta.filename.as_deref()))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    response
}

/// `attachment; filename="…"` with what is safe of the sender's name.
fn disposition(filename: Option<&str>) -> String {
    let safe: String = filename
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| !matches!(c, '"' | '\\' | '/'))
        .collect();
    if safe.trim().is_empty() {
        "attachment".to_string()
    } else {
        format!("attachment; filename=\"{safe}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::disposition;

    #[test]
    fn the_senders_file_name_cannot_break_the_header() {
        assert_eq!(
            disposition(Some("in\"voice\r\n.pdf")),
            "attachment; filename=\"invoice.pdf\""
        );
        assert_eq!(
            disposition(Some("../../x")),
            "attachment; filename=\"....x\""
        );
        assert_eq!(disposition(None), "attachment");
    }
}
