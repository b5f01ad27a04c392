//! Bounded inflation: any bytes inflate to at most the limit or give an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = dfa::data::idx::maybe_gunzip(data.to_vec(), Path::new("fuzz.gz"), LIMIT) {
        assert!(out.len() <= LIMIT.max(data.len()));
    }
});
