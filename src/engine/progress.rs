//! Delivery progress of the messages we sent, as the old bridge reported
//! it: Sent → Delivered → Read, never backwards. The library reports the
//! server's ack and the recipient's receipts on different paths, so a
//! "Delivered" can overtake its "Sent"; an ERP that stores the latest
//! status must not see it fall back.

use std::collections::{HashMap, VecDeque};

/// How many recent messages' progress is remembered; older ones are
/// forgotten (their later receipts are posted as they come).
pub const REMEMBERED: usize = 4096;

#[derive(Debug, Default)]
pub struct MessageProgress {
    furthest: HashMap<String, u8>,
    /// Ids in the order first seen, to forget the oldest.
    order: VecDeque<String>,
}

fn rank(status: &str) -> u8 {
    match status {
        "Sent" => 1,
        "Delivered" => 2,
        "Read" => 3,
        _ => 0,
    }
}

impl MessageProgress {
    /// True when `status` takes message `id` further than anything posted
    /// for it so far (then it is remembered as posted).
    pub fn advance(&mut self, id: &str, status: &str) -> bool {
        let rank = rank(status);
        match self.furthest.get_mut(id) {
            Some(furthest) if *furthest >= rank => false,
            Some(furthest) => {
                *furthest = rank;
                true
            }
            None => {
                if self.order.len() == REMEMBERED
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.furthest.remove(&oldest);
                }
                self.order.push_back(id.to_string());
                self.furthest.insert(id.to_string(), rank);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_only_moves_forward() {
        let mut progress = MessageProgress::default();
        assert!(progress.advance("a", "Delivered"));
        assert!(!progress.advance("a", "Sent"), "a late server ack");
        assert!(!progress.advance("a", "Delivered"), "a repeated receipt");
        assert!(progress.advance("a", "Read"));
        assert!(progress.advance("b", "Sent"), "each message on its own");
    }

    #[test]
    fn memory_is_bounded() {
        let mut progress = MessageProgress::default();
        for n in 0..REMEMBERED + 10 {
            progress.advance(&n.to_string(), "Read");
        }
        assert_eq!(progress.furthest.len(), REMEMBERED);
        assert!(progress.advance("0", "Sent"), "the oldest was forgotten");
    }
}
