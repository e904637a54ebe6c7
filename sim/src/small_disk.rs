//! A real small filesystem for disk-full tests: a tmpfs of a few hundred
//! KiB mounted on a fresh temporary folder (the tests run as root in CI),
//! which a test fills up to ENOSPC and frees again. Unmounted on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `kib` KiB; panics with the reason when this
    /// machine cannot (not root, no tmpfs): such a test must not pass
    /// without its disk.
    pub fn mount(kib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "cannot mount a {kib} KiB tmpfs for this disk-full test (it needs root, as CI runs it): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        SmallDisk { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Writes a file until the disk is full; returns the bytes it took.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let block = [0u8; 4096];
        let mut written = 0;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = file.sync_all();
        written
    }

    /// Removes what `fill` wrote.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a file still open (a test that panicked) must not keep the
        // mount around.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
