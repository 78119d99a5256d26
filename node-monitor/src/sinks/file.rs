//! The file sink: appends one rendered record per line, rotated by size.
//!
//! When the next line would take the file past `max_size_bytes`, the file is rotated:
//! `path.<keep-1>` → `path.<keep>` (the oldest is replaced), ..., `path` → `path.1`, and a
//! new `path` is opened (`keep: 0` truncates instead). A single line longer than
//! `max_size_bytes` still goes whole into a fresh file. `max_size_bytes: 0` never rotates.
//! Each batch is written with one `write_all` on a blocking thread while the next batch is
//! rendered (at most one write in flight; its records count as sent or dropped once it
//! returns, at the latest when the queue runs empty). Data is fsynced (`fdatasync`) before a rotation and when the sink stops, not
//! per record. A failed write counts its records as `write_error`, and the file is reopened
//! for the next record.
use std::{
    fs::File,
    io::{ErrorKind, Write as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    SinkError,
    accounting::{DropReason, Health},
    worker::{Ctx, MAX_BATCH, recv_batch},
};
use crate::detect::OutputItem;

/// A batch being written on a blocking thread: it hands back the file and the buffer.
struct InFlight {
    task: JoinHandle<(File, Vec<u8>, std::io::Result<()>)>,
    /// Records in the batch.
    records: u64,
}

pub(crate) struct FileWriter {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    /// None while a write holds it, or after a failure (reopened for the next batch).
    file: Option<File>,
    /// Bytes in the current file (as far as we wrote it, the write in flight included).
    size: u64,
    in_flight: Option<InFlight>,
    /// The buffer of the last finished write, reused for the next batch.
    spare: Vec<u8>,
}

/// `path.<n>`.
pub(crate) fn rotated_name(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_std(path: &Path) -> std::io::Result<(File, u64)> {
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

/// Runs blocking file work off the runtime; a worker that died is an I/O error.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
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
            file: Some(f),
            size,
            in_flight: None,
            spare: Vec::new(),
        })
    }

    async fn reopen(&mut self) -> std::io::Result<()> {
        let path = self.path.clone();
        let (f, size) = blocking(move || open_std(&path)).await?;
        self.file = Some(f);
        self.size = size;
        Ok(())
    }

    /// Waits for the write in flight, if any, and accounts for its records.
    async fn settle(&mut self, ctx: &Ctx, health: &mut Health) {
        let Some(InFlight { task, records }) = self.in_flight.take() else {
            return;
        };
        let res = match task.await {
            Ok((file, mut buf, res)) => {
                buf.clear();
                self.spare = buf;
                if res.is_ok() {
                    self.file = Some(file);
                }
                res
            }
            Err(e) => Err(std::io::Error::other(e)),
        };
        match res {
            Ok(()) => {
                health.ok(&ctx.name);
                ctx.counters.sent(records);
            }
            Err(e) => {
                health.fail(
                    &ctx.name,
                    &format_args!("cannot write {}: {e}", self.path.display()),
                );
                ctx.counters.dropped(DropReason::WriteError, records);
                // Reopened (and its size read again) for the next batch.
                self.file = None;
            }
        }
    }

    /// Starts appending `buf` (`n` records) once the previous write is done, and returns a
    /// buffer for the next batch. The records are accounted for when the write returns.
    async fn write(&mut self, buf: Vec<u8>, n: u64, ctx: &Ctx, health: &mut Health) -> Vec<u8> {
        self.settle(ctx, health).await;
        if n == 0 {
            return buf;
        }
        if self.file.is_none()
            && let Err(e) = self.reopen().await
        {
            health.fail(
                &ctx.name,
                &format_args!("cannot open {}: {e}", self.path.display()),
            );
            ctx.counters.dropped(DropReason::WriteError, n);
            return buf;
        }
        let Some(mut file) = self.file.take() else {
            ctx.counters.dropped(DropReason::WriteError, n);
            return buf;
        };
        self.size += buf.len() as u64;
        let task = tokio::task::spawn_blocking(move || {
            let res = file.write_all(&buf);
            (file, buf, res)
        });
        self.in_flight = Some(InFlight { task, records: n });
        std::mem::take(&mut self.spare)
    }

    /// Syncs the current file's data (after the write in flight).
    async fn sync(&mut self, ctx: &Ctx, health: &mut Health) {
        self.settle(ctx, health).await;
        if let Some(f) = self.file.take() {
            let f = blocking(move || f.sync_data().map(|()| f)).await;
            self.file = f.ok();
        }
    }

    /// Shifts `path` → `path.1` → ... → `path.<keep>` and opens a fresh `path`.
    async fn rotate(&mut self, ctx: &Ctx, health: &mut Health) -> std::io::Result<()> {
        self.sync(ctx, health).await;
        self.file = None;
        let (path, keep) = (self.path.clone(), self.keep);
        blocking(move || -> std::io::Result<()> {
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
        .await?;
        self.reopen().await
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Arc<OutputItem>>, ctx: Ctx) {
        let mut health = Health::default();
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            // Idle: finish (and count) the last write now rather than when the next record
            // comes. Busy: render the next batch while it is written.
            if rx.is_empty() {
                self.settle(&ctx, &mut health).await;
            }
            let Some(batch) = recv_batch(&mut rx, &ctx.counters, MAX_BATCH).await else {
                break;
            };
            buf.clear();
            let mut pending = 0u64;
            for item in &batch {
                let start = buf.len();
                ctx.render_into(item, &mut buf);
                buf.push(b'\n');
                let len = (buf.len() - start) as u64;
                let used = self.size + start as u64;
                if self.max_size > 0 && used > 0 && used + len > self.max_size {
                    // This line starts the next file.
                    let line = buf.split_off(start);
                    buf = self.write(buf, pending, &ctx, &mut health).await;
                    buf.clear();
                    pending = 0;
                    if let Err(e) = self.rotate(&ctx, &mut health).await {
                        // Keep appending to the current file rather than lose records; the
                        // next line tries again.
                        health.fail(
                            &ctx.name,
                            &format_args!("cannot rotate {}: {e}", self.path.display()),
                        );
                    }
                    buf.extend_from_slice(&line);
                }
                pending += 1;
            }
            drop(batch);
            buf = self.write(buf, pending, &ctx, &mut health).await;
        }
        self.sync(&ctx, &mut health).await;
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
