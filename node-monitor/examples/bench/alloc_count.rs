//! The bench's global allocator: the system allocator, counting (while the identity section
//! asks it to) the bytes held and the most held at once. Off, it costs one relaxed load per
//! call, so that the other sections run as they would without it.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicBool, AtomicIsize, Ordering},
};

struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed since `start` (frees of older blocks count too, so
/// only differences between two readings mean something).
static HELD: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grow(by: usize) {
    if ON.load(Ordering::Relaxed) {
        let by = by as isize;
        let now = HELD.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

fn shrink(by: usize) {
    if ON.load(Ordering::Relaxed) {
        HELD.fetch_sub(by as isize, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            grow(new_size - layout.size());
        } else {
            shrink(layout.size() - new_size);
        }
        // SAFETY: as the caller promised.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Counts from now.
pub(crate) fn start() {
    HELD.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
}

pub(crate) fn stop() {
    ON.store(false, Ordering::Relaxed);
}

pub(crate) fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

/// The most held since `start` or the last `reset_peak`.
pub(crate) fn peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}

pub(crate) fn reset_peak() {
    PEAK.store(held(), Ordering::Relaxed);
}
