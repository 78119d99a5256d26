//! Reading the ring buffer with a budget: one read takes at most [`DRAIN_BUDGET`] records or
//! [`DRAIN_SLICE`] of time, then hands the event loop back, so that under a flood the tick
//! (answer timeouts, housekeeping, alert windows, metrics), reloads, signals and the tasks
//! that share the thread (sinks, the metrics server) still run. What is left is read on the
//! next turn of the loop.
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};

/// Most records one read takes before it yields.
pub(super) const DRAIN_BUDGET: usize = 4096;
/// Longest one read lasts before it yields (checked every [`CLOCK_EVERY`] records).
pub(super) const DRAIN_SLICE: Duration = Duration::from_millis(10);
/// Records between two looks at the clock.
const CLOCK_EVERY: usize = 64;

/// Where records come from: the ring buffer, or a test's fake.
pub(super) trait RecordSource {
    /// Hands the next record to `f`; false when there is none now.
    fn read_next(&mut self, f: &mut dyn FnMut(&[u8])) -> bool;
}

impl RecordSource for RingBuf<MapData> {
    fn read_next(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        match self.next() {
            Some(item) => {
                f(&item);
                true
            }
            None => false,
        }
    }
}

/// How a read ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Drained {
    /// The source had no more records.
    Empty,
    /// The budget or the time slice ran out with records possibly left.
    Yielded,
}

/// Hands records from `source` to `f` until it is empty, `budget` records were read, or
/// `slice` has passed.
pub(super) fn drain_records(
    source: &mut impl RecordSource,
    budget: usize,
    slice: Duration,
    mut f: impl FnMut(&[u8]),
) -> Drained {
    let start = Instant::now();
    for n in 0..budget {
        if n > 0 && n.is_multiple_of(CLOCK_EVERY) && start.elapsed() >= slice {
            return Drained::Yielded;
        }
        if !source.read_next(&mut f) {
            return Drained::Empty;
        }
    }
    Drained::Yielded
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `left` records of 8 bytes, each taking `cost` to produce.
    struct Fake {
        left: usize,
        read: usize,
        cost: Duration,
    }

    impl RecordSource for Fake {
        fn read_next(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
            if self.left == 0 {
                return false;
            }
            if !self.cost.is_zero() {
                std::thread::sleep(self.cost);
            }
            self.left -= 1;
            self.read += 1;
            f(&[0u8; 8]);
            true
        }
    }

    fn fake(left: usize, cost: Duration) -> Fake {
        Fake {
            left,
            read: 0,
            cost,
        }
    }

    #[test]
    fn a_flood_is_read_in_budgets_and_the_loop_gets_its_turn() {
        // A ring that never runs dry (a flood): one read must end after the budget.
        let mut ring = fake(1_000_000, Duration::ZERO);
        let mut seen = 0usize;
        let d = drain_records(&mut ring, DRAIN_BUDGET, Duration::from_secs(3600), |_| {
            seen += 1;
        });
        assert_eq!(d, Drained::Yielded);
        assert_eq!(seen, DRAIN_BUDGET);
        assert_eq!(ring.read, DRAIN_BUDGET, "no record read and lost");
        // The next turn goes on where this one stopped.
        let d = drain_records(&mut ring, DRAIN_BUDGET, Duration::from_secs(3600), |_| {
            seen += 1;
        });
        assert_eq!(d, Drained::Yielded);
        assert_eq!(seen, 2 * DRAIN_BUDGET);
    }

    #[test]
    fn a_slow_read_yields_after_its_time_slice() {
        // 5000 records at 200 µs each would hold the loop for a second or more.
        let mut ring = fake(5000, Duration::from_micros(200));
        let t = Instant::now();
        let d = drain_records(&mut ring, DRAIN_BUDGET, DRAIN_SLICE, |_| {});
        let took = t.elapsed();
        assert_eq!(d, Drained::Yielded);
        assert!(ring.read < DRAIN_BUDGET, "read {}", ring.read);
        assert!(took < Duration::from_millis(200), "held the loop {took:?}");
    }

    #[test]
    fn a_ring_that_runs_dry_says_so() {
        let mut ring = fake(10, Duration::ZERO);
        let mut seen = 0;
        assert_eq!(
            drain_records(&mut ring, DRAIN_BUDGET, DRAIN_SLICE, |_| seen += 1),
            Drained::Empty
        );
        assert_eq!(seen, 10);
        assert_eq!(
            drain_records(&mut ring, DRAIN_BUDGET, DRAIN_SLICE, |_| seen += 1),
            Drained::Empty
        );
        assert_eq!(seen, 10);
    }
}
