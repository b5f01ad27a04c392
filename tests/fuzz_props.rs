//! The fuzz targets' properties (`fuzz/`, `scripts/fuzz.sh`) as a short proptest corpus that
//! runs in CI: mutated IDX files (raw and gzip), CIFAR records, checkpoints and configurations
//! give a value or an error that names the input, never a panic.

use dfa::base::shape::Shape;
use dfa::data::DatasetKind;
use dfa::data::idx::{encode, maybe_gunzip, parse_stored};
use dfa::train::config::TrainConfig;
use dfa::train::model::Model;
use dfa::train::protocol::Progress;
use dfa::train::record::checkpoint::{checkpoint_bytes, load_checkpoint_bytes};
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A mutation: overwrite bytes, cut the end, or append bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
    ];
    prop::collection::vec(one, 1..6)
}

fn mutate(mut bytes: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        match m {
            Mutation::Set(i, b) if !bytes.is_empty() => {
                let n = bytes.len();
                bytes[i % n] = *b;
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Mutation::Append(tail) => bytes.extend_from_slice(tail),
            _ => {}
        }
    }
    bytes
}

fn idx_seed(images: bool) -> Vec<u8> {
    if images {
        encode(&[3, 4, 5], &(0..60).map(|i| i as u8).collect::<Vec<_>>())
    } else {
        encode(&[7], &[0, 1, 2, 3, 4, 5, 9])
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn idx_files_parse_or_name_the_file(images: bool, zipped: bool, ms in mutations()) {
        let seed = idx_seed(images);
        let bytes = if zipped { mutate(gzip(&seed), &ms) } else { mutate(seed, &ms) };
        for ndim in [None, Some(1), Some(3)] {
            match parse_stored(&bytes, Path::new("mutated.idx"), ndim) {
                Ok(a) => prop_assert_eq!(a.data.len(), a.dims.iter().product::<usize>()),
                Err(e) => prop_assert!(e.to_string().contains("mutated.idx"), "{}", e),
            }
        }
    }

    #[test]
    fn inflation_is_bounded(ms in mutations(), limit in 1usize..4096) {
        let bytes = mutate(gzip(&vec![7u8; 3000]), &ms);
        match maybe_gunzip(bytes.clone(), Path::new("mutated.gz"), limit) {
            Ok(out) => prop_assert!(out.len() <= limit.max(bytes.len())),
            Err(e) => prop_assert!(e.to_string().contains("mutated.gz"), "{}", e),
        }
    }

    #[test]
    fn cifar_records_parse_or_name_the_file(bytes in prop::collection::vec(any::<u8>(), 0..7000)) {
        for kind in [DatasetKind::Cifar10, DatasetKind::Cifar100, DatasetKind::Cifar100Coarse] {
            match dfa::data::cifar::parse(&bytes, kind, Path::new("mutated.bin")) {
                Ok((labels, pixels)) => {
                    prop_assert_eq!(pixels.len(), labels.len() * dfa::data::cifar::PIXELS);
                    prop_assert!(labels.iter().all(|&l| (l as usize) < kind.n_classes().unwrap()));
                }
                Err(e) => prop_assert!(e.to_string().contains("mutated.bin"), "{}", e),
            }
        }
    }
}

fn checkpoint_seed() -> (TrainConfig, Vec<u8>) {
    let config = TrainConfig::from_toml("model = \"2x8\"\nrule = \"dfa\"\ninit = \"uniform\"\n", "test").unwrap();
    let model = Model::new(&config, Shape::flat(12), 3).unwrap();
    let bytes = checkpoint_bytes(&model, &Progress::start(&config, 0), &config).unwrap();
    (config, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn checkpoints_load_or_name_the_file(ms in mutations()) {
        let (config, seed) = checkpoint_seed();
        let bytes = mutate(seed, &ms);
        match load_checkpoint_bytes(&bytes, Path::new("mutated.safetensors"), &config, Shape::flat(12), 3) {
            Ok((model, _)) => prop_assert_eq!(model.net.n_inputs(), 12),
            Err(e) => prop_assert!(e.to_string().contains("mutated.safetensors"), "{}", e),
        }
    }

    #[test]
    fn configurations_validate_or_name_the_origin(
        fields in prop::collection::vec((0usize..KEYS.len(), 0usize..VALUES.len()), 0..6),
    ) {
        let text: String = fields.iter().map(|&(k, v)| format!("{} = {}\n", KEYS[k], VALUES[v])).collect();
        // SAFETY: every test of this binary sets the same value
        unsafe { std::env::set_var("DFA_MEMORY_LIMIT", "268435456") };
        match TrainConfig::from_toml(&text, "mutated.toml") {
            Ok(config) => {
                let _ = config.warnings();
                let input = match config.dataset.image_shape() {
                    Some(shape) if config.is_conv() => shape,
                    _ => Shape::flat(784),
                };
                if let Err(e) = Model::new(&config, input, config.dataset.n_classes().unwrap_or(10)) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            // "invalid mutated.toml: …" for TOML that is not a configuration, "invalid FIELD: …"
            Err(e) => prop_assert!(e.to_string().starts_with("invalid "), "{}", e),
        }
    }
}

const KEYS: &[&str] = &[
    "model",
    "rule",
    "activation",
    "learning_rate",
    "batch_size",
    "max_epochs",
    "seed",
    "dataset",
    "layer_rules",
    "freeze",
    "dropout_input",
    "dropout_hidden",
    "optimiser",
    "validation",
    "init",
    "shared_feedback",
    "feedback_bound",
    "train_subset",
    "adv_epsilon",
    "adversarial_clip",
    "adversarial_batch_error",
    "schedule_start",
];

const VALUES: &[&str] = &[
    "\"2x8\"",
    "\"c4k3,p2s2,8\"",
    "\"conv-small\"",
    "\"0x8\"",
    "\"8,0\"",
    "\"dfa\"",
    "\"bp\"",
    "\"nope\"",
    "\"tanh\"",
    "\"cifar10\"",
    "[\"dfa\", \"bp\"]",
    "[1]",
    "[0]",
    "[99]",
    "0",
    "1",
    "-1",
    "1e-4",
    "nan",
    "inf",
    "0.5",
    "1.5",
    "18446744073709551615",
    "true",
    "\"\"",
    "\"sgd\"",
    "\"uniform\"",
    "1000000",
];
