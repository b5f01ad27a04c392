//! Alignment diagnostics: BP against itself, FA with `B = Wᵀ`, and DFA on real MNIST.

mod common;

use dfa::base::rng::{DfaRng, Stream};
use dfa::data::{self, DatasetKind};
use dfa::layers::activation::Activation;
use dfa::layers::{Network, Workspace, output_error};
use dfa::rules::{self, Feedback, Rule};
use dfa::train::alignment::{Scratch, measure};
use dfa::train::config::TrainConfig;
use dfa::train::{Trainer, apply_subsets};

const SIZES: [usize; 5] = [6, 5, 4, 4, 3];

fn measured(rule: Rule, net: &Network, fb: &Feedback) -> Vec<dfa::train::alignment::LayerAlignment> {
    let rows = 7;
    let mut rng = DfaRng::new(9, Stream::Shuffle);
    let x: Vec<f32> = (0..rows * SIZES[0]).map(|_| rng.unit()).collect();
    let y: Vec<u8> = (0..rows).map(|_| rng.below(3) as u8).collect();
    let mut ws = Workspace::new(net, rows);
    net.forward(&x, rows, &mut ws, 1);
    let logits = ws.outputs[net.depth() - 1].clone();
    output_error(&logits, &y, 3, &mut ws.deltas[net.depth() - 1]);
    rules::hidden_deltas(rule, net, fb, &mut ws, rows, 1);
    let mut scratch = Scratch::new(net, &ws);
    measure(&vec![rule; net.depth() - 1], net, fb, &ws, (&x, rows), &mut scratch, 1)
}

#[test]
fn bp_is_aligned_with_itself_exactly() {
    let net = Network::new(&SIZES, Activation::Tanh, true, true, &mut DfaRng::new(3, Stream::Weights));
    let fb = Feedback::new(Rule::BP, &SIZES, false, None, &mut DfaRng::new(3, Stream::Feedback));
    let a = measured(Rule::BP, &net, &fb);
    assert_eq!(a.len(), 3);
    for l in &a {
        assert_eq!(
            (l.delta_angle_mean, l.delta_angle_batch, l.update_angle),
            (Some(0.0), Some(0.0), Some(0.0)),
            "{l:?}"
        );
        assert_eq!(l.criterion_positive, 1.0);
        assert_eq!(l.feedback_angle, None);
    }
}

#[test]
fn fa_with_transposed_weights_is_aligned_and_random_fa_is_not() {
    let net = Network::new(&SIZES, Activation::Tanh, true, true, &mut DfaRng::new(3, Stream::Weights));
    let mut fb = Feedback::new(Rule::FA, &SIZES, false, None, &mut DfaRng::new(3, Stream::Feedback));
    let random = measured(Rule::FA, &net, &fb);
    // random B: around 90° from Wᵀ, and the update directions far from BP's
    assert!(random.iter().all(|l| l.feedback_angle.is_some_and(|a| a > 45.0)), "{random:?}");
    assert!(random.iter().any(|l| l.delta_angle_batch.unwrap() > 30.0), "{random:?}");
    for (l, m) in fb.matrices.iter_mut().enumerate() {
        let w = &net.layers[l + 1];
        for r in 0..m.rows {
            for c in 0..m.cols {
                m.values[r * m.cols + c] = w.weight[c * w.fan_in + r];
            }
        }
    }
    for l in measured(Rule::FA, &net, &fb) {
        assert!(l.feedback_angle.unwrap() < 1e-3, "{l:?}");
        assert!(l.delta_angle_batch.unwrap() < 1e-2 && l.update_angle.unwrap() < 1e-2, "{l:?}");
        assert_eq!(l.criterion_positive, 1.0);
    }
}

/// DFA on the first 5000 MNIST images (2x200 tanh, lr 3e-4, seed 1): the hidden layers' update
/// directions turn to within 90° of the true gradient within the first epoch. Measured: after
/// the first epoch 75° / 70° (layers 1 / 2), after 4 epochs 44° / 46°, L_k > 0 for every sample.
#[test]
fn dfa_aligns_with_backpropagation_on_mnist() {
    let config = TrainConfig {
        rule: Rule::DFA,
        model: "2x200".into(),
        learning_rate: 3e-4,
        train_subset: Some(5000),
        test_subset: Some(500),
        max_epochs: 4,
        align_every: 20,
        threads: 2,
        ..Default::default()
    };
    let data = apply_subsets(data::load(DatasetKind::Mnist, &common::data_dir()).unwrap(), &config);
    let mut t = Trainer::new(config.clone(), &data).unwrap();
    let mut epochs = Vec::new();
    while t.progress.stop.is_none() {
        epochs.push(t.run_epoch(&mut |_, _| {}));
    }
    let first = &epochs[0].alignment;
    assert_eq!(first.iter().map(|r| r.batch).collect::<Vec<_>>(), vec![0, 20, 40, 60]);
    assert!(first.iter().all(|r| r.batches == 79)); // 5000 images in batches of 64
    let last = epochs.last().unwrap().alignment.last().unwrap();
    for l in &last.layers {
        assert!(l.delta_angle_mean.unwrap() < 60.0 && l.update_angle.unwrap() < 60.0, "{l:?}");
        assert!(l.criterion_positive > 0.9, "{l:?}");
    }
    // measuring does not change the run
    let mut quiet = Trainer::new(TrainConfig { align_every: 0, ..config }, &data).unwrap();
    let mut m = None;
    while quiet.progress.stop.is_none() {
        m = Some(quiet.run_epoch(&mut |_, _| {}));
    }
    assert_eq!(quiet.model.net, t.model.net);
    assert_eq!(m.unwrap().loss.to_bits(), epochs.last().unwrap().loss.to_bits());
}
