//! Dropout and adversarial training against hand computations.

use dfa::base::rng::{DfaRng, Stream};
use dfa::layers::activation::Activation;
use dfa::layers::{Dense, Network, Workspace, output_error};
use dfa::rules::{self, Feedback, Rule};
use dfa::train::{draw_mask, fast_gradient_sign};

#[test]
fn dropout_masks_are_zero_or_scaled_with_the_right_rate() {
    let mut rng = DfaRng::new(1, Stream::Dropout);
    for p in [0.1f32, 0.5] {
        let mut m = vec![0.0; 200_000];
        draw_mask(&mut m, p, &mut rng);
        let keep = 1.0 / (1.0 - p);
        assert!(m.iter().all(|&v| v == 0.0 || v == keep));
        let dropped = m.iter().filter(|&&v| v == 0.0).count() as f32 / m.len() as f32;
        assert!((dropped - p).abs() < 0.005, "p {p}: dropped {dropped}");
        // inverted dropout keeps the expectation: E[m] = 1
        let mean = m.iter().map(|&v| v as f64).sum::<f64>() / m.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "p {p}: mean {mean}");
    }
}

/// Every rule with fixed masks, against the formulas written out with the masks:
/// `x̃ = x ⊙ m_0`, `h̃_l = f(a_l) ⊙ m_l`, `δa_l = (rule's signal) ⊙ f'(a_l) ⊙ m_l`, `∂W_l = δa_l h̃_{l-1}ᵀ`.
#[test]
#[allow(clippy::needless_range_loop)] // indices mirror the formulas
fn dropout_masks_gate_the_forward_pass_and_every_rule() {
    let sizes = [5, 4, 3, 2];
    let rows = 3;
    for rule in [Rule::BP, Rule::FA, Rule::DFA, Rule::IFA] {
        let net = Network::new(&sizes, Activation::Tanh, true, true, &mut DfaRng::new(4, Stream::Weights));
        let fb = Feedback::new(rule, &sizes, false, None, &mut DfaRng::new(5, Stream::Feedback));
        let mut ws = Workspace::new(&net, rows).with_dropout(&net);
        ws.dropout_active = true;
        // masks by hand: every third unit dropped, the rest scaled by 2
        for m in ws.masks.iter_mut() {
            for (i, v) in m.iter_mut().enumerate() {
                *v = if i % 3 == 1 { 0.0 } else { 2.0 };
            }
        }
        let masks = ws.masks.clone();
        let x: Vec<f32> = (0..rows * 5).map(|i| (i as f32 * 0.13).sin().abs()).collect();
        let y = [0u8, 1, 1];
        net.forward(&x, rows, &mut ws, 1);
        let logits = ws.outputs[2].clone();
        output_error(&logits, &y, 2, &mut ws.deltas[2]);
        rules::hidden_deltas(rule, &net, &fb, &mut ws, rows, 1);
        rules::gradients(&net, &x, &mut ws, rows, 1);

        // the same, plainly, one sample at a time in f64
        let w = |l: usize, o: usize, i: usize| net.layers[l].weight[o * sizes[l] + i] as f64;
        let b = |k: usize, r: usize, c: usize| {
            let m = fb.for_layer(k).unwrap();
            m.values[r * m.cols + c] as f64
        };
        let mut want: Vec<Vec<f64>> = net.layers.iter().map(|l: &Dense| vec![0.0; l.weight.len()]).collect();
        for s in 0..rows {
            let mask = |l: usize, i: usize| masks[l][s * sizes[l] + i] as f64;
            let mut h_tilde: Vec<Vec<f64>> = vec![(0..5).map(|i| x[s * 5 + i] as f64 * mask(0, i)).collect()];
            let mut h: Vec<Vec<f64>> = vec![];
            for l in 0..3 {
                let a: Vec<f64> = (0..sizes[l + 1])
                    .map(|o| {
                        (0..sizes[l]).map(|i| w(l, o, i) * h_tilde[l][i]).sum::<f64>() + net.layers[l].bias[o] as f64
                    })
                    .collect();
                if l < 2 {
                    let hl: Vec<f64> = a.iter().map(|v| v.tanh()).collect();
                    h_tilde.push(hl.iter().enumerate().map(|(i, v)| v * mask(l + 1, i)).collect());
                    h.push(hl);
                } else {
                    h.push(a);
                }
            }
            let e: Vec<f64> = (0..2)
                .map(|k| (1.0 / (1.0 + (-h[2][k]).exp()) - (k == y[s] as usize) as i32 as f64) / rows as f64)
                .collect();
            let gate = |l: usize, v: Vec<f64>| -> Vec<f64> {
                v.iter().enumerate().map(|(i, v)| v * (1.0 - h[l][i] * h[l][i]) * mask(l + 1, i)).collect()
            };
            let mut d = vec![vec![]; 3];
            d[2] = e.clone();
            match rule.name() {
                "bp" => {
                    for l in (0..2).rev() {
                        d[l] = gate(
                            l,
                            (0..sizes[l + 1])
                                .map(|i| (0..sizes[l + 2]).map(|o| w(l + 1, o, i) * d[l + 1][o]).sum())
                                .collect(),
                        );
                    }
                }
                "fa" => {
                    for l in (0..2).rev() {
                        d[l] = gate(
                            l,
                            (0..sizes[l + 1])
                                .map(|i| (0..sizes[l + 2]).map(|o| b(l, i, o) * d[l + 1][o]).sum())
                                .collect(),
                        );
                    }
                }
                "dfa" => {
                    for l in 0..2 {
                        d[l] = gate(l, (0..sizes[l + 1]).map(|i| (0..2).map(|o| b(l, i, o) * e[o]).sum()).collect());
                    }
                }
                "ifa" => {
                    d[0] = gate(0, (0..4).map(|i| (0..2).map(|o| b(0, i, o) * e[o]).sum()).collect());
                    d[1] = gate(1, (0..3).map(|o| (0..4).map(|i| w(1, o, i) * d[0][i]).sum()).collect());
                }
                other => unreachable!("no formula for {other}"),
            }
            for l in 0..3 {
                for o in 0..sizes[l + 1] {
                    for i in 0..sizes[l] {
                        want[l][o * sizes[l] + i] += d[l][o] * h_tilde[l][i];
                    }
                }
            }
        }
        for l in 0..3 {
            let scale = want[l].iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = ws.grads[l].weight.iter().zip(&want[l]).fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
            assert!(err <= 1e-5 * scale.max(1e-12), "{rule:?} layer {l}: {err:e} of {scale:e}");
        }
    }
}

/// FGSM on a 2-1-2 tanh net, by hand:
/// x = (0.5, 0.2), W_1 = (1, −1), b = 0: a_1 = 0.3, h = tanh 0.3 = 0.2913;
/// W_2 = (2, −1)ᵀ: logits (0.5826, −0.2913), y = class 0, e = σ(a) − y = (−0.3583, 0.4277);
/// δh = W_2ᵀ e = −1.1443, δa_1 = δh (1 − h²) = −1.0472, ∂J/∂x = W_1ᵀ δa_1 = (−1.0472, +1.0472).
/// So x_adv = x + ε·(−1, +1) = (0.4, 0.3) for ε = 0.1; and (0.05, 0.98) goes to (0, 1) clipped,
/// to (−0.05, 1.08) unclipped (the paper's code).
#[test]
#[allow(clippy::approx_constant)] // 1.0472 is the hand value of δa_1, not π/3
fn fast_gradient_sign_matches_the_hand_computation() {
    let mut net = Network::new(&[2, 1, 2], Activation::Tanh, false, true, &mut DfaRng::new(1, Stream::Weights));
    net.layers[0].weight = vec![1.0, -1.0];
    net.layers[1].weight = vec![2.0, -1.0];
    let fb = Feedback::new(Rule::DFA, &[2, 1, 2], false, None, &mut DfaRng::new(1, Stream::Feedback));
    for (x, clip, want) in [
        ([0.5f32, 0.2], true, [0.4f32, 0.3]),
        ([0.05, 0.98], true, [0.0, 1.0]),
        ([0.5, 0.2], false, [0.4, 0.3]),
        ([0.05, 0.98], false, [-0.05, 1.08]),
    ] {
        let mut ws = Workspace::new(&net, 1);
        net.forward(&x, 1, &mut ws, 1);
        let logits = ws.outputs[1].clone();
        output_error(&logits, &[0], 2, &mut ws.deltas[1]);
        let mut x_adv = [0.0f32; 2];
        fast_gradient_sign(&net, &fb, &mut ws, (&x, 1), (0.1, clip), &mut x_adv, 1);
        assert!((x_adv[0] - want[0]).abs() < 1e-6 && (x_adv[1] - want[1]).abs() < 1e-6, "{x:?} {clip} → {x_adv:?}");
    }
    // the gradient itself, before the sign: δa_1 = −1.0472 (hand value above)
    let mut ws = Workspace::new(&net, 1);
    net.forward(&[0.5, 0.2], 1, &mut ws, 1);
    let logits = ws.outputs[1].clone();
    output_error(&logits, &[0], 2, &mut ws.deltas[1]);
    rules::hidden_deltas(Rule::BP, &net, &fb, &mut ws, 1, 1);
    assert!((ws.deltas[0][0] + 1.0472).abs() < 1e-4, "{}", ws.deltas[0][0]);
}
