//! Training configurations (`config.toml`, `--config`): any text gives a validated
//! configuration whose model can be built within a small memory limit, or an error; never a
//! panic or an abort.
#![no_main]
use dfa::train::config::TrainConfig;
use dfa::train::model::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static LIMIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any other thread of this process reads the environment
    LIMIT.call_once(|| unsafe { std::env::set_var("DFA_MEMORY_LIMIT", "268435456") });
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = TrainConfig::from_toml(text, "fuzz") else { return };
    let _ = config.warnings();
    let _ = config.plan();
    let n_in = if config.is_conv() { config.dataset.image_shape().len() } else { 784 };
    let _ = Model::new(&config, n_in, config.dataset.n_classes());
});
