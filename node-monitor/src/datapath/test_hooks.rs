//! Test hooks: the loaded programs (for BPF_PROG_TEST_RUN) and direct access to the settings
//! slot, for the integration tests and the benchmark. Compiled only with `cfg(test)` or the
//! `test-support` feature, never into a release build.
use aya::{
    maps::PerCpuArray,
    programs::{SchedClassifier, Xdp},
};
use node_monitor_common::{
    Addr, FlowKey, GroupBudget, Settings, VerdictSlot, map_name, prog_name, refusal_tag,
    verdict_slot,
};

use super::{Datapath, DatapathError, Result};

impl Datapath {
    /// The loaded programs, for BPF_PROG_TEST_RUN.
    pub fn xdp_program(&self) -> Result<&Xdp> {
        self.program(prog_name::XDP_INGRESS)
    }
    pub fn tc_ingress_program(&self) -> Result<&SchedClassifier> {
        self.program(prog_name::TC_INGRESS)
    }
    pub fn tc_egress_program(&self) -> Result<&SchedClassifier> {
        self.program(prog_name::TC_EGRESS)
    }

    /// Loads and returns the empty baseline XDP program (benchmarks subtract its cost).
    pub fn baseline_program(&mut self) -> Result<&Xdp> {
        let name = prog_name::BASELINE;
        let prog: &mut Xdp = self.program_mut(name)?;
        if prog.fd().is_err() {
            prog.load().map_err(|error| DatapathError::Program {
                name,
                error: Box::new(error),
            })?;
        }
        self.program(name)
    }

    /// The settings slot as the programs see it.
    pub fn settings(&self) -> Result<Settings> {
        self.read_settings()
    }

    /// Overwrites the settings slot directly, bypassing config validation (benchmarks use a
    /// zero idle timeout so that every repeat of a packet is a new connection). A config
    /// reload writes it again.
    pub fn set_settings(&mut self, s: Settings) -> Result<()> {
        self.write_settings(s)
    }

    /// Freezes the per-port source-range table of one family (`BPF_MAP_FREEZE`): from then
    /// on every write to it from user space fails with EPERM, as a write the kernel refuses
    /// would. For the tests of a failed write; irreversible for this data path.
    ///
    /// # Errors
    ///
    /// The kernel refused the freeze: its errno.
    pub fn freeze_port_allow(&self, v6: bool) -> std::io::Result<()> {
        use std::os::fd::AsFd as _;

        use aya::maps::IterableMap as _;
        let data = if v6 {
            self.port_allow_v6.map()
        } else {
            self.port_allow_v4.map()
        };
        freeze(data.fd().as_fd())
    }

    /// The `REFUSAL_TAGS` slot of a flow-table key (ingress orientation): what it holds, and
    /// the key's own tag.
    pub fn refusal_tag(&self, key: &FlowKey) -> Result<(u32, u32)> {
        let name = map_name::REFUSAL_TAGS;
        let map = self.ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
        let err = |error| DatapathError::Map { name, error };
        let tags: aya::maps::Array<_, u32> = aya::maps::Array::try_from(map).map_err(err)?;
        let (slot, tag) = refusal_tag(key);
        Ok((tags.get(&slot, 0).map_err(err)?, tag))
    }

    /// Overwrites the `REFUSAL_TAGS` slot of a key, as another flagged flow recorded in the
    /// same slot would.
    pub fn set_refusal_tag(&mut self, key: &FlowKey, value: u32) -> Result<()> {
        let name = map_name::REFUSAL_TAGS;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap(name))?;
        let err = |error| DatapathError::Map { name, error };
        let mut tags: aya::maps::Array<_, u32> = aya::maps::Array::try_from(map).map_err(err)?;
        tags.set(refusal_tag(key).0, value, 0).map_err(err)
    }

    /// A group's `GROUP_BUDGET` slot: its buckets and its last flagged attempt's jiffies.
    pub fn group_budget(&self, group: u8) -> Result<GroupBudget> {
        let name = map_name::GROUP_BUDGET;
        let map = self.ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
        let err = |error| DatapathError::Map { name, error };
        let slots: aya::maps::Array<_, GroupBudget> =
            aya::maps::Array::try_from(map).map_err(err)?;
        slots.get(&u32::from(group), 0).map_err(err)
    }

    /// Overwrites a group's `GROUP_BUDGET` slot (to age its last flagged attempt without
    /// waiting for it).
    pub fn set_group_budget(&mut self, group: u8, value: GroupBudget) -> Result<()> {
        let name = map_name::GROUP_BUDGET;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap(name))?;
        let err = |error| DatapathError::Map { name, error };
        let mut slots: aya::maps::Array<_, GroupBudget> =
            aya::maps::Array::try_from(map).map_err(err)?;
        slots.set(u32::from(group), value, 0).map_err(err)
    }

    /// The verdict cache slot of `src` on every CPU.
    pub fn verdict_slots(&self, src: &Addr) -> Result<Vec<VerdictSlot>> {
        let name = map_name::VERDICTS;
        let map = self.ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
        let err = |error| DatapathError::Map { name, error };
        let slots: PerCpuArray<_, VerdictSlot> = PerCpuArray::try_from(map).map_err(err)?;
        Ok(slots
            .get(&verdict_slot(src), 0)
            .map_err(err)?
            .iter()
            .copied()
            .collect())
    }
}

/// Freezes the map pinned at `path` (`BPF_MAP_FREEZE`), for the end-to-end tests of a write
/// the kernel refuses in a running daemon: from then on every write to it from user space,
/// the daemon's included, fails with EPERM. Irreversible while the map lives.
///
/// # Errors
///
/// The pin cannot be opened, or the kernel refused the freeze: its errno.
pub fn freeze_pinned_map(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsFd as _;
    let map = aya::maps::MapData::from_pin(path).map_err(std::io::Error::other)?;
    freeze(map.fd().as_fd())
}

/// `BPF_MAP_FREEZE` on the map behind `fd`.
fn freeze(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    const BPF_MAP_FREEZE: libc::c_long = 22;
    // `union bpf_attr` for BPF_MAP_FREEZE: just the map's fd (the rest zero).
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&fd.as_raw_fd().to_ne_bytes());
    // SAFETY: `attr` is a zeroed bpf_attr of its declared size holding a live map fd
    // (borrowed for the call); the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_FREEZE,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
