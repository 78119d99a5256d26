//! Validation of `limits` and `sampling`: numbers within their bounds.

use super::{Bound, Validator};
use crate::config::{
    model::{Limits, Sampling},
    raw::{RawLimits, RawSampling},
};

const FLOWS: Bound = Bound {
    field: "flows",
    min: 1024,
    max: 16_777_216,
    note: "",
    power_of_two: false,
};
const EVENTS_PER_SOURCE: Bound = Bound {
    field: "events_per_source_per_second",
    min: 0,
    max: u32::MAX as u64,
    note: " (0 = unlimited)",
    power_of_two: false,
};
const ANSWER_TIMEOUT: Bound = Bound {
    field: "answer_timeout_ms",
    min: 1,
    max: 60_000,
    note: "",
    power_of_two: false,
};
const FLOW_IDLE_TIMEOUT: Bound = Bound {
    field: "flow_idle_timeout_ms",
    min: 1,
    max: 3_600_000,
    note: "",
    power_of_two: false,
};
const SOURCES: Bound = Bound {
    field: "sources",
    min: 256,
    max: 16_777_216,
    note: "",
    power_of_two: false,
};
const RING_BUFFER: Bound = Bound {
    field: "ring_buffer_bytes",
    min: 4096,
    max: 1 << 30,
    note: ", and a power of two",
    power_of_two: true,
};
const ALLOW_ENTRIES: Bound = Bound {
    field: "allow_entries",
    min: 1,
    max: 16_777_216,
    note: "",
    power_of_two: false,
};
const EVENTS_PER_GROUP: Bound = Bound {
    field: "events_per_group_per_second",
    min: 0,
    max: u32::MAX as u64,
    note: " (0 = unlimited)",
    power_of_two: false,
};
const SAMPLING_ONE_IN: Bound = Bound {
    field: "allowed_flows_one_in",
    min: 0,
    max: u32::MAX as u64,
    note: " (0 = off)",
    power_of_two: false,
};

impl Validator<'_> {
    pub(super) fn limits(&self, raw: RawLimits) -> Limits {
        let d = Limits::DEFAULT;
        Limits {
            flows: self.opt_u32("limits", &FLOWS, raw.flows, d.flows),
            events_per_source_per_second: self.opt_u32(
                "limits",
                &EVENTS_PER_SOURCE,
                raw.events_per_source_per_second,
                d.events_per_source_per_second,
            ),
            answer_timeout_ms: self.opt_u64(
                "limits",
                &ANSWER_TIMEOUT,
                raw.answer_timeout_ms,
                d.answer_timeout_ms,
            ),
            flow_idle_timeout_ms: self.opt_u64(
                "limits",
                &FLOW_IDLE_TIMEOUT,
                raw.flow_idle_timeout_ms,
                d.flow_idle_timeout_ms,
            ),
            sources: self.opt_u32("limits", &SOURCES, raw.sources, d.sources),
            ring_buffer_bytes: self.opt_u32(
                "limits",
                &RING_BUFFER,
                raw.ring_buffer_bytes,
                d.ring_buffer_bytes,
            ),
            allow_entries: self.opt_u32(
                "limits",
                &ALLOW_ENTRIES,
                raw.allow_entries,
                d.allow_entries,
            ),
            events_per_group_per_second: self.opt_u32(
                "limits",
                &EVENTS_PER_GROUP,
                raw.events_per_group_per_second,
                d.events_per_group_per_second,
            ),
        }
    }

    pub(super) fn sampling(&self, raw: RawSampling) -> Sampling {
        Sampling {
            allowed_flows_one_in: self.opt_u32(
                "sampling",
                &SAMPLING_ONE_IN,
                raw.allowed_flows_one_in,
                Sampling::DEFAULT.allowed_flows_one_in,
            ),
        }
    }
}
