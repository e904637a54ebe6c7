//! A child process's stderr, line by line, each with the instant it was
//! read: for benchmarks that time log lines ("WhatsApp Connected: …")
//! against an event of their own (a restore, a kill).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::ChildStderr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Lines of the process's stderr, with when they were read.
pub struct Lines {
    rx: mpsc::Receiver<(Instant, String)>,
}

impl Lines {
    /// Reads `stderr` to its end on a thread of its own (a full pipe would
    /// stall the process).
    pub fn follow(stderr: ChildStderr) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    /// Forgets what was said so far.
    pub fn skip_past(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// From now on, the first line containing `needle` for each of
    /// `names` (in the order they came), with its instant; panics after
    /// `within`.
    pub fn first_for_each(
        &self,
        needle: &str,
        names: &[String],
        within: Duration,
    ) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + within;
        let mut waiting: std::collections::HashSet<&String> = names.iter().collect();
        let mut seen = Vec::with_capacity(names.len());
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, line) = self.rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "{needle:?} not seen for {} session(s) within {within:?}",
                    waiting.len()
                )
            });
            if !line.contains(needle) {
                continue;
            }
            if let Some(name) = waiting.iter().find(|n| line.contains(n.as_str())).copied() {
                waiting.remove(name);
                seen.push((at, line));
            }
        }
        seen
    }
}
