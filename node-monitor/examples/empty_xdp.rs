//! Empty programs attached to an interface for a given time, then their kernel run
//! statistics: the baseline that live-traffic measurements of the real programs are set
//! beside.
//!
//! `empty_xdp IFACE SECONDS [HOOKS]` attaches an empty program to each hook of `HOOKS`, a
//! comma-separated list of `xdp`, `xdp-read`, `xdp-read4`, `tc-ingress`, `tc-ingress-read`,
//! `tc-ingress-read4` and `tc-egress` (default `xdp`), prints `attached`, and when the time
//! is up (or on SIGTERM, which ends it) nothing more: the programs detach when the process
//! exits. With the time up it prints
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
//! - `xdp-read` and `tc-ingress-read`: programs that read the packet's headers as the
//!   daemon's first look does, and decide nothing. Each loads the bytes that look reads of an
//!   IPv6 TCP segment, the live bench's packets (EtherType, payload length, next header,
//!   destination port, data offset, flags: [`IPV6`]), into registers and returns XDP_PASS
//!   or TC_ACT_OK. tc reads them in place when the skb's headers are linear, and otherwise
//!   copies the first 74 bytes (Ethernet, IPv6 and TCP headers) to its stack with
//!   `bpf_skb_load_bytes`, as the daemon's tc ingress program does. `xdp-read4` and
//!   `tc-ingress-read4` do the same for an IPv4 TCP segment ([`IPV4`]: 54 bytes of headers),
//!   the packets of the live bench's `--live-ipv4`. Against them, a live run separates what
//!   reading the headers costs any program (the first touch of header bytes the empty
//!   program never reads, and on tc the copy out of a non-linear skb) from the daemon's own
//!   work. Reported as `xdp` and `tc-ingress` in
//!   the output. Assembled here like the empty classifier; the XDP one is attached with
//!   BPF_LINK_CREATE, native first and generic where the driver has no XDP.
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
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
/// uapi `XDP_FLAGS_SKB_MODE` and `XDP_FLAGS_DRV_MODE`.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_PASS` and `TC_ACT_OK`.
const XDP_PASS: i32 = 2;
const TC_ACT_OK: i32 = 0;

/// One little-endian `struct bpf_insn`: opcode, destination and source registers, offset,
/// immediate.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64)
        | ((dst as u64 | ((src as u64) << 4)) << 8)
        | (((off as u16) as u64) << 16)
        | (((imm as u32) as u64) << 32)
}

/// Opcodes: `BPF_ALU64 | BPF_MOV | BPF_K` and `| BPF_X`, `BPF_ALU64 | BPF_ADD | BPF_K`,
/// `BPF_LDX | BPF_MEM` of a word, half-word and byte, `BPF_JMP | BPF_JGT | BPF_X`,
/// `BPF_JMP | BPF_JA`, `BPF_JMP | BPF_CALL`, `BPF_JMP | BPF_EXIT`.
const MOV_K: u8 = 0xb7;
const MOV_X: u8 = 0xbf;
const ADD_K: u8 = 0x07;
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const JGT_X: u8 = 0x2d;
const JA: u8 = 0x05;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
/// The helper `bpf_skb_load_bytes`.
const BPF_FUNC_SKB_LOAD_BYTES: i32 = 26;

/// `r0 = TC_ACT_OK; exit`.
const EMPTY_TC: [u64; 2] = [insn(MOV_K, 0, 0, 0, TC_ACT_OK), insn(EXIT, 0, 0, 0, 0)];

/// What a read-only program reads of the live bench's TCP segments: the loads (width,
/// offset) the daemon's first look makes, and the length of the headers they lie in.
struct Layout {
    read_at: &'static [(u8, i16)],
    /// Ethernet, IP and TCP headers without options: the bytes that must be readable in
    /// place before the loads (the daemon's first look checks the same before it reads the
    /// TCP header), and the bytes the tc program copies from a non-linear skb otherwise.
    headers_len: i32,
}

/// An IPv6 TCP segment without extension headers: EtherType (12), payload length (18), next
/// header (20), destination port (56), data offset (66), flags (67); 74 bytes of headers
/// (the daemon's `PEEK_LEN`).
const IPV6: Layout = Layout {
    read_at: &[
        (LDX_H, 12),
        (LDX_H, 18),
        (LDX_B, 20),
        (LDX_H, 56),
        (LDX_B, 66),
        (LDX_B, 67),
    ],
    headers_len: 14 + 40 + 20,
};

/// An IPv4 TCP segment without options (`--live-ipv4`): EtherType (12), version and header
/// length (14), total length (16), protocol (23), destination port (36), data offset (46),
/// flags (47); 54 bytes of headers.
const IPV4: Layout = Layout {
    read_at: &[
        (LDX_H, 12),
        (LDX_B, 14),
        (LDX_H, 16),
        (LDX_B, 23),
        (LDX_H, 36),
        (LDX_B, 46),
        (LDX_B, 47),
    ],
    headers_len: 14 + 20 + 20,
};

/// A program that reads the headers of `layout` in place (`data` and `data_end` at these
/// offsets of its context) and returns `ret`; when fewer than `layout.headers_len` bytes are
/// linear, it copies as many to its stack with `bpf_skb_load_bytes` instead (tc), or reads
/// nothing (XDP, `copy` false: an XDP buffer holds the whole packet).
fn read_program(layout: &Layout, data: i16, data_end: i16, ret: i32, copy: bool) -> Vec<u64> {
    let Layout {
        read_at,
        headers_len,
    } = *layout;
    let n = read_at.len() as i16;
    let mut p = vec![
        insn(LDX_W, 2, 1, data, 0),
        insn(LDX_W, 3, 1, data_end, 0),
        insn(MOV_X, 4, 2, 0, 0),
        insn(ADD_K, 4, 0, 0, headers_len),
        // Too short: past the loads (and the jump over the copy after them).
        insn(JGT_X, 4, 3, if copy { n + 1 } else { n }, 0),
    ];
    p.extend(read_at.iter().map(|&(op, off)| insn(op, 5, 2, off, 0)));
    let copy_insns = [
        insn(MOV_K, 2, 0, 0, 0),
        insn(MOV_X, 3, 10, 0, 0),
        insn(ADD_K, 3, 0, 0, -80),
        insn(MOV_K, 4, 0, 0, headers_len),
        insn(CALL, 0, 0, 0, BPF_FUNC_SKB_LOAD_BYTES),
    ];
    if copy {
        p.push(insn(JA, 0, 0, copy_insns.len() as i16, 0));
        p.extend(copy_insns);
    }
    p.extend([insn(MOV_K, 0, 0, 0, ret), insn(EXIT, 0, 0, 0, 0)]);
    p
}

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

/// A program of a few instructions assembled here ([`EMPTY_TC`], [`read_program`]) attached
/// to tcx ingress or egress or to XDP of an interface: the program and the link (detached
/// when the link's fd closes).
struct RawProg {
    prog: OwnedFd,
    _link: OwnedFd,
}

impl RawProg {
    /// Loads `insns` as a program of `prog_type`; the verifier's log in the error.
    fn load(prog_type: u32, insns: &[u64], prog_name: &str) -> anyhow::Result<OwnedFd> {
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..prog_name.len()].copy_from_slice(prog_name.as_bytes());
        let mut log = vec![0u8; 4096];
        let mut load = ProgLoadAttr {
            prog_type,
            insn_cnt: u32::try_from(insns.len())?,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: u32::try_from(log.len())?,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name,
            ..ProgLoadAttr::default()
        };
        match bpf(BPF_PROG_LOAD, &mut load) {
            Ok(fd) => owned_fd(fd),
            Err(e) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                bail!(
                    "BPF_PROG_LOAD of {prog_name}: {e}; verifier log: {}",
                    String::from_utf8_lossy(&log[..end])
                );
            }
        }
    }

    /// BPF_LINK_CREATE of `prog` to `ifindex`.
    fn link(
        prog: &OwnedFd,
        ifindex: u32,
        attach_type: u32,
        flags: u32,
    ) -> std::io::Result<OwnedFd> {
        let mut link = LinkCreateAttr {
            prog_fd: u32::try_from(prog.as_raw_fd()).map_err(std::io::Error::other)?,
            target_ifindex: ifindex,
            attach_type,
            flags,
            ..LinkCreateAttr::default()
        };
        let fd = bpf(BPF_LINK_CREATE, &mut link)?;
        owned_fd(fd).map_err(std::io::Error::other)
    }

    /// A classifier attached to tcx ingress or egress (`attach_type`).
    fn tc(ifindex: u32, attach_type: u32, insns: &[u64], name: &str) -> anyhow::Result<RawProg> {
        let prog = RawProg::load(BPF_PROG_TYPE_SCHED_CLS, insns, name)?;
        let link = RawProg::link(&prog, ifindex, attach_type, 0)
            .context("BPF_LINK_CREATE (tcx needs kernel 6.6 or later)")?;
        Ok(RawProg { prog, _link: link })
    }

    /// An XDP program, attached native where the driver has XDP and generic otherwise (as the
    /// daemon attaches).
    fn xdp(ifindex: u32, insns: &[u64], name: &str) -> anyhow::Result<RawProg> {
        let prog = RawProg::load(BPF_PROG_TYPE_XDP, insns, name)?;
        let link = match RawProg::link(&prog, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE) {
            Ok(link) => link,
            Err(_) => RawProg::link(&prog, ifindex, BPF_XDP, XDP_FLAGS_SKB_MODE)
                .context("BPF_LINK_CREATE to XDP")?,
        };
        Ok(RawProg { prog, _link: link })
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

/// The layout a read-only hook reads: IPv4 for the hooks ending in `4`.
fn layout(hook: &str) -> &'static Layout {
    if hook.ends_with('4') { &IPV4 } else { &IPV6 }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (iface, seconds, hooks) = match args.as_slice() {
        [i, s] => (i, s, "xdp"),
        [i, s, h] => (i, s, h.as_str()),
        _ => bail!(
            "usage: empty_xdp IFACE SECONDS \
             [xdp|xdp-read|xdp-read4|tc-ingress|tc-ingress-read|tc-ingress-read4|tc-egress,...]"
        ),
    };
    let seconds: u64 = seconds.parse().context("SECONDS must be a whole number")?;
    let _stats = BpfStats::enable().context("enabling kernel BPF run statistics")?;
    let ifindex = nix::net::if_::if_nametoindex(iface.as_str())
        .with_context(|| format!("no interface {iface}"))?;
    let mut ebpf = aya::Ebpf::load(EBPF_OBJECT).context("loading the embedded object")?;
    let mut xdp = false;
    // Each with the hook's name in the output.
    let mut raw: Vec<(&str, RawProg)> = Vec::new();
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
            "xdp-read" | "xdp-read4" => raw.push((
                "xdp",
                RawProg::xdp(
                    ifindex,
                    &read_program(layout(hook), 0, 4, XDP_PASS, false),
                    "nm_read_xdp",
                )?,
            )),
            "tc-ingress" => raw.push((
                hook,
                RawProg::tc(ifindex, BPF_TCX_INGRESS, &EMPTY_TC, "nm_empty_tc")?,
            )),
            "tc-ingress-read" | "tc-ingress-read4" => raw.push((
                "tc-ingress",
                RawProg::tc(
                    ifindex,
                    BPF_TCX_INGRESS,
                    &read_program(layout(hook), 76, 80, TC_ACT_OK, true),
                    "nm_read_tc",
                )?,
            )),
            "tc-egress" => raw.push((
                hook,
                RawProg::tc(ifindex, BPF_TCX_EGRESS, &EMPTY_TC, "nm_empty_tc")?,
            )),
            other => bail!(
                "unknown hook {other:?} (xdp, xdp-read, xdp-read4, tc-ingress, tc-ingress-read, \
                 tc-ingress-read4, tc-egress)"
            ),
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
    for (hook, prog) in &raw {
        let (count, ns) = prog.stats()?;
        println!("{hook} run_count={count} run_time_ns={ns}");
    }
    Ok(())
}
