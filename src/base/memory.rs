//! How much memory the machine can give, so that a net that does not fit is refused with its
//! size before anything is allocated (an allocation that fails aborts the process).

use crate::base::error::{Error, Result};

/// The memory available to a new allocation: `MemAvailable` of `/proc/meminfo` (Linux), or
/// `DFA_MEMORY_LIMIT` (bytes) when set, whichever is smaller; `None` when neither is known.
pub fn available_bytes() -> Option<u64> {
    let limit = std::env::var("DFA_MEMORY_LIMIT").ok().and_then(|v| v.trim().parse::<u64>().ok());
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (limit, meminfo) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `bytes` as GiB with two decimals.
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Fails when `needed` bytes (of `what`, named by `field`) exceed the memory available.
pub fn check_fits(needed: u64, field: &str, what: &str) -> Result<()> {
    match available_bytes() {
        Some(available) if needed > available => Err(Error::config(
            field,
            format!("{what} needs about {}, more than the {} of memory available", gib(needed), gib(available)),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_positive_amount_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(available_bytes().is_some_and(|b| b > 0));
        }
    }

    #[test]
    fn refuses_more_than_there_is() {
        let err = check_fits(u64::MAX, "model", "the net").unwrap_err().to_string();
        assert!(err.starts_with("invalid model: the net needs about"), "{err}");
        assert!(check_fits(1, "model", "the net").is_ok());
    }
}
