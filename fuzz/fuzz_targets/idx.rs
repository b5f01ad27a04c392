//! IDX files (MNIST, Fashion-MNIST), raw or gzip: any bytes give an array or an error, never a
//! panic, and never more memory than the header declares (libFuzzer's -rss_limit_mb catches that).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for ndim in [None, Some(1), Some(3)] {
        if let Ok(a) = dfa::data::idx::parse_stored(data, Path::new("fuzz.idx"), ndim) {
            assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
        }
    }
});
