#![allow(dead_code)]

pub mod packets;
