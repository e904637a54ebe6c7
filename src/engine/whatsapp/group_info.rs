//! What the webhook needs of a group: its name and its members' numbers,
//! fetched from the server once per group and refreshed hourly, so a renamed
//! group reaches the ERP under its new name without a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use whatsapp_rust::Jid;
use whatsapp_rust::prelude::Client;

/// How long a fetched group is used before the next message fetches it
/// again.
const GROUP_INFO_TTL: Duration = Duration::from_secs(3600);
/// How long a message waits for its group's first metadata fetch.
const GROUP_FETCH_WAIT: Duration = Duration::from_secs(5);
/// A group is fetched out of turn (`GroupCache::refetch`) at most this often.
const REFETCH_PAUSE: Duration = Duration::from_secs(60);
/// After a failed fetch, messages of that group stop waiting for this long.
const GROUP_FETCH_PAUSE: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct GroupEntry {
    pub subject: String,
    pub numbers: MemberNumbers,
    /// The admins' user parts, each under every name the list gives
    /// (LID, phone number): a delete of another member's message is
    /// passed on only when an admin made it.
    admins: Vec<String>,
    fetched: Instant,
}

impl GroupEntry {
    /// Whether the member with user part `user` (LID or phone digits) is
    /// an admin.
    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.iter().any(|admin| admin == user)
    }
}

/// The phone numbers a group's participant list gives, by LID, as sorted
/// pairs of integers: 16 bytes a member. A map of strings took ~120, and a
/// process keeps this for every group of every session (50 groups of 100
/// members in the content benchmark: ~0.5 MiB a session).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MemberNumbers(Vec<(u64, u64)>);

impl MemberNumbers {
    /// From (LID digits, phone digits) pairs. A pair whose digits would not
    /// come back the same from an integer (a leading zero, more than 19
    /// digits) is left out: that member's number is then unknown here,
    /// never wrong.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut numbers: Vec<(u64, u64)> = pairs
            .into_iter()
            .filter_map(|(lid, pn)| Some((as_integer(lid)?, as_integer(pn)?)))
            .collect();
        numbers.sort_unstable();
        numbers.dedup_by_key(|(lid, _)| *lid);
        numbers.shrink_to_fit();
        MemberNumbers(numbers)
    }

    /// The phone digits of the member with LID digits `lid`.
    pub fn number_of(&self, lid: &str) -> Option<String> {
        let lid = as_integer(lid)?;
        let at = self.0.binary_search_by_key(&lid, |(l, _)| *l).ok()?;
        Some(self.0[at].1.to_string())
    }
}

fn as_integer(digits: &str) -> Option<u64> {
    let canonical = !digits.is_empty()
        && digits.len() <= 19
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    canonical.then(|| digits.parse().ok()).flatten()
}

/// Group metadata per session. The first message of a group waits for it
/// (bounded), as the old bridge did: its name and the members' numbers
/// belong on that message too.
#[derive(Default)]
pub struct GroupCache {
    entries: Mutex<HashMap<String, Arc<GroupEntry>>>,
    /// When a group's fetch last failed.
    failed: Mutex<HashMap<String, Instant>>,
    /// When a group was last fetched out of turn (`refetch`).
    refetched: Mutex<HashMap<String, Instant>>,
}

impl GroupCache {
    /// The group's entry: cached if fresh, else fetched; a stale one when
    /// the fetch fails (an old name beats none).
    pub async fn lookup(&self, client: &Arc<Client>, chat: &Jid) -> Option<Arc<GroupEntry>> {
        let key = chat.to_string();
        let cached = lock(&self.entries).get(&key).cloned();
        if let Some(entry) = cached.as_ref()
            && entry.fetched.elapsed() < GROUP_INFO_TTL
        {
            return cached;
        }
        if lock(&self.failed)
            .get(&key)
            .is_some_and(|at| at.elapsed() < GROUP_FETCH_PAUSE)
        {
            return cached;
        }
        let fetched = tokio::time::timeout(GROUP_FETCH_WAIT, client.groups().get_metadata(chat))
            .await
            .map_err(|_| format!("no answer within {GROUP_FETCH_WAIT:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        match fetched {
            Ok(metadata) => {
                let numbers = MemberNumbers::new(metadata.participants.iter().filter_map(|p| {
                    let lid = p.lid.as_ref().or(Some(&p.jid).filter(|j| j.is_lid()))?;
                    Some((lid.user.as_str(), p.phone_number.as_ref()?.user.as_str()))
                }));
                let admins = metadata
                    .participants
                    .iter()
                    .filter(|p| p.is_admin())
                    .flat_map(|p| [Some(&p.jid), p.lid.as_ref(), p.phone_number.as_ref()])
                    .flatten()
                    .map(|jid| jid.user.to_string())
                    .collect();
                let entry = Arc::new(GroupEntry {
                    subject: metadata.subject.clone(),
                    numbers,
                    admins,
                    fetched: Instant::now(),
                });
                lock(&self.entries).insert(key, entry.clone());
                Some(entry)
            }
            Err(e) => {
                tracing::warn!("cannot fetch group info of {chat}: {e}");
                lock(&self.failed).insert(key, Instant::now());
                cached
            }
        }
    }
}

impl GroupCache {
    /// The group fetched now, out of turn (a member just made admin acts
    /// before the hourly refresh), at most once a `REFETCH_PAUSE` per group
    /// so that a member forging admin actions cannot make us fetch on each
    /// one; `None` when paused or the fetch fails.
    pub async fn refetch(&self, client: &Arc<Client>, chat: &Jid) -> Option<Arc<GroupEntry>> {
        let key = chat.to_string();
        {
            let mut refetched = lock(&self.refetched);
            if refetched
                .get(&key)
                .is_some_and(|at| at.elapsed() < REFETCH_PAUSE)
            {
                return None;
            }
            refetched.insert(key.clone(), Instant::now());
        }
        lock(&self.entries).remove(&key);
        lock(&self.failed).remove(&key);
        self.lookup(client, chat).await
    }
}

/// A poisoned cache only means a panic elsewhere mid-insert; the map is fine.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_number_is_found_by_their_lid() {
        let numbers = MemberNumbers::new([
            ("236372948062329", "4917612345678"),
            ("100000000000001", "919075167132"),
        ]);
        assert_eq!(
            numbers.number_of("236372948062329").as_deref(),
            Some("4917612345678")
        );
        assert_eq!(
            numbers.number_of("100000000000001").as_deref(),
            Some("919075167132")
        );
        assert_eq!(numbers.number_of("555"), None);
    }

    #[test]
    fn digits_that_would_change_as_an_integer_are_left_out_not_altered() {
        let numbers = MemberNumbers::new([
            ("0123", "4917612345678"),
            ("236372948062329", "0049176"),
            ("12a", "4917612345678"),
            ("99999999999999999999", "4917612345678"),
        ]);
        assert_eq!(numbers, MemberNumbers::default());
        assert_eq!(numbers.number_of("0123"), None);
        assert_eq!(numbers.number_of("123"), None);
    }
}
