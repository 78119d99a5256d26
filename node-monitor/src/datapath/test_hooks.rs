//! Test hooks: the loaded programs (for BPF_PROG_TEST_RUN) and direct access to the settings
//! slot, for the integration tests and the benchmark. Compiled only with `cfg(test)` or the
//! `test-support` feature, never into a release build.
use aya::{
    maps::PerCpuArray,
    programs::{SchedClassifier, Xdp},
};
use node_monitor_common::{Addr, Settings, VerdictSlot, map_name, prog_name, verdict_slot};

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
