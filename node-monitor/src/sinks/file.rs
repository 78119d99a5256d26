//! The file sink: appends one rendered record per line, rotated by size.
//!
//! When the next line would take the file past `max_size_bytes`, the file is rotated:
//! `path.<keep-1>` → `path.<keep>` (the oldest is replaced), ..., `path` → `path.1`, and a
//! new `path` is opened (`keep: 0` truncates instead). A single line longer than
//! `max_size_bytes` still goes whole into a fresh file. `max_size_bytes: 0` never rotates.
//! Data is flushed once per batch and fsynced (`fdatasync`) before a rotation and when the
//! sink stops, not per record. A failed write counts its records as `write_error`, and the
//! file is reopened for the next record.
use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::{io::AsyncWriteExt as _, sync::mpsc};

use super::{Ctx, DropReason, Health, MAX_BATCH, SinkError, recv_batch};
use crate::alerts::OutputItem;

pub(crate) struct FileWriter {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<tokio::fs::File>,
    /// Bytes in the current file (as far as we wrote it).
    size: u64,
}

/// `path.<n>`.
pub(crate) fn rotated_name(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_std(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let size = f.metadata()?.len();
    Ok((f, size))
}

impl FileWriter {
    /// Creates the directory and opens `path` for appending: errors name the sink.
    pub(crate) fn open(
        name: &str,
        path: &Path,
        max_size: u64,
        keep: u32,
    ) -> Result<FileWriter, SinkError> {
        if path.as_os_str().is_empty() {
            return Err(SinkError::invalid(name, "the file path is empty"));
        }
        let (f, size) = open_std(path)
            .map_err(|e| SinkError::io(name, format!("cannot open {}", path.display()), e))?;
        Ok(FileWriter {
            path: path.to_owned(),
            max_size,
            keep,
            file: Some(tokio::fs::File::from_std(f)),
            size,
        })
    }

    async fn reopen(&mut self) -> std::io::Result<()> {
        let path = self.path.clone();
        let (f, size) = tokio::task::spawn_blocking(move || open_std(&path))
            .await
            .map_err(std::io::Error::other)??;
        self.file = Some(tokio::fs::File::from_std(f));
        self.size = size;
        Ok(())
    }

    /// Appends `buf` (`n` records) and accounts for them.
    async fn write(&mut self, buf: &[u8], n: u64, ctx: &Ctx, health: &mut Health) {
        if n == 0 {
            return;
        }
        if self.file.is_none()
            && let Err(e) = self.reopen().await
        {
            health.fail(
                &ctx.name,
                &format_args!("cannot open {}: {e}", self.path.display()),
            );
            ctx.counters.dropped(DropReason::WriteError, n);
            return;
        }
        let res = match self.file.as_mut() {
            Some(f) => {
                async {
                    f.write_all(buf).await?;
                    f.flush().await
                }
                .await
            }
            None => Err(std::io::Error::other("file not open")),
        };
        match res {
            Ok(()) => {
                self.size += buf.len() as u64;
                health.ok(&ctx.name);
                ctx.counters.sent(n);
            }
            Err(e) => {
                health.fail(
                    &ctx.name,
                    &format_args!("cannot write {}: {e}", self.path.display()),
                );
                ctx.counters.dropped(DropReason::WriteError, n);
                self.file = None;
            }
        }
    }

    /// Shifts `path` → `path.1` → ... → `path.<keep>` and opens a fresh `path`.
    async fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.file.take() {
            let _ = f.sync_data().await;
        }
        let (path, keep) = (self.path.clone(), self.keep);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let ignore_missing = |r: std::io::Result<()>| match r {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
            if keep == 0 {
                return ignore_missing(std::fs::remove_file(&path));
            }
            for i in (1..keep).rev() {
                ignore_missing(std::fs::rename(
                    rotated_name(&path, i),
                    rotated_name(&path, i + 1),
                ))?;
            }
            ignore_missing(std::fs::rename(&path, rotated_name(&path, 1)))
        })
        .await
        .map_err(std::io::Error::other)??;
        self.reopen().await
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Arc<OutputItem>>, ctx: Ctx) {
        let mut health = Health::default();
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        while let Some(batch) = recv_batch(&mut rx, &ctx.counters, MAX_BATCH).await {
            buf.clear();
            let mut pending = 0u64;
            for item in &batch {
                let line = ctx.render(item);
                let len = line.len() as u64 + 1;
                let used = self.size + buf.len() as u64;
                if self.max_size > 0 && used > 0 && used + len > self.max_size {
                    self.write(&buf, pending, &ctx, &mut health).await;
                    buf.clear();
                    pending = 0;
                    if let Err(e) = self.rotate().await {
                        // Keep appending to the current file rather than lose records; the
                        // next line tries again.
                        health.fail(
                            &ctx.name,
                            &format_args!("cannot rotate {}: {e}", self.path.display()),
                        );
                    }
                }
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                pending += 1;
            }
            drop(batch);
            self.write(&buf, pending, &ctx, &mut health).await;
        }
        if let Some(f) = self.file.take() {
            let _ = f.sync_data().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names() {
        assert_eq!(
            rotated_name(Path::new("/var/log/a.json"), 3),
            PathBuf::from("/var/log/a.json.3")
        );
    }

    #[test]
    fn open_errors_name_the_sink_and_path() {
        let Err(e) = FileWriter::open("audit", Path::new("/proc/no/such/dir/x.log"), 0, 1) else {
            panic!("opened a file under /proc");
        };
        let s = e.to_string();
        assert!(
            s.starts_with("sink audit: cannot open /proc/no/such/dir/x.log: "),
            "{s}"
        );
    }
}
