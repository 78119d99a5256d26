//! What the soak measures and reports: the daemon's resident memory and open file
//! descriptors (`/proc/PID`), the kernel objects behind its pins (so that after `unpin` it can
//! tell which of them still live), and the accounting identity of the final counters line.

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::Context as _;
use nix::libc;
use serde_json::Value;

/// Resident memory (KiB) of a process, from `/proc/PID/status`: the whole (`VmRSS`) and its
/// parts, anonymous (`RssAnon`: heap, stacks, the allocator's arenas) and file-backed
/// (`RssFile` + `RssShmem`: the binary's and libraries' pages as code paths first run, which
/// the kernel may drop again at any time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rss {
    pub(crate) total: u64,
    pub(crate) anon: u64,
    pub(crate) file: u64,
}

/// [`Rss`] of `pid`; `None` when the process is gone or has no `VmRSS` line.
pub(crate) fn rss(pid: u32) -> Option<Rss> {
    parse_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_rss(status: &str) -> Option<Rss> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(Rss {
        total: field("VmRSS")?,
        anon: field("RssAnon").unwrap_or(0),
        file: field("RssFile").unwrap_or(0) + field("RssShmem").unwrap_or(0),
    })
}

/// Open file descriptors of `pid` (entries of `/proc/PID/fd`).
pub(crate) fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The time now, `YYYY-MM-DD HH:MM UTC` (`date -u`), for the report.
pub(crate) fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// One sample of the daemon.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// Seconds since the soak started.
    pub(crate) t: f64,
    /// 0: the first daemon, 1: the one started after `kill -9`.
    pub(crate) life: u8,
    /// Seconds since this daemon started.
    pub(crate) age: f64,
    pub(crate) rss: Rss,
    pub(crate) fds: u64,
    /// The churning veth had been gone for 3 s (its links' fds closed).
    pub(crate) iface_settled_down: bool,
}

/// max − min over min, in %, of `f` over the samples of `life` past `warmup_s`; with the
/// min and max.
pub(crate) fn spread(
    samples: &[Sample],
    life: u8,
    warmup_s: f64,
    f: impl Fn(&Sample) -> u64,
) -> Option<(u64, u64, f64)> {
    let v: Vec<u64> = samples
        .iter()
        .filter(|s| s.life == life && s.age >= warmup_s)
        .map(f)
        .collect();
    let (min, max) = (*v.iter().min()?, *v.iter().max()?);
    Some((min, max, (max - min) as f64 * 100.0 / min.max(1) as f64))
}

/// The mean of `f` over the last third of the samples of `life` past `warmup_s`, minus its
/// mean over the first third: growth that the spread alone would not tell from noise.
pub(crate) fn drift(
    samples: &[Sample],
    life: u8,
    warmup_s: f64,
    f: impl Fn(&Sample) -> u64,
) -> Option<f64> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.life == life && s.age >= warmup_s)
        .map(|s| f(s) as f64)
        .collect();
    let third = v.len() / 3;
    if third == 0 {
        return None;
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    Some(mean(&v[v.len() - third..]) - mean(&v[..third]))
}

// ---- kernel objects behind the pins -------------------------------------------------------

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

/// A kernel object (program, map or link) by its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum BpfObject {
    Prog(u32),
    Map(u32),
    Link(u32),
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> std::io::Result<i64> {
    // SAFETY: `attr` is a zeroed 128-byte union bpf_attr (larger than every command's part
    // used here); the kernel reads and writes within the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of::<[u64; 16]>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: i64) -> anyhow::Result<OwnedFd> {
    let fd = i32::try_from(fd).context("fd out of range")?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// (id, prog_id or 0) of the object behind `fd` (`bpf_{prog,map,link}_info` all start with
/// `type`, `id`; a link's third field is its program's id).
fn info_ids(fd: &OwnedFd) -> anyhow::Result<(u32, u32)> {
    let mut info = [0u32; 64];
    let mut attr = [0u64; 16];
    let raw_fd = u32::try_from(fd.as_raw_fd()).context("fd")?;
    attr[0] = u64::from(raw_fd) | (u64::from(u32::try_from(info.len() * 4)?) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).context("BPF_OBJ_GET_INFO_BY_FD")?;
    Ok((info[1], info[2]))
}

/// The objects that the pins under `dir` hold: each pinned map and link, and each link's
/// program.
pub(crate) fn pinned_objects(dir: &Path) -> anyhow::Result<Vec<BpfObject>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let c = CString::new(p.as_os_str().as_encoded_bytes())?;
            let mut attr = [0u64; 16];
            attr[0] = c.as_ptr() as u64;
            let fd = owned(
                bpf(BPF_OBJ_GET, &mut attr).with_context(|| format!("open {}", p.display()))?,
            )?;
            let kind = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
            let kind = kind.to_string_lossy();
            let (id, prog) = info_ids(&fd)?;
            if kind.contains("bpf-link") {
                out.push(BpfObject::Link(id));
                if prog != 0 {
                    out.push(BpfObject::Prog(prog));
                }
            } else if kind.contains("bpf-map") {
                out.push(BpfObject::Map(id));
            } else if kind.contains("bpf-prog") {
                out.push(BpfObject::Prog(id));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether the kernel still has the object (its id opens).
pub(crate) fn alive(o: BpfObject) -> bool {
    let (cmd, id) = match o {
        BpfObject::Prog(id) => (BPF_PROG_GET_FD_BY_ID, id),
        BpfObject::Map(id) => (BPF_MAP_GET_FD_BY_ID, id),
        BpfObject::Link(id) => (BPF_LINK_GET_FD_BY_ID, id),
    };
    let mut attr = [0u64; 16];
    attr[0] = u64::from(id);
    match bpf(cmd, &mut attr) {
        Ok(fd) => {
            drop(owned(fd));
            true
        }
        // ENOENT: gone. Anything else (EPERM): say alive, so that nothing is hidden.
        Err(e) => e.raw_os_error() != Some(libc::ENOENT),
    }
}

// ---- the final counters line ---------------------------------------------------------------

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Totals of the counters line's group entries, and the entries that break the accounting
/// identity (flagged = emitted + counted losses; allowed: + sampled out).
#[derive(Debug, Default)]
pub(crate) struct Accounting {
    pub(crate) packets: u64,
    pub(crate) new_conns: u64,
    pub(crate) denied_conns: u64,
    pub(crate) events: u64,
    pub(crate) sampled_out: u64,
    pub(crate) lost_rate_limited: u64,
    pub(crate) lost_group_budget: u64,
    pub(crate) lost_ringbuf_full: u64,
    pub(crate) broken: Vec<String>,
}

pub(crate) fn accounting(counters: &Value) -> Accounting {
    let mut a = Accounting::default();
    let Some(groups) = counters["groups"].as_array() else {
        a.broken.push(format!("no groups in {counters}"));
        return a;
    };
    for g in groups {
        let losses =
            n(g, "lost_rate_limited") + n(g, "lost_group_budget") + n(g, "lost_ringbuf_full");
        let denied = g["verdict"] == "denied";
        let emitted = n(g, "events") + losses + if denied { 0 } else { n(g, "sampled_out") };
        if n(g, "new_conns") != emitted
            || (denied && n(g, "would_drop") + n(g, "dropped") != n(g, "packets"))
        {
            a.broken.push(g.to_string());
        }
        a.packets += n(g, "packets");
        a.new_conns += n(g, "new_conns");
        if denied {
            a.denied_conns += n(g, "new_conns");
        }
        a.events += n(g, "events");
        a.sampled_out += n(g, "sampled_out");
        a.lost_rate_limited += n(g, "lost_rate_limited");
        a.lost_group_budget += n(g, "lost_group_budget");
        a.lost_ringbuf_full += n(g, "lost_ringbuf_full");
    }
    a
}

/// `{sink: (sent, dropped)}` of the counters line.
pub(crate) fn sinks(counters: &Value) -> Vec<(String, u64, u64)> {
    counters["sinks"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|s| {
                    let dropped = match &s["dropped"] {
                        Value::Object(m) => m.values().filter_map(Value::as_u64).sum(),
                        other => other.as_u64().unwrap_or(0),
                    };
                    (
                        s["sink"].as_str().unwrap_or("?").to_owned(),
                        n(s, "sent"),
                        dropped,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_breaks_are_named() {
        let c: Value = serde_json::json!({"groups": [
            {"group": "a", "verdict": "denied", "packets": 5, "new_conns": 4, "events": 2,
             "lost_rate_limited": 2, "would_drop": 5},
            {"group": "b", "verdict": "allowed", "packets": 5, "new_conns": 4, "events": 1,
             "sampled_out": 2},
        ]});
        let a = accounting(&c);
        assert_eq!(a.broken.len(), 1);
        assert!(a.broken[0].contains("\"b\""));
        assert_eq!((a.new_conns, a.denied_conns, a.events), (8, 4, 3));
    }

    #[test]
    fn spread_skips_the_warmup_and_the_other_life() {
        let s = |t: f64, life, rss| Sample {
            t,
            life,
            age: t,
            rss: Rss {
                total: rss,
                anon: rss,
                file: 0,
            },
            fds: 10,
            iface_settled_down: false,
        };
        let v = [
            s(0.0, 0, 1),
            s(10.0, 0, 100),
            s(20.0, 0, 104),
            s(20.0, 1, 500),
        ];
        let (min, max, pct) = spread(&v, 0, 5.0, |x| x.rss.total).unwrap();
        assert_eq!((min, max), (100, 104));
        assert!((pct - 4.0).abs() < 1e-9);
    }

    #[test]
    fn resident_memory_is_split_into_anonymous_and_file_backed() {
        let status = "Name:\tnode-monitor\nVmRSS:\t   24576 kB\nRssAnon:\t   10240 kB\n\
                      RssFile:\t   14000 kB\nRssShmem:\t     336 kB\nThreads:\t8\n";
        assert_eq!(
            parse_rss(status),
            Some(Rss {
                total: 24576,
                anon: 10240,
                file: 14336
            })
        );
        // A kernel without the split still gives the whole.
        assert_eq!(
            parse_rss("VmRSS:\t 100 kB\n"),
            Some(Rss {
                total: 100,
                anon: 0,
                file: 0
            })
        );
        assert_eq!(parse_rss("Name:\tx\n"), None, "no VmRSS line");
        assert_eq!(
            parse_rss("VmRSSx: 5 kB\n"),
            None,
            "a longer name is not VmRSS"
        );
    }
}
