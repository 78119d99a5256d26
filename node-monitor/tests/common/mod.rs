#![allow(dead_code)]

pub mod daemon;
pub mod packets;
pub mod progrun;
pub mod receivers;
