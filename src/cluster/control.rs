//! What an operator asks of the cluster through one host (its API or its
//! dashboard), recorded in the database where every host reads it: the
//! host serving a session applies it at its next renewal, and a session no
//! host serves is taken by this one now.

use std::sync::Arc;

use super::store::{AddError, PgLeases};
use crate::engine::Engine;
use crate::paths::SessionId;

/// This host's handle on the cluster for the operator's requests.
#[derive(Clone)]
pub struct ClusterControl {
    /// This host's name, shown as `node` on each session it serves.
    pub node: String,
    /// The shared session list and its leases.
    pub leases: PgLeases,
    /// Asks this host's lease manager to take new sessions now instead of
    /// at its next round.
    pub take_now: Arc<dyn Fn() + Send + Sync>,
}

impl ClusterControl {
    /// The dashboard's "add a session" and "set its webhook": recorded in
    /// the cluster's row *without* clearing a logout (as on one host, where
    /// neither starts a logged-out session again; the API's start does).
    /// A session served here gets the new webhook at once; one served
    /// elsewhere at its host's next renewal; one no host serves is taken
    /// here now. The answer is a sentence for the operator when the
    /// request waits on another host.
    pub async fn declare(
        &self,
        engine: &Engine,
        id: &SessionId,
        webhook_url: Option<String>,
        webhook_token: Option<String>,
    ) -> Result<Option<String>, String> {
        self.leases
            .declare_session(id, webhook_url.as_deref(), webhook_token.as_deref())
            .await
            .map_err(|e| match e {
                AddError::BeingDeleted => format!("{id}: {e}"),
                AddError::Database(e) => format!("{id}: cannot save it in the cluster: {e:#}"),
            })?;
        if engine.watch(id).is_some() {
            if webhook_url.is_some() || webhook_token.is_some() {
                engine
                    .add_session(id, webhook_url, webhook_token)
                    .map_err(|e| format!("{id}: {e}"))?;
            }
            return Ok(None);
        }
        (self.take_now)();
        let owner = self.leases.owner(id).await.ok().flatten();
        Ok(owner
            .filter(|node| *node != self.node)
            .map(|node| format!("{id}: saved; {node} serves it and applies it within seconds")))
    }
}
