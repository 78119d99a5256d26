//! Watchers the daemon drives: the config file (reload when its content changes) and the
//! network interfaces (attach to matching ones as they appear, forget those that go).
mod config_file;
mod ifaces;

pub use config_file::ConfigWatcher;
pub use ifaces::{IFACE_POLL_PERIOD, IfaceChanges, IfaceWatcher};
