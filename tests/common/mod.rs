//! Shared by the integration tests: where the real data sets are.
#![allow(dead_code)]

use std::path::PathBuf;

/// The data folder: `$DFA_DATA` (CI sets it to `../shared/data`), else `../shared/data` beside
/// the checkout. Tests about learning need real data and fail loudly without it.
pub fn data_dir() -> PathBuf {
    let dir = match std::env::var_os("DFA_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    };
    assert!(
        dir.join("mnist").is_dir(),
        "real MNIST not found in {}: set DFA_DATA to a folder with mnist/ (CI uses ../shared/data)",
        dir.display()
    );
    dir.canonicalize().expect("data folder resolves")
}

pub fn mnist_dir() -> PathBuf {
    data_dir().join("mnist")
}
