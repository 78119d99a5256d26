//! Types and constants shared by the eBPF programs and the userspace daemon.
//!
//! Every type that crosses a map is `#[repr(C)]`, built from fixed-width integers with
//! explicit padding, and its size is asserted at compile time, so that both sides read
//! the same bytes. No `bool`, `enum` or `Option` crosses a map.
#![no_std]

mod addr;
mod budget;
mod codes;
mod event;
mod flood;
mod flow;
mod maps;
mod ports;
pub mod reason;
mod stats;
mod verdict;

pub use addr::*;
pub use budget::*;
pub use codes::*;
pub use event::*;
pub use flood::*;
pub use flow::*;
pub use maps::*;
pub use ports::*;
pub use stats::*;
pub use verdict::*;

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are #[repr(C)], built only from integers and byte arrays, with
    // explicit padding fields, so every bit pattern is valid and there are no hidden bytes.
    unsafe impl aya::Pod for GroupStats {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for SourceSlot {}
    unsafe impl aya::Pod for TokenBucket {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for VerdictSlot {}
    unsafe impl aya::Pod for GroupBudget {}
    unsafe impl aya::Pod for FloodTop {}
    unsafe impl aya::Pod for GroupAnswers {}
    unsafe impl aya::Pod for PendingAccept {}
}
