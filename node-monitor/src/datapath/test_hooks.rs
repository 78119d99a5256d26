//! Test hooks: the loaded programs (for BPF_PROG_TEST_RUN) and direct access to the settings
//! slot, for the integration tests and the benchmark. Compiled only with `cfg(test)` or the
//! `test-support` feature, never into a release build.
use aya::programs::{SchedClassifier, Xdp};
use node_monitor_common::{Settings, prog_name};

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
}
