//! CIFAR-10 / CIFAR-100 binary records: labels in range or an error, never a panic.
#![no_main]
use dfa::data::DatasetKind;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for kind in [DatasetKind::Cifar10, DatasetKind::Cifar100, DatasetKind::Cifar100Coarse] {
        if let Ok((labels, pixels)) = dfa::data::cifar::parse(data, kind, Path::new("fuzz.bin")) {
            assert_eq!(pixels.len(), labels.len() * dfa::data::cifar::PIXELS);
            assert!(labels.iter().all(|&l| (l as usize) < kind.n_classes()));
        }
    }
});
