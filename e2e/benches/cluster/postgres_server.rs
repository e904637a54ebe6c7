//! The PostgreSQL server's own processes, apart from wabridge's: the
//! postmaster listening on the test server's port and its children (the
//! background workers and one backend per pooled connection).

use std::collections::BTreeMap;

use super::proc_stats::{cpu_seconds, pss_kib, with_children};

/// PSS of the server's processes together, KiB, and how many there are;
/// `None` when no postmaster on `port` is found. PSS, not RSS: the
/// processes share their buffers, which a sum of RSS counts once per
/// process.
pub fn memory_kib(port: u16) -> Option<(u64, usize)> {
    let pids = processes(port)?;
    Some((pids.iter().map(|&pid| pss_kib(pid)).sum(), pids.len()))
}

/// CPU seconds each of the server's processes has used so far.
pub fn cpu(port: u16) -> BTreeMap<u32, f64> {
    processes(port)
        .into_iter()
        .flatten()
        .map(|pid| (pid, cpu_seconds(pid)))
        .collect()
}

/// CPU seconds the server used since `before` (a backend that started
/// since counts whole; one that ended since is not counted).
pub fn cpu_since(port: u16, before: &BTreeMap<u32, f64>) -> f64 {
    cpu(port)
        .iter()
        .map(|(pid, now)| now - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}

fn processes(port: u16) -> Option<Vec<u32>> {
    Some(with_children(postmaster_on(port)?))
}

/// The process running `postgres … -p <port>`.
fn postmaster_on(port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            let program = String::from_utf8_lossy(args.first()?);
            let on_port = args
                .windows(2)
                .any(|w| w[0] == b"-p" && w[1] == port.as_bytes());
            (program.ends_with("/postgres") && on_port).then_some(pid)
        })
        .next()
}
