//! Empty programs attached to an interface for a given time, then their kernel run
//! statistics: the baseline that live-traffic measurements of the real programs are set
//! beside.
//!
//! `empty_xdp IFACE SECONDS [HOOKS]` attaches an empty program to each hook of `HOOKS`, a
//! comma-separated list of `xdp`, `tc-ingress`, `tc-ingress-copy` and `tc-egress` (default
//! `xdp`), prints
//! `attached`, and when the time is up (or on SIGTERM, which ends it) nothing more: the
//! programs detach when the process exits. With the time up it prints
//! `HOOK run_count=N run_time_ns=T` per hook. Run it in the same place and under the same
//! traffic as the daemon it is compared with, on the hooks the daemon uses (`xdp,tc-egress`
//! for `--attach xdp`, `tc-ingress,tc-egress` for `--attach tc`).
//!
//! - XDP: the object's `nm_baseline` (XDP_PASS and nothing else), attached as the daemon
//!   attaches (native, else generic).
//! - tc: the object has no empty classifier, and the eBPF crate is not this example's to
//!   change, so the program is two instructions assembled here (`r0 = TC_ACT_OK; exit`),
//!   loaded with BPF_PROG_LOAD and attached with BPF_LINK_CREATE to tcx ingress or egress, as
//!   aya attaches the daemon's classifiers on a kernel with tcx (6.6+, appended after any
//!   program already there). No fallback to a clsact qdisc: on a kernel without tcx this
//!   fails, and says so.
//! - `tc-ingress-copy`: a tc ingress program that copies the first 74 bytes of the packet
//!   (Ethernet, IPv6 and TCP headers) to its stack with `bpf_skb_load_bytes`, as the
//!   daemon's tc ingress program does first on an skb whose headers are not linear, and
//!   returns `TC_ACT_OK`: it reads the packet and decides nothing. Against it, a live run
//!   separates what reading a non-linear skb's headers costs (the copy, and the first touch
//!   of the header bytes, which the empty program never reads) from the daemon's own work.
//!   Reported as `tc-ingress` in the output.
use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::programs::{Xdp, XdpMode};
use node_monitor::{datapath::EBPF_OBJECT, metrics::BpfStats};

/// uapi `enum bpf_cmd`, `enum bpf_prog_type` and `enum bpf_attach_type` values.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// `r0 = 0 (TC_ACT_OK); exit`: `BPF_ALU64 | BPF_MOV | BPF_K` to r0 with imm 0, then
/// `BPF_JMP | BPF_EXIT` (each a little-endian `struct bpf_insn`).
const EMPTY_TC: [u64; 2] = [0xb7, 0x95];

/// Bytes [`COPY_TC`] copies: Ethernet, IPv6 and TCP headers without options (the daemon's
/// `PEEK_LEN`).
const COPY_LEN: u64 = 14 + 40 + 20;
/// `r2 = 0; r3 = r10; r3 += -80; r4 = COPY_LEN; call bpf_skb_load_bytes (26); r0 = 0 (TC_ACT_OK);
/// exit`: r1 holds the skb on entry. Each a little-endian `struct bpf_insn` (code, dst and
/// src registers, offset, immediate).
const COPY_TC: [u64; 7] = [
    0x02b7,
    0xa3bf,
    0xffff_ffb0_0000_0307,
    (COPY_LEN << 32) | 0x04b7,
    (26 << 32) | 0x85,
    0xb7,
    0x95,
];

/// The head of `union bpf_attr` for BPF_PROG_LOAD (the kernel zero-fills the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for BPF_LINK_CREATE with the tcx fields.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `bpf(cmd, attr, sizeof attr)`; a new fd, or 0 for commands that return none.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialised `repr(C)` head of `union bpf_attr` of the given
    // size; the kernel reads (and for GET_INFO writes) within it and what it points to.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned_fd(raw: libc::c_long) -> anyhow::Result<OwnedFd> {
    let raw = i32::try_from(raw).context("fd out of range")?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A classifier of a few instructions ([`EMPTY_TC`] or [`COPY_TC`]) attached to tcx ingress or
/// egress of `ifindex`: the program and the link (detached when the link's fd closes).
struct EmptyTc {
    prog: OwnedFd,
    _link: OwnedFd,
}

impl EmptyTc {
    fn attach(
        ifindex: u32,
        attach_type: u32,
        insns: &[u64],
        prog_name: &str,
    ) -> anyhow::Result<EmptyTc> {
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..prog_name.len()].copy_from_slice(prog_name.as_bytes());
        let mut log = vec![0u8; 4096];
        let mut load = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_SCHED_CLS,
            insn_cnt: u32::try_from(insns.len())?,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: u32::try_from(log.len())?,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name,
            ..ProgLoadAttr::default()
        };
        let prog = match bpf(BPF_PROG_LOAD, &mut load) {
            Ok(fd) => owned_fd(fd)?,
            Err(e) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                bail!(
                    "BPF_PROG_LOAD: {e}; verifier log: {}",
                    String::from_utf8_lossy(&log[..end])
                );
            }
        };
        let mut link = LinkCreateAttr {
            prog_fd: u32::try_from(prog.as_raw_fd())?,
            target_ifindex: ifindex,
            attach_type,
            ..LinkCreateAttr::default()
        };
        let link = bpf(BPF_LINK_CREATE, &mut link)
            .context("BPF_LINK_CREATE (tcx needs kernel 6.6 or later)")?;
        Ok(EmptyTc {
            prog,
            _link: owned_fd(link)?,
        })
    }

    /// `(run_cnt, run_time_ns)` from `struct bpf_prog_info` (offsets 200 and 192 of the
    /// uapi struct, which only ever grows at its end).
    fn stats(&self) -> anyhow::Result<(u64, u64)> {
        let mut info = [0u64; 29];
        let mut attr = InfoAttr {
            bpf_fd: u32::try_from(self.prog.as_raw_fd())?,
            info_len: u32::try_from(std::mem::size_of_val(&info))?,
            info: info.as_mut_ptr() as u64,
        };
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).context("BPF_OBJ_GET_INFO_BY_FD")?;
        Ok((info[200 / 8], info[192 / 8]))
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (iface, seconds, hooks) = match args.as_slice() {
        [i, s] => (i, s, "xdp"),
        [i, s, h] => (i, s, h.as_str()),
        _ => bail!("usage: empty_xdp IFACE SECONDS [xdp|tc-ingress|tc-ingress-copy|tc-egress,...]"),
    };
    let seconds: u64 = seconds.parse().context("SECONDS must be a whole number")?;
    let _stats = BpfStats::enable().context("enabling kernel BPF run statistics")?;
    let ifindex = nix::net::if_::if_nametoindex(iface.as_str())
        .with_context(|| format!("no interface {iface}"))?;
    let mut ebpf = aya::Ebpf::load(EBPF_OBJECT).context("loading the embedded object")?;
    let mut xdp = false;
    let mut tc: Vec<(&str, EmptyTc)> = Vec::new();
    for hook in hooks.split(',') {
        match hook {
            "xdp" => {
                let prog: &mut Xdp = ebpf
                    .program_mut("nm_baseline")
                    .context("no nm_baseline program in the object")?
                    .try_into()?;
                prog.load()?;
                // Native first, generic where the driver has no XDP: as the daemon attaches.
                if prog.attach(iface, XdpMode::Driver).is_err() {
                    prog.attach(iface, XdpMode::Skb)
                        .with_context(|| format!("attaching to {iface}"))?;
                }
                xdp = true;
            }
            "tc-ingress" => tc.push((
                hook,
                EmptyTc::attach(ifindex, BPF_TCX_INGRESS, &EMPTY_TC, "nm_empty_tc")?,
            )),
            "tc-ingress-copy" => tc.push((
                "tc-ingress",
                EmptyTc::attach(ifindex, BPF_TCX_INGRESS, &COPY_TC, "nm_copy_tc")?,
            )),
            "tc-egress" => tc.push((
                hook,
                EmptyTc::attach(ifindex, BPF_TCX_EGRESS, &EMPTY_TC, "nm_empty_tc")?,
            )),
            other => bail!("unknown hook {other:?} (xdp, tc-ingress, tc-ingress-copy, tc-egress)"),
        }
    }
    println!("attached");
    std::thread::sleep(Duration::from_secs(seconds));
    if xdp {
        let prog: &Xdp = ebpf
            .program("nm_baseline")
            .context("no nm_baseline program")?
            .try_into()?;
        let info = prog.info()?;
        println!(
            "xdp run_count={} run_time_ns={}",
            info.run_count(),
            info.run_time().as_nanos()
        );
    }
    for (hook, prog) in &tc {
        let (count, ns) = prog.stats()?;
        println!("{hook} run_count={count} run_time_ns={ns}");
    }
    Ok(())
}
