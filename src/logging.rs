//! Tracing setup: a daily-rotated log file with a bounded number of files,
//! plus stderr in headless mode. The library's `log` records are bridged in.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogConfig;
use tokio::sync::mpsc;

/// Keep it alive for the life of the process: dropping it flushes the file.
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Our own lines at the configured level; the WhatsApp stack only at warn
/// unless debugging was asked for (it is chatty at info).
pub fn filter_for(level: &str) -> EnvFilter {
    let directives = match level {
        "debug" | "trace" => level.to_string(),
        _ => format!("warn,wabridge={level}"),
    };
    EnvFilter::new(directives)
}

/// Lines that may wait for the log file's writer thread before new ones
/// are dropped (and counted). The library's default, 128,000, preallocates
/// 4 MiB that an idle bridge never uses; the writer drains thousands of lines
/// a second, so this only matters if the disk stalls.
const FILE_BUFFERED_LINES: usize = 8192;

/// Installs the global subscriber: lines go to the file, to `tail` (the
/// dashboards' log pane, in this process or attached) and, with `stderr`,
/// to stderr as well (headless: systemd's journal reads it; with the
/// dashboard in this terminal it would tear the screen). A log dir that
/// cannot be used is reported on stderr and the program carries on without
/// a file.
pub fn init(config: &LogConfig, dir: &Path, stderr: bool, tail: mpsc::Sender<String>) -> LogGuard {
    let file = match open_appender(dir, config.max_files) {
        Ok(appender) => Some(
            tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(FILE_BUFFERED_LINES)
                .finish(appender),
        ),
        Err(e) => {
            eprintln!(
                "wabridge: cannot write logs to {}: {e}; logging to stderr only",
                dir.display()
            );
            None
        }
    };
    let (file_writer, guard) = match file {
        Some((writer, guard)) => (Some(writer), Some(guard)),
        None => (None, None),
    };
    let file_layer = file_writer.map(|w| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_target(false)
            .with_writer(w)
    });
    let stderr_layer = stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(std::io::stderr)
    });
    let tail_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .with_writer(TailWriter { sender: tail });
    let _ = tracing_subscriber::registry()
        .with(filter_for(&config.level))
        .with(LibraryErrorTap)
        .with(file_layer)
        .with(stderr_layer)
        .with(tail_layer)
        .try_init();
    LogGuard { _file: guard }
}

fn open_appender(dir: &Path, max_files: usize) -> Result<RollingFileAppender, String> {
    crate::paths::create_private_dir(dir).map_err(|e| e.to_string())?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("wabridge")
        .filename_suffix("log")
        .max_log_files(max_files)
        .build(dir)
        .map_err(|e| e.to_string())
}

/// Sends each formatted line to the dashboards; drops lines when the pane is
/// behind rather than ever blocking the code that logs.
#[derive(Clone)]
struct TailWriter {
    sender: mpsc::Sender<String>,
}

impl std::io::Write for TailWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for line in String::from_utf8_lossy(bytes).lines() {
            if !line.trim().is_empty() {
                let _ = self.sender.try_send(line.to_string());
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TailWriter {
    type Writer = TailWriter;

    fn make_writer(&'a self) -> TailWriter {
        self.clone()
    }
}

/// Hands the WhatsApp library's error lines to the engine, which learns from
/// them what the library reports nowhere else (why a connect failed).
struct LibraryErrorTap;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LibraryErrorTap {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        let mut message = MessageText(String::new());
        event.record(&mut message);
        crate::engine::whatsapp::note_library_error(&message.0);
    }
}

/// The `message` field of an event, as text.
struct MessageText(String);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

/// A warning when the environment turns on backtraces for library errors
/// (`RUST_LIB_BACKTRACE`, else `RUST_BACKTRACE`, not `0`, as std decides).
/// The WhatsApp library builds its errors with backtraces then, and its log
/// lines print them resolved: resolving loads the binary's symbol tables,
/// measured at 37 MiB more for one session. Panics keep their backtraces
/// with `RUST_LIB_BACKTRACE=0`.
pub fn library_backtraces_warning(
    rust_backtrace: Option<&str>,
    rust_lib_backtrace: Option<&str>,
) -> Option<&'static str> {
    let enabled = match (rust_lib_backtrace, rust_backtrace) {
        (Some(lib), _) => lib != "0",
        (None, Some(all)) => all != "0",
        (None, None) => false,
    };
    enabled.then_some(
        "RUST_BACKTRACE is set, so every error inside the WhatsApp library captures a \
         backtrace and its log line resolves it (tens of MiB of memory, CPU on each); \
         set RUST_LIB_BACKTRACE=0 to keep backtraces for panics only",
    )
}

#[cfg(test)]
mod tests {
    use super::library_backtraces_warning as warning;

    #[test]
    fn backtraces_for_library_errors_are_warned_about_as_std_enables_them() {
        assert!(warning(None, None).is_none());
        assert!(warning(Some("0"), None).is_none());
        assert!(warning(Some("1"), None).is_some());
        assert!(warning(Some("full"), None).is_some());
        // RUST_LIB_BACKTRACE decides for library errors when it is set.
        assert!(warning(Some("1"), Some("0")).is_none());
        assert!(warning(None, Some("1")).is_some());
        assert!(warning(Some("0"), Some("1")).is_some());
    }
}
