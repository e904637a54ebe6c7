//! The outbox against a simple model: random enqueue / head / ack / retry /
//! bury / replay / reopen sequences must keep per-session order, lose
//! nothing, never duplicate, and agree with the model's counts.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use wabridge::webhook::outbox::{Enqueued, Outbox};

#[derive(Debug, Clone)]
enum Op {
    Enqueue { session: u8, key: Option<u8> },
    Ack { session: u8 },
    Retry { session: u8 },
    Bury { session: u8 },
    ReplayFirstDead { session: u8 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let session = 0u8..3;
    prop_oneof![
        4 => (session.clone(), proptest::option::of(0u8..6)).prop_map(|(session, key)| Op::Enqueue { session, key }),
        3 => session.clone().prop_map(|session| Op::Ack { session }),
        1 => session.clone().prop_map(|session| Op::Retry { session }),
        1 => session.clone().prop_map(|session| Op::Bury { session }),
        1 => session.clone().prop_map(|session| Op::ReplayFirstDead { session }),
        1 => Just(Op::Reopen),
    ]
}

/// What the outbox should hold: per session, the live queue and the dead
/// letters (by body), plus every dedupe key ever accepted.
#[derive(Default)]
struct Model {
    live: BTreeMap<u8, VecDeque<String>>,
    dead: BTreeMap<u8, Vec<(String, String)>>,
    keys: std::collections::HashSet<(u8, u8)>,
}

fn name(session: u8) -> String {
    format!("s{session}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn outbox_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("outbox.db");
        let mut outbox = Outbox::open(&path).unwrap();
        let mut model = Model::default();
        let mut counter = 0u32;
        for op in ops {
            match op {
                Op::Enqueue { session, key } => {
                    counter += 1;
                    let body = format!("m{counter}");
                    let dedupe = key.map(|k| format!("{session}|{k}"));
                    let result = outbox.enqueue(&name(session), dedupe.as_deref(), body.as_bytes(), i64::from(counter)).unwrap();
                    let fresh = key.is_none_or(|k| model.keys.insert((session, k)));
                    prop_assert_eq!(matches!(result, Enqueued::New { .. }), fresh);
                    if fresh {
                        model.live.entry(session).or_default().push_back(body);
                    }
                }
                Op::Ack { session } => {
                    let head = outbox.head(&name(session)).unwrap();
                    let expected = model.live.entry(session).or_default().pop_front();
                    prop_assert_eq!(head.as_ref().map(|h| String::from_utf8(h.body.clone()).unwrap()), expected);
                    if let Some(head) = head {
                        outbox.ack(&[head.seq]).unwrap();
                    }
                }
                Op::Retry { session } => {
                    if let Some(head) = outbox.head(&name(session)).unwrap() {
                        outbox.retry_later(&[head.seq], head.next_attempt_ms + 1000, "HTTP 500").unwrap();
                        // Still the head: order is kept through retries.
                        let again = outbox.head(&name(session)).unwrap().unwrap();
                        prop_assert_eq!(again.seq, head.seq);
                        prop_assert_eq!(again.attempts, head.attempts + 1);
                    }
                }
                Op::Bury { session } => {
                    if let Some(head) = outbox.head(&name(session)).unwrap() {
                        outbox.bury(&[head.seq], "HTTP 400").unwrap();
                        let body = model.live.entry(session).or_default().pop_front().unwrap();
                        model.dead.entry(session).or_default().push((head.delivery_id, body));
                    }
                }
                Op::ReplayFirstDead { session } => {
                    let dead = model.dead.entry(session).or_default();
                    if !dead.is_empty() {
                        let (id, body) = dead.remove(0);
                        prop_assert!(outbox.replay(&name(session), &id, 0).unwrap());
                        // A replayed delivery goes back in its original place.
                        let live = model.live.entry(session).or_default();
                        live.push_back(body);
                        let mut sorted: Vec<String> = live.drain(..).collect();
                        sorted.sort_by_key(|b| b[1..].parse::<u32>().unwrap());
                        live.extend(sorted);
                    }
                }
                Op::Reopen => {
                    drop(outbox);
                    outbox = Outbox::open(&path).unwrap();
                }
            }
            for session in 0..3u8 {
                let backlog = outbox.backlog(&name(session)).unwrap();
                prop_assert_eq!(backlog.pending as usize, model.live.get(&session).map_or(0, VecDeque::len));
                prop_assert_eq!(backlog.dead as usize, model.dead.get(&session).map_or(0, Vec::len));
            }
        }
    }
}
