//! Window arithmetic shared by dedup, sweeps and floods.
use std::time::{Duration, Instant};

/// `now` is before `start + window` (an unrepresentable end never comes).
pub(crate) fn within(start: Instant, window: Duration, now: Instant) -> bool {
    start.checked_add(window).is_none_or(|end| now < end)
}
