//! The agent's log file where it has no console (the Windows service): `oqs-agent.log`, rotated
//! by size to `oqs-agent.log.1` … `.N`, so a clinic PC's disk never fills with logs.
//!
//! Must never lose the process to a logging failure: a write that fails is dropped (logs are not
//! data; the spool is), and never log anything the caller did not (secrets stay out upstream).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Defaults: 10 MiB a file, five old files kept (60 MiB at most).
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_KEEP: usize = 5;

/// A size-rotated log file.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    written: u64,
}

impl RotatingFile {
    /// Opens (appends to) `path`, creating its directory.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1024),
            keep,
            file: Some(file),
            written,
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) {
        // Windows cannot rename an open file: close it first.
        self.file = None;
        let _ = std::fs::remove_file(self.numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
        }
        if self.keep > 0 {
            let _ = std::fs::rename(&self.path, self.numbered(1));
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.written = 0;
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(buf).is_ok() {
                self.written += buf.len() as u64;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_by_size_and_keeps_only_n_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("oqs-agent.log");
        let mut log = RotatingFile::open(&path, 1024, 2).unwrap();
        let line = [b'x'; 100];
        for _ in 0..60 {
            log.write_all(&line).unwrap();
        }
        log.flush().unwrap();
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 1024);
        assert!(size(&path.with_extension("log.1")) > 0);
        assert!(size(&path.with_extension("log.2")) > 0);
        assert!(!path.with_extension("log.3").exists(), "only two old files");
        // Reopening appends and counts what is there.
        drop(log);
        let before = size(&path);
        let mut log = RotatingFile::open(&path, 1024, 2).unwrap();
        log.write_all(b"more\n").unwrap();
        assert!(size(&path) == before + 5 || size(&path) == 5);
    }
}
