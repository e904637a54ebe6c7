//! The realistic-content variant (issue #15): idle sessions flatter
//! everyone, so here each session first receives what a busy account holds.
//! Per session, through the simulator and Signal-encrypted as WhatsApp
//! delivers them: 500 people each write a 1:1 text (a `pkmsg` against the
//! device's pre-keys: 500 Signal sessions on the client), and 50 groups of
//! 100 members each (5,000 distinct people, whose LID↔number pairs the
//! group metadata the server answers carries) get 10 messages each from
//! members who are among those 500 writers (so the sessions stay 500), each
//! with its sender key beside it as a first group message from a sender
//! has: 1,000 messages. Senders are LIDs with their numbers attached
//! (`Addressing::LidWithPn`), which also teaches the clients LID mappings.
//!
//! A run sends every session's messages, waits until the simulator has a
//! receipt for each (the client decrypted and, for wabridge, persisted it)
//! and until they reached wabridge's webhook receiver or were counted by the
//! Baileys peer, then idles `SETTLE` and reads VmRSS, as the idle table does.

use super::{
    BaileysPeer, NodeChild, SESSIONS, copy_sessions, idle_and_measure, logins, mib, name,
    start_binary, stop, vm_rss_kib, write_config,
};

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wabridge::paths::DataDir;
use wabridge_sim::receiver::{Received, Receiver};
use wabridge_sim::sim::{Addressing, Person, Simulator};

pub const COUNTS: [usize; 3] = [1, 20, SESSIONS];
const GROUPS: usize = 50;
/// Per group; no one is in two groups of a session.
const MEMBERS: usize = 100;
/// Per group, each written by another of its first members.
const GROUP_MESSAGES: usize = 10;
/// People who write 1:1: the group writers, so Signal sessions stay 500.
const WRITERS: usize = GROUPS * GROUP_MESSAGES;
/// Per session: one 1:1 text from each writer, and the group messages.
const MESSAGES: usize = WRITERS + GROUPS * GROUP_MESSAGES;
/// Sessions being sent to at once.
const FEEDERS: usize = 20;
/// A session's messages sent and not yet receipted, at most. People's
/// messages reach a device over time, not 1,000 in one burst: sent all at
/// once, Baileys decrypts every one of them concurrently and its heap
/// reaches Node's 4 GiB limit at 100 sessions (it then crawls), which says
/// nothing about the state it holds afterwards.
const WINDOW: usize = 20;
/// How long a run's messages may take to be receipted.
const FEED_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long the webhook (or the peer's count) may lag behind the receipts.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a slow wait says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Member `index` of group `group` of the `slot`-th session of a run (of
/// either stack). People and groups are per slot, and the simulator's
/// people keep their Signal sessions between runs: each run starts its
/// clients from fresh copies of prepared state, which never had those
/// sessions, so a run first has the simulator forget every session with
/// its devices (`Simulator::forget_sessions`) rather than using new people
/// each run (121 more sets of 500 Signal identities and 5,000 members in
/// the bench process). The devices' uploaded pre-keys stay: a device used
/// in an earlier run gets the one-time pre-keys left, then bundles with
/// only the signed pre-key, which is valid Signal.
fn member(slot: usize, group: usize, index: usize) -> Person {
    let n = (slot * GROUPS + group) * MEMBERS + index;
    Person::numbered(u32::try_from(n).unwrap())
}

fn group_jid(slot: usize, group: usize) -> String {
    format!("120363{:012}@g.us", slot * 1000 + group)
}

/// Makes the server know every slot's groups, members and numbers.
fn add_groups(sim: &Simulator) {
    for slot in 0..SESSIONS {
        for group in 0..GROUPS {
            let members: Vec<Person> = (0..MEMBERS).map(|i| member(slot, group, i)).collect();
            let subject = format!("Shop {slot} team {group}");
            sim.add_group(&group_jid(slot, group), &subject, &members);
        }
    }
}

/// `COUNTS`, or the list in `SESSIONS_RSS_CONTENT` (e.g. `1,20`; `none`
/// or anything without a number: no table).
fn counts() -> Vec<usize> {
    match std::env::var("SESSIONS_RSS_CONTENT") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .filter(|n| (1..=SESSIONS).contains(n))
            .collect(),
        Err(_) => COUNTS.to_vec(),
    }
}

/// One measured process with content.
struct Fed {
    /// First message sent → every message receipted.
    receipted: Duration,
    /// Distinct messages that reached the webhook (wabridge), or that the
    /// peer counted (Baileys); decrypted ones only (a run with undecryptable
    /// ones fails).
    delivered: usize,
    rss_kib: u64,
    /// Every login stayed the same socket from all open to the reading.
    stayed: bool,
}

/// Measures wabridge and (unless skipped) the peer with `COUNTS` sessions
/// holding content, and prints the second table.
pub async fn measure(
    sim: &Simulator,
    paired: &DataDir,
    scratch: &Path,
    peer: Option<&BaileysPeer>,
) {
    let counts = counts();
    if counts.is_empty() {
        return;
    }
    add_groups(sim);
    println!();
    println!(
        "with content (each session: {MESSAGES} messages received from {WRITERS} people, \
         {GROUPS} groups × {MEMBERS} members):"
    );
    let columns = format!("{:>13}  {:>11}  {:>9} ", "receipted in", "RSS", "delivered");
    println!(
        "{:8} │ {:<38} │ {:<38} │",
        "", "wabridge (delivered: at the webhook)", "Baileys (delivered: decrypted)"
    );
    println!("sessions │ {columns} │ {columns} │ RSS ratio");
    let peer_devices = peer.map_or(0..0, BaileysPeer::devices);
    let mut figures = Vec::new();
    for count in counts {
        let ours = run_binary(sim, paired, scratch, count, peer_devices.clone()).await;
        let theirs = match peer {
            Some(peer) => Some(run_peer(peer, sim, scratch, count).await),
            None => None,
        };
        print_row(count, &ours, theirs.as_ref());
        figures.push((count, ours.ok(), theirs.and_then(Result::ok)));
    }
    print_per_session(&figures);
}

fn print_row(count: usize, ours: &Result<Fed, String>, theirs: Option<&Result<Fed, String>>) {
    let side = |run: &Result<Fed, String>| match run {
        Ok(run) => format!(
            "{:>12.1}s  {:>7.1} MiB  {:>9}{}",
            run.receipted.as_secs_f64(),
            mib(run.rss_kib),
            run.delivered,
            if run.stayed { " " } else { "!" }
        ),
        Err(_) => format!("{:>38}", "failed"),
    };
    let ratio = match (ours, theirs) {
        (Ok(ours), Some(Ok(theirs))) => {
            format!("{:.2}", ours.rss_kib as f64 / theirs.rss_kib as f64)
        }
        _ => "-".into(),
    };
    let baileys = theirs.map_or(format!("{:>38}", "skipped"), side);
    println!("{count:>8} │ {} │ {baileys} │ {ratio:>9}", side(ours));
    let stayed = |run: &Result<Fed, String>| run.as_ref().is_ok_and(|r| r.stayed);
    if ours.is_ok() && !stayed(ours) || theirs.is_some_and(|t| t.is_ok() && !stayed(t)) {
        println!("  (!: a session dropped or reconnected while it was fed or idle)");
    }
    for (who, run) in [("wabridge", Some(ours)), ("Baileys", theirs)] {
        if let Some(Err(why)) = run {
            println!("  {who} with {count}: {why}");
        }
    }
}

/// What one more session with content costs each side, from 1 to `SESSIONS`.
fn print_per_session(figures: &[(usize, Option<Fed>, Option<Fed>)]) {
    let at = |n: usize| figures.iter().find(|(c, ..)| *c == n);
    let (Some((_, ours_1, theirs_1)), Some((_, ours_n, theirs_n))) = (at(1), at(SESSIONS)) else {
        return;
    };
    let per = |one: &Option<Fed>, many: &Option<Fed>| match (one, many) {
        (Some(one), Some(many)) => {
            Some((many.rss_kib as f64 - one.rss_kib as f64) / (SESSIONS - 1) as f64)
        }
        _ => None,
    };
    let show = |kib: Option<f64>| kib.map_or("-".into(), |k| format!("{k:.0} KiB"));
    let (ours, theirs) = (per(ours_1, ours_n), per(theirs_1, theirs_n));
    let ratio = match (ours, theirs) {
        (Some(o), Some(t)) => format!(" (ratio {:.2})", o / t),
        _ => String::new(),
    };
    println!(
        "per extra session with content (1 → {SESSIONS}): wabridge {}, Baileys {}{ratio}",
        show(ours),
        show(theirs)
    );
}

/// wabridge on fresh copies of the first `count` paired sessions, each with
/// a webhook to a receiver on 127.0.0.1, started as the idle table starts
/// it; fed, then measured.
async fn run_binary(
    sim: &Simulator,
    paired: &DataDir,
    scratch: &Path,
    count: usize,
    peer_devices: std::ops::Range<u32>,
) -> Result<Fed, String> {
    let data = scratch.join(format!("content-{count}"));
    copy_sessions(paired.root(), &data, count);
    let receiver = Receiver::start().await;
    let config_path = scratch.join(format!("content-config-{count}.toml"));
    let config = write_config(sim, &config_path, &webhooks(count, &receiver.url()));
    let (mut child, _) = start_binary(&data, &config, scratch, count);
    let mine = |d: u32| !peer_devices.contains(&d);
    let fed = async {
        let devices = live_devices(sim, count, mine).await?;
        let at_open = logins(sim, mine);
        let mut alive = || match child.try_wait() {
            Ok(None) => Ok(()),
            ended => Err(format!("wabridge ended: {ended:?}")),
        };
        let receipted = feed(sim, &devices, "wabridge", &mut alive).await?;
        wait_counted(count, || Ok(receiver.upserted_messages())).await?;
        let (rss_kib, _, stayed) = idle_and_measure(&child, at_open, || logins(sim, mine));
        let delivered = webhook_texts(&receiver)?;
        Ok(Fed {
            receipted,
            delivered,
            rss_kib,
            stayed,
        })
    }
    .await;
    stop(child);
    fed
}

/// The distinct messages at `receiver` (by session and id); an error if
/// some were notices of messages wabridge could not decrypt.
fn webhook_texts(receiver: &Receiver) -> Result<usize, String> {
    let mut ids = std::collections::HashSet::new();
    let mut unreadable = 0;
    for body in receiver.received().iter().map(Received::json) {
        if body["event"] != "messages.upsert" {
            continue;
        }
        for message in body["messages"].as_array().into_iter().flatten() {
            let text = message["text"].as_str().unwrap_or_default();
            if ids.insert((body["sessionId"].to_string(), message["id"].to_string()))
                && text.starts_with("[unreadable")
            {
                unreadable += 1;
            }
        }
    }
    match unreadable {
        0 => Ok(ids.len()),
        n => Err(format!("{n} of {} messages unreadable", ids.len())),
    }
}

/// `[[sessions]]` giving the first `count` sessions a webhook to `url`.
fn webhooks(count: usize, url: &str) -> String {
    (0..count)
        .map(|n| {
            format!(
                "[[sessions]]\nid = \"{}\"\nwebhook_url = \"{url}\"\nwebhook_token = \"bench\"\n",
                name(n)
            )
        })
        .collect()
}

/// The devices of the `count` logins `mine` picks, in order, once there are
/// exactly that many (a previous process's may linger for a moment).
async fn live_devices(
    sim: &Simulator,
    count: usize,
    mine: impl Fn(u32) -> bool,
) -> Result<Vec<u32>, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let devices: BTreeSet<u32> = sim
            .live_logins()
            .into_iter()
            .map(|(_, device)| device)
            .filter(|&d| mine(d))
            .collect();
        if devices.len() == count {
            return Ok(devices.into_iter().collect());
        }
        if Instant::now() > deadline {
            return Err(format!("{} devices logged in, not {count}", devices.len()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The peer on fresh copies of its first `count` auth folders, fed, then
/// measured as wabridge is.
async fn run_peer(
    peer: &BaileysPeer,
    sim: &Simulator,
    scratch: &Path,
    count: usize,
) -> Result<Fed, String> {
    let auth = scratch.join(format!("baileys-content-{count}"));
    for i in 0..count {
        let folder = format!("session-{i}");
        copy_folder(&peer.auth.join(&folder), &auth.join(&folder))?;
    }
    let mut node = peer.spawn(&sim.ws_url(), count, &auth)?;
    let devices: Vec<u32> = peer.devices().take(count).collect();
    let theirs = |d: u32| devices.contains(&d);
    let fed = async {
        node.wait_all_open(super::OPEN_TIMEOUT)?;
        let at_open = logins(sim, theirs);
        let mut peak_kib = 0;
        let mut alive = || match node.child.try_wait() {
            Ok(None) => {
                peak_kib = peak_kib.max(vm_rss_kib(node.child.id()));
                Ok(())
            }
            _ => Err(node.failure(&format!("node ended (RSS {:.0} MiB)", mib(peak_kib)))),
        };
        let receipted = feed(sim, &devices, "Baileys", &mut alive).await?;
        let delivered = wait_counted(count, || node.received()).await?;
        let (rss_kib, _, stayed) = idle_and_measure(&node.child, at_open, || logins(sim, theirs));
        let closes = node.closes();
        if !closes.is_empty() {
            return Err(format!("sockets closed: {}", closes.join("; ")));
        }
        Ok(Fed {
            receipted,
            delivered,
            rss_kib,
            stayed,
        })
    }
    .await;
    stop(node.child);
    fed
}

fn copy_folder(from: &Path, to: &Path) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("copying {}: {e}", from.display());
    std::fs::create_dir_all(to).map_err(failed)?;
    for entry in std::fs::read_dir(from).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        std::fs::copy(entry.path(), to.join(entry.file_name())).map_err(failed)?;
    }
    Ok(())
}

/// Sends every device its slot's messages (`devices[i]` is slot i), at
/// most `FEEDERS` devices at once and `WINDOW` unreceipted messages per
/// device, and waits until all are receipted; returns how long from the
/// first send. `alive` says why the process being fed is gone, if it is.
async fn feed(
    sim: &Simulator,
    devices: &[u32],
    who: &str,
    alive: Alive<'_>,
) -> Result<Duration, String> {
    for &device in devices {
        sim.forget_sessions(device).await;
    }
    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(tokio::sync::Semaphore::new(FEEDERS));
    let mut senders = tokio::task::JoinSet::new();
    for (slot, &device) in devices.iter().enumerate() {
        let (sim, permits, sent) = (sim.clone(), permits.clone(), sent.clone());
        senders.spawn(async move {
            let _permit = permits.acquire_owned().await;
            send_slot(&sim, device, slot, &sent).await
        });
    }
    let feeding = Feeding {
        senders,
        sent,
        started,
    };
    let all_sent = wait_receipted(sim, devices, feeding, alive).await?;
    let receipted = started.elapsed();
    println!(
        "  {who} with {}: {} messages sent in {:.1}s, all receipted after {:.1}s",
        devices.len(),
        devices.len() * MESSAGES,
        all_sent.as_secs_f64(),
        receipted.as_secs_f64()
    );
    Ok(receipted)
}

/// Slot `slot`'s messages to `device`: each writer's 1:1 text, then their
/// message in their group.
async fn send_slot(
    sim: &Simulator,
    device: u32,
    slot: usize,
    sent: &AtomicUsize,
) -> Result<(), String> {
    for group in 0..GROUPS {
        let jid = group_jid(slot, group);
        for index in 0..GROUP_MESSAGES {
            let person = member(slot, group, index);
            wait_window(sim, device).await;
            let text = format!("Hello, this is {}: is order {index} ready?", person.name);
            sim.send_text(device, &person, Addressing::LidWithPn, &text)
                .await
                .map_err(|e| format!("{e:#}"))?;
            sent.fetch_add(1, Ordering::SeqCst);
            wait_window(sim, device).await;
            let text =
                format!("Team {group}: delivery {index} left the warehouse at 10:{index:02}");
            sim.send_group_text(device, &jid, &person, Addressing::LidWithPn, &text)
                .await
                .map_err(|e| format!("{e:#}"))?;
            sent.fetch_add(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// Waits until `device` has fewer than `WINDOW` messages not receipted.
async fn wait_window(sim: &Simulator, device: u32) {
    while sim.unreceipted(device) >= WINDOW {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Tells why the process being fed is gone, if it is.
type Alive<'a> = &'a mut dyn FnMut() -> Result<(), String>;

/// Messages being sent.
struct Feeding {
    senders: tokio::task::JoinSet<Result<(), String>>,
    /// How many were sent so far.
    sent: Arc<AtomicUsize>,
    started: Instant,
}

/// Waits until the senders are done and the simulator holds no unreceipted
/// message for `devices`, saying how far it got every `PROGRESS_EVERY`;
/// returns when the last message was sent (from the start).
async fn wait_receipted(
    sim: &Simulator,
    devices: &[u32],
    mut feeding: Feeding,
    alive: Alive<'_>,
) -> Result<Duration, String> {
    let Feeding {
        senders,
        sent,
        started,
    } = &mut feeding;
    let started = *started;
    let total = devices.len() * MESSAGES;
    let mut all_sent = None;
    let mut next_report = started + PROGRESS_EVERY;
    loop {
        while let Some(done) = senders.try_join_next() {
            done.map_err(|e| format!("a sender failed: {e}"))?
                .map_err(|e| format!("sending: {e}"))?;
        }
        if senders.is_empty() {
            all_sent.get_or_insert(started.elapsed());
        }
        alive()?;
        let left: usize = devices.iter().map(|&d| sim.unreceipted(d)).sum();
        let receipted = sent.load(Ordering::SeqCst).saturating_sub(left);
        if let (Some(all_sent), 0) = (all_sent, left) {
            return Ok(all_sent);
        }
        if started.elapsed() > FEED_TIMEOUT {
            return Err(format!(
                "{receipted} of {total} messages receipted after {FEED_TIMEOUT:?}"
            ));
        }
        if Instant::now() > next_report {
            println!(
                "    … {receipted} of {total} receipted after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            next_report = Instant::now() + PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `counted` says all of `count` sessions' messages arrived;
/// returns how many did (fewer after `DELIVERY_TIMEOUT`, more with repeats).
async fn wait_counted(
    count: usize,
    mut counted: impl FnMut() -> Result<usize, String>,
) -> Result<usize, String> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let n = counted()?;
        if n >= count * MESSAGES || Instant::now() > deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl NodeChild {
    /// Texts the peer counted so far (its last `received` line); an error
    /// if it counted undecryptable ones.
    fn received(&mut self) -> Result<usize, String> {
        self.seen.extend(self.lines.try_iter());
        let last = self
            .seen
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("received "));
        let Some(last) = last else { return Ok(0) };
        let mut figures = last.split(' ').map(|n| n.parse::<usize>().unwrap_or(0));
        let (texts, undecryptable) = (figures.next().unwrap_or(0), figures.next().unwrap_or(0));
        match undecryptable {
            0 => Ok(texts),
            n => Err(format!("{n} messages undecryptable ({texts} decrypted)")),
        }
    }
}
