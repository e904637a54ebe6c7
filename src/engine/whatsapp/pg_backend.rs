//! The WhatsApp backend over the shared PostgreSQL store (`pg_store`)
//! instead of each session's SQLite file: the same client, the same
//! settings, another `Backend` under it.

use std::sync::Arc;

use deadpool_postgres::Pool;

use super::pg_store::PgStore;
use super::{WhatsAppBackend, WhatsAppClient};
use crate::engine::backend::{EventSink, OpenError, OpenOptions, WaBackend};
use crate::paths::SessionId;
use crate::session_files::SessionFiles;

/// The fence counter of this host's lease on a session, `None` when it
/// holds none (its store must not be opened then).
pub type FenceSource = Arc<dyn Fn(&SessionId) -> Option<u64> + Send + Sync>;

#[derive(Clone)]
pub struct PgBackend {
    /// Connection settings, as for SQLite.
    pub whatsapp: WhatsAppBackend,
    /// Shared by every session of the process; the schema is migrated.
    pub pool: Pool,
    pub fences: FenceSource,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("whatsapp", &self.whatsapp)
            .finish_non_exhaustive()
    }
}

impl WaBackend for PgBackend {
    type Client = WhatsAppClient;

    async fn server_reachable(&self, within: std::time::Duration) -> bool {
        self.whatsapp.server_reachable(within).await
    }

    /// A fenced delete of the session's rows in the store (not its lease
    /// nor its entry in `cluster_sessions`): under the fence this host
    /// holds now, refused when it holds none or the lease moved on.
    async fn delete_credentials(&self, id: &SessionId) -> Result<(), String> {
        let fence =
            (self.fences)(id).ok_or_else(|| format!("this host holds no lease on session {id}"))?;
        PgStore::open(self.pool.clone(), id.as_str(), fence)
            .wipe_session()
            .await
            .map_err(|e| with_causes(&e))
    }

    async fn open(
        &self,
        files: &SessionFiles,
        options: OpenOptions,
        events: EventSink,
    ) -> Result<WhatsAppClient, OpenError> {
        let fence = (self.fences)(&files.id).ok_or_else(|| {
            OpenError::Other(format!("this host holds no lease on session {}", files.id))
        })?;
        let store = PgStore::open(self.pool.clone(), files.id.as_str(), fence);
        let mut client = self
            .whatsapp
            .open_over(&files.id, Arc::new(store), options, events)
            .await?;
        // Every later connection of this client too needs the lease still
        // held at this fence: a host that lost it (stalled past it, say)
        // never reconnects, even before its session is stopped.
        let (fences, id) = (self.fences.clone(), files.id.clone());
        client.may_connect = Some(Arc::new(move || fences(&id) == Some(fence)));
        Ok(client)
    }
}

/// An error and what caused it, on one line (a store error's own message
/// does not say that it was fenced).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
