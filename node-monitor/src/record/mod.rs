//! Records: ring-buffer bytes decoded into typed flow records. A kernel code becomes an enum or
//! a bit set here, once; text is made only where a format writes it.
mod clock;
mod codes;
mod decode;
#[cfg(any(test, feature = "test-support"))]
pub mod fixture;
mod flow;
mod identity;
mod ifnames;

pub use clock::{Clock, rfc3339};
pub use codes::{Action, Answer, Family, Hook, Protocol, RecordType, TcpFlags, Verdict};
pub use decode::{DecodeError, decode};
pub(crate) use decode::{flow_key, from_event};
pub use flow::FlowRecord;
pub use identity::{
    CacheState, DestinationIdentity, FlowIdentity, NodeIdentity, PodIdentity, ServiceIdentity,
    SourceIdentity, Workload,
};
