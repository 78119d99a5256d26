//! The kernel's run statistics (`run_cnt`, `run_time_ns`) of whatever program is attached to
//! the node's eth0, per hook: found by attachment (the XDP program id from `ip -j link`, the
//! tcx programs by querying the interface from inside the node's namespace), never by name,
//! since other work on the machine may load the same programs at the same time.
use std::ops::Sub;

use anyhow::{Context as _, anyhow};
use aya::programs::{SchedClassifier, TcAttachType, loaded_programs};
use serde_json::Value;

use crate::lab::Bed;

/// A program's run count and run time (ns), cumulative while BPF statistics are on.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Counts {
    pub(super) runs: u64,
    pub(super) ns: u64,
}

impl Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            runs: self.runs.saturating_sub(o.runs),
            ns: self.ns.saturating_sub(o.ns),
        }
    }
}

impl Counts {
    /// Mean run time per run (ns); NaN with no run.
    pub(super) fn per_run(self) -> f64 {
        if self.runs == 0 {
            f64::NAN
        } else {
            self.ns as f64 / self.runs as f64
        }
    }
}

/// The programs on the node's eth0, by hook (zero where none is attached).
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct OnEth0 {
    pub(super) xdp: Counts,
    pub(super) tc_ingress: Counts,
    pub(super) tc_egress: Counts,
}

impl Sub for OnEth0 {
    type Output = OnEth0;
    fn sub(self, o: OnEth0) -> OnEth0 {
        OnEth0 {
            xdp: self.xdp - o.xdp,
            tc_ingress: self.tc_ingress - o.tc_ingress,
            tc_egress: self.tc_egress - o.tc_egress,
        }
    }
}

/// The id of the XDP program on the node's eth0 and how it is attached ("native",
/// "generic"), if one is.
pub(super) fn xdp_program(bed: &Bed) -> anyhow::Result<Option<(u32, &'static str)>> {
    let j: Value = serde_json::from_str(&bed.node.ip(&["-j", "link", "show", "eth0"])?)?;
    let xdp = &j[0]["xdp"];
    let id = xdp["prog"]["id"]
        .as_u64()
        .or_else(|| xdp["attached"][0]["prog"]["id"].as_u64());
    // uapi XDP_ATTACHED_*: 1 driver, 2 skb, 3 hardware.
    let mode = match xdp["mode"].as_u64() {
        Some(1) => "native",
        Some(2) => "generic",
        Some(3) => "offloaded",
        _ => "?",
    };
    Ok(id.and_then(|i| u32::try_from(i).ok()).map(|i| (i, mode)))
}

/// Reads the statistics of the programs on the node's eth0; `xdp_id` from
/// [`xdp_program`] (read once per attachment, so that no process runs in between).
pub(super) fn read(bed: &Bed, xdp_id: Option<u32>) -> anyhow::Result<OnEth0> {
    let xdp = match xdp_id {
        None => Counts::default(),
        Some(id) => loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)
            .map(|p| Counts {
                runs: p.run_count(),
                ns: u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX),
            })
            .with_context(|| format!("XDP program {id} is no longer loaded"))?,
    };
    let (tc_ingress, tc_egress) = bed
        .node
        .run(|| -> Result<(Counts, Counts), String> {
            let hook = |ty| -> Result<Counts, String> {
                let (_, progs) = SchedClassifier::query_tcx("eth0", ty)
                    .map_err(|e| format!("querying tcx on eth0: {e}"))?;
                Ok(progs.iter().fold(Counts::default(), |c, p| Counts {
                    runs: c.runs + p.run_count(),
                    ns: c.ns + u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX),
                }))
            };
            Ok((hook(TcAttachType::Ingress)?, hook(TcAttachType::Egress)?))
        })?
        .map_err(|e| anyhow!(e))?;
    Ok(OnEth0 {
        xdp,
        tc_ingress,
        tc_egress,
    })
}
