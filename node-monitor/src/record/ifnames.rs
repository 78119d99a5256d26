//! The interface-name cache: a record needs its interface's name, and asking the kernel for
//! it per record would cost a syscall each time.
use std::{cell::RefCell, sync::Arc};

use ahash::HashMap;

/// How long a name is trusted (ns).
const TTL_NS: u64 = 1_000_000_000;
/// Entries kept at most; past that the cache starts over.
const MAX_ENTRIES: usize = 4096;

/// Name (None: no such interface) and when it was read (monotonic ns).
type Entry = (Option<Arc<str>>, u64);

thread_local! {
    static CACHE: RefCell<HashMap<u32, Entry>> = RefCell::new(HashMap::default());
}

/// The name of interface `index`, cached for a second. `now_ns` is the batch's
/// [`super::Clock`] time (monotonic), so a record costs no clock read either.
pub(crate) fn cached_ifname(index: u32, now_ns: u64) -> Option<Arc<str>> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((name, at)) = c.get(&index)
            && now_ns.saturating_sub(*at) < TTL_NS
        {
            return name.clone();
        }
        if c.len() > MAX_ENTRIES {
            c.clear();
        }
        let name: Option<Arc<str>> = crate::netif::ifname(index).map(Arc::from);
        c.insert(index, (name.clone(), now_ns));
        name
    })
}
