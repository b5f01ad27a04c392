//! Checkpoint loading: any bytes give a model of the configured shape or an error naming the
//! file, never a panic. The seed corpus holds real checkpoints (`scripts/fuzz.sh` writes them).
#![no_main]
use dfa::train::config::TrainConfig;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for (model, optimiser) in [("2x16", "rmsprop"), ("16", "sgd")] {
        let text = format!("model = \"{model}\"\noptimiser = \"{optimiser}\"\nrule = \"dfa\"\n");
        let config = TrainConfig::from_toml(&text, "fuzz").expect("a valid configuration");
        let path = Path::new("fuzz.safetensors");
        if let Ok((model, _)) = dfa::train::record::checkpoint::load_checkpoint_bytes(data, path, &config, 784, 10) {
            assert_eq!(model.net.n_inputs(), 784);
        }
    }
});
