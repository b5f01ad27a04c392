//! Kolen–Pollack: the feedback matrices receive the forward weights' transposed updates and both
//! decay, checked over several steps on real MNIST against the rule's algebra written out.

mod common;

use dfa::data::{self, DatasetKind};
use dfa::optim::OptimiserKind;
use dfa::rules::Rule;
use dfa::train::config::TrainConfig;
use dfa::train::{Trainer, apply_subsets};

/// `B_l − W_{l+1}ᵀ` for every hidden layer, in `B_l`'s layout, in f64.
fn gaps(t: &Trainer) -> Vec<Vec<f64>> {
    let net = &t.model.net;
    (0..net.depth() - 1)
        .map(|l| {
            let b = t.model.feedback.for_layer(l).unwrap();
            let w = &net.layers[l + 1];
            if w.block.is_some() {
                // below a block, B has the kernels' layout
                return b.values.iter().zip(&w.weight).map(|(&b, &w)| b as f64 - w as f64).collect();
            }
            let mut d = vec![0.0; b.values.len()];
            for i in 0..b.rows {
                for j in 0..b.cols {
                    d[i * b.cols + j] = b.values[i * b.cols + j] as f64 - w.weight[j * w.fan_in + i] as f64;
                }
            }
            d
        })
        .collect()
}

/// A KP trainer; `adversarial_alpha` `Some(α)` trains on FGSM inputs (ε 0.08) with that weight of
/// the clean loss (α = 0 as the paper's code: the adversarial pass alone, unclipped).
fn trainer(
    model: &str,
    optimiser: OptimiserKind,
    lr: f32,
    weight_decay: Option<f32>,
    adversarial_alpha: Option<f32>,
) -> Trainer {
    let config = TrainConfig {
        rule: Rule::KP,
        model: model.into(),
        init: dfa::layers::Init::Uniform,
        optimiser,
        learning_rate: lr,
        weight_decay,
        train_subset: Some(640),
        test_subset: Some(100),
        threads: 1,
        adversarial_epsilon: if adversarial_alpha.is_some() { 0.08 } else { 0.0 },
        adversarial_alpha: adversarial_alpha.unwrap_or(0.5),
        adversarial_clip: adversarial_alpha != Some(0.0),
        ..Default::default()
    };
    let data = apply_subsets(data::load(DatasetKind::Mnist, &common::data_dir()).unwrap(), &config);
    Trainer::new(config, &data).unwrap()
}

/// Six steps under SGD and under RMSprop, with decay: each step `B_l − W_{l+1}ᵀ` shrinks by
/// exactly `(1 − lr·λ)` (the transposed updates cancel; only the decay is left), so after `k`
/// steps it is `(1 − lr·λ)^k` times the first, to rounding (1e-5 of its largest entry);
/// meanwhile `B` moved by more than 0.01 beyond its decay (the check is not met by a `B` that
/// stands still). Without decay the gap stays where it was while the weights move. The same
/// under adversarial training, with two passes (α = 0.5) and with the adversarial pass alone
/// (α = 0, whose gradient the feedback must take from that pass: a stale one breaks the gap).
#[test]
fn feedback_receives_the_transposed_update_and_both_decay() {
    // a dense net, and a conv net whose block's feedback kernels learn untransposed
    for (model, optimiser, lr, wd, adversarial) in [
        ("30,20", OptimiserKind::Sgd, 0.5, 0.2, None),
        ("30,20", OptimiserKind::Rmsprop, 1e-2, 5.0, None),
        ("30,20", OptimiserKind::Rmsprop, 1e-2, 0.0, None),
        ("c4k5p2,p2s2,c6k3,p2s2,20", OptimiserKind::Rmsprop, 1e-2, 5.0, None),
        ("30,20", OptimiserKind::Rmsprop, 1e-2, 5.0, Some(0.5)),
        ("30,20", OptimiserKind::Rmsprop, 1e-2, 5.0, Some(0.0)),
    ] {
        let mut t = trainer(model, optimiser, lr, Some(wd), adversarial);
        let first = gaps(&t);
        let b0 = t.model.feedback.clone();
        let indices: Vec<u32> = (0..640).collect();
        let steps = 6;
        for s in 0..steps {
            t.train_batch(&indices[s * 64..(s + 1) * 64]);
        }
        let factor = (1.0 - lr as f64 * wd as f64).powi(steps as i32);
        for (l, (now, before)) in gaps(&t).iter().zip(&first).enumerate() {
            let scale = before.iter().map(|v| v.abs()).fold(0.0, f64::max);
            let worst = now.iter().zip(before).map(|(n, b)| (n - factor * b).abs()).fold(0.0, f64::max);
            assert!(
                worst < 1e-5 * scale.max(1.0),
                "{model} {optimiser:?} λ {wd} adversarial {adversarial:?} layer {l}: off by {worst:e}"
            );
            let b = (&b0.for_layer(l).unwrap().values, &t.model.feedback.for_layer(l).unwrap().values);
            // what the updates moved B by, beside what the decay alone would have done
            let learnt = b.0.iter().zip(b.1).map(|(&a, &c)| (c as f64 - factor * a as f64).abs()).fold(0.0, f64::max);
            assert!(
                learnt > 1e-2,
                "{model} {optimiser:?} λ {wd} adversarial {adversarial:?} layer {l}: B learnt only {learnt:e}"
            );
        }
    }
}
