//! A small real file system for disk-full tests: a tmpfs mounted for the test
//! (root only; otherwise `None` after saying the test is skipped) and a ballast
//! file that leaves only so much free, deleted to "free space".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pollwatch::clock::SystemClock;
use pollwatch::store::{Store, Writer, WriterOptions, WriterTask};

/// A tmpfs mounted for the test and unmounted when dropped (also on a panic).
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path, _dir: dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED disk_full_tmpfs: cannot mount a tmpfs (run the tests as root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED disk_full_tmpfs: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a panicking test may still hold files open on it.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Fills `dir` with a ballast file until `leave` bytes are free.
pub fn ballast(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("ballast");
    let free = fs_free(dir);
    let size = free.saturating_sub(leave);
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut f = std::fs::File::create(&path).unwrap();
    let mut written = 0u64;
    while written < size {
        let n = ((size - written) as usize).min(chunk.len());
        std::io::Write::write_all(&mut f, &chunk[..n]).unwrap();
        written += n as u64;
    }
    f.sync_all().unwrap();
    path
}

pub fn fs_free(dir: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// A writer that retries often (space comes back within a second here).
pub fn quick_writer(store: &Store) -> (Writer, WriterTask) {
    Writer::spawn(
        store.clone(),
        WriterOptions {
            retry_max: Duration::from_millis(300),
            ..WriterOptions::default()
        },
        Arc::new(SystemClock),
    )
}
