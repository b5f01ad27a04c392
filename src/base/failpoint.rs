//! Crash points for the tests: `DFA_FAILPOINT=NAME` (or `NAME@K`, the `K`-th time it is
//! reached) makes the process abort at the point named `NAME`, as a kill at that instruction
//! would leave it (no destructor runs, no buffer is flushed, the OS releases the locks). The
//! kill tests stop a run with them between every two writes of an epoch; unset, a point costs
//! one comparison.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Aborts the process when `DFA_FAILPOINT` names `point` (and, with `@K`, on its `K`-th visit).
pub fn failpoint(point: &str) {
    static WANTED: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static VISITS: AtomicUsize = AtomicUsize::new(0);
    let wanted = WANTED.get_or_init(|| {
        let text = std::env::var("DFA_FAILPOINT").ok()?;
        Some(match text.split_once('@') {
            Some((name, k)) => (name.to_string(), k.parse().unwrap_or(1)),
            None => (text, 1),
        })
    });
    if let Some((name, k)) = wanted
        && name == point
        && VISITS.fetch_add(1, Ordering::Relaxed) + 1 == *k
    {
        std::process::abort();
    }
}
