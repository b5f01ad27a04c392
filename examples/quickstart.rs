//! Train a small network with Direct Feedback Alignment through the library API.
//!
//! ```text
//! DFA_DATA=../shared/data cargo run --release --example quickstart
//! ```
//! (CI runs it too, through `tests/examples.rs`.)

use dfa::data::{self, DatasetKind};
use dfa::rules::Rule;
use dfa::train::config::TrainConfig;
use dfa::train::{Trainer, apply_subsets};

pub fn main() -> anyhow::Result<()> {
    let config = TrainConfig {
        rule: Rule::DFA,
        model: "2x100".into(),
        train_subset: Some(10_000),
        learning_rate: 1e-3,
        test_subset: Some(1000),
        max_epochs: 3,
        threads: 2,
        ..TrainConfig::default()
    };
    let data = data::load(DatasetKind::Mnist, &data::resolve_data_dir(None))?;
    let data = apply_subsets(data, &config);
    let mut trainer = Trainer::new(config, &data)?;
    let mut last = None;
    while trainer.progress.stop.is_none() {
        let m = trainer.run_epoch(&mut |_, _| {});
        println!(
            "epoch {}: loss {:.4}, train error {:.2}%, test error {:.2}%",
            m.epoch, m.loss, m.train_error, m.test_error
        );
        last = Some(m);
    }
    let last = last.expect("at least one epoch");
    anyhow::ensure!(last.train_error < 20.0, "DFA did not learn: {:.2}% training error", last.train_error);
    Ok(())
}
