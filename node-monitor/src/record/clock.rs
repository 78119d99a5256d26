//! Kernel monotonic time → wall-clock time, and the RFC 3339 text of a wall-clock time.
use std::time::{Duration, SystemTime};

/// Converts kernel monotonic timestamps to wall-clock time. Taken once per batch of records.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Realtime minus monotonic, in ns.
    offset_ns: i128,
    /// Monotonic time when the clock was taken (ns): "now" for the whole batch.
    taken_ns: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
            taken_ns: u64::try_from(mono).unwrap_or(0),
        }
    }
    /// A clock with a fixed offset (tests).
    #[cfg(test)]
    pub(crate) fn fixed(offset_ns: i128, taken_ns: u64) -> Clock {
        Clock {
            offset_ns,
            taken_ns,
        }
    }
    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        let ns = i128::from(ktime_ns) + self.offset_ns;
        if ns <= 0 {
            SystemTime::UNIX_EPOCH
        } else {
            SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
        }
    }
    /// Monotonic time when the clock was taken: "now" for the whole batch (ns).
    pub(crate) fn taken_ns(&self) -> u64 {
        self.taken_ns
    }
    /// Current monotonic time, in the kernel's `bpf_ktime_get_ns` clock.
    pub fn ktime_now() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC) as u64
    }
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(id, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// RFC 3339, UTC, microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}
