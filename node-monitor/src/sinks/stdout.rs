//! The stdout sink: one rendered record per line, buffered, flushed once per batch.
use std::sync::Arc;

use tokio::{
    io::{AsyncWrite, AsyncWriteExt as _},
    sync::mpsc,
};

use super::{
    accounting::{DropReason, Health},
    worker::{Ctx, MAX_BATCH, recv_batch},
};
use crate::detect::OutputItem;

/// Writes every batch taken from the queue as lines to `out` (stdout in the daemon; any
/// writer in tests), then flushes. A failed write counts the batch as `write_error`.
pub(crate) async fn run<W: AsyncWrite + Unpin>(
    out: W,
    mut rx: mpsc::Receiver<Arc<OutputItem>>,
    ctx: Ctx,
) {
    let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, out);
    let mut health = Health::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(batch) = recv_batch(&mut rx, &ctx.counters, MAX_BATCH).await {
        buf.clear();
        for item in &batch {
            ctx.render_into(item, &mut buf);
            buf.push(b'\n');
        }
        let n = batch.len() as u64;
        drop(batch);
        let res = async {
            out.write_all(&buf).await?;
            out.flush().await
        }
        .await;
        match res {
            Ok(()) => {
                health.ok(&ctx.name);
                ctx.counters.sent(n);
            }
            Err(e) => {
                health.fail(&ctx.name, &e);
                ctx.counters.dropped(DropReason::WriteError, n);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::{
        config::Format,
        record::fixture,
        sinks::{Renderer, accounting::Counters},
    };

    pub(crate) fn flow(port: u16) -> OutputItem {
        OutputItem::Flow(fixture::sampled_from_port(port))
    }

    #[tokio::test]
    async fn writes_one_line_per_record() {
        let render: Renderer = Arc::new(|item, format, out| {
            let line = match item {
                OutputItem::Flow(f) => {
                    format!("{{\"port\":{},\"format\":\"{format:?}\"}}", f.src_port)
                }
                OutputItem::Alert(_) => "alert".into(),
                OutputItem::Finding(_) => "finding".into(),
            };
            out.extend_from_slice(line.as_bytes());
        });
        let counters = Arc::new(Counters::default());
        let ctx = Ctx {
            name: "stdout".into(),
            format: Format::Ocsf,
            render,
            counters: counters.clone(),
        };
        let (tx, rx) = mpsc::channel(16);
        let (w, mut r) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(run(w, rx, ctx));
        for p in 1..=3 {
            tx.send(Arc::new(flow(p))).await.unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(
            s,
            "{\"port\":1,\"format\":\"Ocsf\"}\n{\"port\":2,\"format\":\"Ocsf\"}\n{\"port\":3,\"format\":\"Ocsf\"}\n"
        );
        assert_eq!(counters.sent.load(std::sync::atomic::Ordering::Relaxed), 3);
    }
}
