//! A terminal program under test: its own tmux server (own socket, so the
//! developer's tmux is never touched), keys in, screen captures out.

use std::process::Command;
use std::time::{Duration, Instant};

/// How long `until` polls the screen before giving up.
const WAIT: Duration = Duration::from_secs(40);

/// One tmux server of our own (its own socket), so nothing of the
/// developer's tmux is touched and every window dies with the test.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` in a detached window of `width` × `height` cells.
    pub fn start(name: &str, command: &str, width: u16, height: u16) -> Tmux {
        let socket = format!("wabridge-{name}-{}", std::process::id());
        let tmux = Tmux { socket };
        let status = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "e2e", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .status()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    pub fn keys(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "e2e"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The screen as text; with `escapes`, with its colours as SGR codes.
    pub fn capture(&self, escapes: bool) -> String {
        let mut command = self.cmd();
        command.args(["capture-pane", "-p", "-t", "e2e"]);
        if escapes {
            command.arg("-e");
        }
        let out = command.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pid of the program in the window.
    pub fn pid(&self) -> u32 {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", "e2e", "#{pane_pid}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    pub fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "e2e"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Polls the screen until `wanted` holds; panics with the screen.
    pub fn until(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.capture(false);
            if wanted(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn until_shows(&self, text: &str) -> String {
        self.until(text, |screen| screen.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
