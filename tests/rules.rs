//! Every backward rule against an independent computation:
//! BP against finite differences in f64; FA, DFA and IFA against the SPEC §1 formulas written
//! out plainly, one sample at a time, in f64 (nothing here calls the library's backward code).

use dfa::base::rng::{DfaRng, Stream};
use dfa::layers::activation::Activation;
use dfa::layers::{Gradients, Network, Workspace, output_error};
use dfa::rules::{self, Feedback, Rule, RuleSet};

const ACTIVATIONS: [Activation; 3] = [Activation::Tanh, Activation::Logistic, Activation::Relu];
const SIZES: [usize; 5] = [6, 5, 4, 4, 3];
const ROWS: usize = 7;

fn batch(seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = DfaRng::new(seed, Stream::Shuffle);
    let x = (0..ROWS * SIZES[0]).map(|_| rng.unit()).collect();
    let y = (0..ROWS).map(|_| rng.below(3) as u8).collect();
    (x, y)
}

fn random_net(act: Activation, bias: bool, seed: u64) -> Network {
    Network::new(&SIZES, act, true, bias, &mut DfaRng::new(seed, Stream::Weights))
}

/// The library's forward pass, output error and rule, as the trainer runs them.
fn library_grads(rule: Rule, net: &Network, fb: &Feedback, x: &[f32], y: &[u8]) -> Vec<Gradients> {
    let mut ws = Workspace::new(net, ROWS);
    net.forward(x, ROWS, &mut ws, 1);
    ws.output_error(y);
    rules::hidden_deltas(rule, net, fb, &mut ws, ROWS, 1);
    rules::gradients(net, x, &mut ws, ROWS, 1);
    ws.grads
}

// ---------- an independent f64 model, one sample at a time (column vectors, as in the paper) ----

fn f(act: Activation, a: f64) -> f64 {
    match act {
        Activation::Tanh => a.tanh(),
        Activation::Logistic => 1.0 / (1.0 + (-a).exp()),
        Activation::Relu => a.max(0.0),
    }
}

fn f_prime(act: Activation, a: f64) -> f64 {
    match act {
        Activation::Tanh => 1.0 - a.tanh().powi(2),
        Activation::Logistic => f(act, a) * (1.0 - f(act, a)),
        Activation::Relu => (a > 0.0) as i32 as f64,
    }
}

/// One rule for the whole network, or one per hidden layer.
#[derive(Clone, Copy)]
enum Plan<'a> {
    Whole(Rule),
    PerLayer(&'a [Rule]),
}

#[derive(Clone)]
struct Plain {
    act: Activation,
    w: Vec<Vec<Vec<f64>>>, // w[l][out][in]
    b: Vec<Vec<f64>>,
}

impl Plain {
    fn from(net: &Network) -> Self {
        let w = net
            .layers
            .iter()
            .map(|l| {
                (0..l.fan_out).map(|o| (0..l.fan_in).map(|i| l.weight[o * l.fan_in + i] as f64).collect()).collect()
            })
            .collect();
        let b = net.layers.iter().map(|l| l.bias.iter().map(|&v| v as f64).collect()).collect();
        Plain { act: net.activation, w, b }
    }

    /// Pre-activations `a_i` and outputs `h_i` (h_0 = x) of one sample.
    fn forward(&self, x: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let mut a_all = Vec::new();
        let mut h_all = vec![x.to_vec()];
        for l in 0..self.w.len() {
            let h = h_all.last().unwrap();
            let a: Vec<f64> = self.w[l]
                .iter()
                .zip(&self.b[l])
                .map(|(row, b)| row.iter().zip(h).map(|(w, h)| w * h).sum::<f64>() + b)
                .collect();
            let last = l == self.w.len() - 1;
            h_all.push(if last { a.clone() } else { a.iter().map(|&v| f(self.act, v)).collect() });
            a_all.push(a);
        }
        (a_all, h_all)
    }

    /// J = -(1/N) Σ_{m,n} [y log ŷ + (1-y) log(1-ŷ)].
    fn loss(&self, xs: &[Vec<f64>], ys: &[u8]) -> f64 {
        let mut j = 0.0;
        for (x, &y) in xs.iter().zip(ys) {
            let (a, _) = self.forward(x);
            for (k, &al) in a.last().unwrap().iter().enumerate() {
                let yhat = 1.0 / (1.0 + (-al).exp());
                let t = (k == y as usize) as i32 as f64;
                j -= t * yhat.ln() + (1.0 - t) * (1.0 - yhat).ln();
            }
        }
        j / xs.len() as f64
    }

    /// The SPEC §1 table, written out: δa per layer per sample, then ΔW = Σ δa h_{i-1}ᵀ.
    fn rule_grads(
        &self,
        rule: Plan,
        fb: &[Vec<Vec<f64>>],
        xs: &[Vec<f64>],
        ys: &[u8],
    ) -> Vec<(Vec<Vec<f64>>, Vec<f64>)> {
        let depth = self.w.len();
        let n = xs.len() as f64;
        let mut acc: Vec<(Vec<Vec<f64>>, Vec<f64>)> =
            self.w.iter().map(|w| (vec![vec![0.0; w[0].len()]; w.len()], vec![0.0; w.len()])).collect();
        let matvec = |m: &Vec<Vec<f64>>, v: &[f64]| -> Vec<f64> {
            m.iter().map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum()).collect()
        };
        let transpose = |m: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
            (0..m[0].len()).map(|j| m.iter().map(|r| r[j]).collect()).collect()
        };
        for (x, &y) in xs.iter().zip(ys) {
            let (a, h) = self.forward(x);
            let e: Vec<f64> = a[depth - 1]
                .iter()
                .enumerate()
                .map(|(k, &al)| (1.0 / (1.0 + (-al).exp()) - (k == y as usize) as i32 as f64) / n)
                .collect();
            // the one-hot target over N (DRTP's signal)
            let t: Vec<f64> = (0..e.len()).map(|k| (k == y as usize) as i32 as f64 / n).collect();
            let mut d: Vec<Vec<f64>> = vec![Vec::new(); depth];
            d[depth - 1] = e.clone();
            let fp = |i: usize, v: Vec<f64>| -> Vec<f64> {
                v.iter().zip(&a[i]).map(|(v, &ai)| v * f_prime(self.act, ai)).collect()
            };
            match rule {
                Plan::PerLayer(rules) => {
                    for i in (0..depth - 1).rev() {
                        d[i] = match rules[i].name() {
                            "bp" => fp(i, matvec(&transpose(&self.w[i + 1]), &d[i + 1])),
                            "fa" | "frsf" | "brsf" | "kp" => fp(i, matvec(&fb[i], &d[i + 1])),
                            "usf" => {
                                let signs: Vec<Vec<f64>> =
                                    self.w[i + 1].iter().map(|row| row.iter().map(|&w| sign(w)).collect()).collect();
                                fp(i, matvec(&transpose(&signs), &d[i + 1]))
                            }
                            "dfa" | "bdfa" | "tdfa" | "sdfa" => fp(i, matvec(&fb[i], &e)),
                            "drtp" => fp(i, matvec(&fb[i], &t)),
                            other => unreachable!("{other} is not a per-layer rule"),
                        };
                    }
                }
                Plan::Whole(r) if r == Rule::BP => {
                    for i in (0..depth - 1).rev() {
                        d[i] = fp(i, matvec(&transpose(&self.w[i + 1]), &d[i + 1]));
                    }
                }
                Plan::Whole(r) if r == Rule::USF => {
                    for i in (0..depth - 1).rev() {
                        let signs: Vec<Vec<f64>> =
                            self.w[i + 1].iter().map(|row| row.iter().map(|&w| sign(w)).collect()).collect();
                        d[i] = fp(i, matvec(&transpose(&signs), &d[i + 1]));
                    }
                }
                // KP's directions are FA's through its current B (its learning: tests/kp.rs)
                Plan::Whole(r) if [Rule::FA, Rule::FRSF, Rule::BRSF, Rule::KP].contains(&r) => {
                    for i in (0..depth - 1).rev() {
                        d[i] = fp(i, matvec(&fb[i], &d[i + 1]));
                    }
                }
                // binary, ternary and sparse DFA: DFA's formula with their own B
                Plan::Whole(r) if [Rule::DFA, Rule::BDFA, Rule::TDFA, Rule::SDFA].contains(&r) => {
                    for i in 0..depth - 1 {
                        d[i] = fp(i, matvec(&fb[i], &e));
                    }
                }
                Plan::Whole(r) if r == Rule::DRTP => {
                    for i in 0..depth - 1 {
                        d[i] = fp(i, matvec(&fb[i], &t));
                    }
                }
                Plan::Whole(r) if r == Rule::IFA => {
                    d[0] = fp(0, matvec(&fb[0], &e));
                    for i in 1..depth - 1 {
                        d[i] = fp(i, matvec(&self.w[i], &d[i - 1]));
                    }
                }
                Plan::Whole(r) => unreachable!("no formula for {r}"),
            }
            for l in 0..depth {
                for (o, row) in acc[l].0.iter_mut().enumerate() {
                    for (i, g) in row.iter_mut().enumerate() {
                        *g += d[l][o] * h[l][i];
                    }
                }
                for (o, g) in acc[l].1.iter_mut().enumerate() {
                    *g += d[l][o];
                }
            }
        }
        acc
    }
}

fn sign(w: f64) -> f64 {
    if w > 0.0 {
        1.0
    } else if w < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn plain_feedback(fb: &Feedback, hidden: usize) -> Vec<Vec<Vec<f64>>> {
    (0..hidden)
        .map(|l| match fb.for_layer(l) {
            Some(m) => {
                let dense = m.to_dense();
                (0..m.rows).map(|r| (0..m.cols).map(|c| dense[r * m.cols + c] as f64).collect()).collect()
            }
            None => Vec::new(),
        })
        .collect()
}

fn xs_f64(x: &[f32]) -> Vec<Vec<f64>> {
    x.chunks(SIZES[0]).map(|r| r.iter().map(|&v| v as f64).collect()).collect()
}

/// max |lib − want| / max |want| over one layer's weights and biases.
fn rel_err(lib: &Gradients, want: &(Vec<Vec<f64>>, Vec<f64>)) -> f64 {
    let flat: Vec<f64> = want.0.iter().flatten().copied().chain(want.1.iter().copied()).collect();
    let got: Vec<f64> = lib.weight.iter().chain(&lib.bias).map(|&v| v as f64).collect();
    let scale = flat.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    got.iter().zip(&flat).fold(0.0f64, |m, (g, w)| m.max((g - w).abs())) / scale
}

#[test]
#[allow(clippy::needless_range_loop)]
fn bp_matches_finite_differences_in_f64() {
    for act in ACTIVATIONS {
        for bias in [true, false] {
            let net = random_net(act, bias, 11);
            let (x, y) = batch(5);
            let fb = Feedback::new(Rule::BP, &SIZES, false, None, &mut DfaRng::new(1, Stream::Feedback));
            let lib = library_grads(Rule::BP, &net, &fb, &x, &y);
            let plain = Plain::from(&net);
            let xs = xs_f64(&x);
            let h = 1e-6;
            for (l, layer) in net.layers.iter().enumerate() {
                let mut fd_w = vec![vec![0.0; layer.fan_in]; layer.fan_out];
                let mut fd_b = vec![0.0; layer.fan_out];
                for o in 0..layer.fan_out {
                    for i in 0..=layer.fan_in {
                        if i == layer.fan_in && !bias {
                            continue;
                        }
                        let (mut p, mut m) = (plain.clone(), plain.clone());
                        if i < layer.fan_in {
                            p.w[l][o][i] += h;
                            m.w[l][o][i] -= h;
                        } else {
                            p.b[l][o] += h;
                            m.b[l][o] -= h;
                        }
                        let d = (p.loss(&xs, &y) - m.loss(&xs, &y)) / (2.0 * h);
                        if i < layer.fan_in { fd_w[o][i] = d } else { fd_b[o] = d }
                    }
                }
                let err = rel_err(&lib[l], &(fd_w, fd_b));
                assert!(err < 1e-3, "{act:?} bias={bias} layer {l}: BP vs finite differences, rel err {err:.2e}");
            }
            if !bias {
                assert!(lib.iter().all(|g| g.bias.iter().all(|&v| v == 0.0)));
            }
        }
    }
}

#[test]
fn fa_dfa_ifa_drtp_equal_the_formulas_written_out() {
    for &rule in Rule::all() {
        for act in ACTIVATIONS {
            let net = random_net(act, true, 21);
            let mut fb = Feedback::new(rule, &SIZES, false, None, &mut DfaRng::new(3, Stream::Feedback));
            RuleSet::new(Some(rule), vec![rule; SIZES.len() - 2]).refresh_feedback(
                &net,
                &mut fb,
                &mut DfaRng::new(1, Stream::Refresh),
            );
            let (x, y) = batch(9);
            let lib = library_grads(rule, &net, &fb, &x, &y);
            let want =
                Plain::from(&net).rule_grads(Plan::Whole(rule), &plain_feedback(&fb, SIZES.len() - 2), &xs_f64(&x), &y);
            for l in 0..net.depth() {
                let err = rel_err(&lib[l], &want[l]);
                assert!(err < 1e-5, "{rule:?} {act:?} layer {l}: rel err {err:.2e}");
            }
        }
    }
}

#[test]
fn dfa_with_shared_feedback_uses_one_matrix_per_width() {
    let fb = Feedback::new(Rule::DFA, &SIZES, true, None, &mut DfaRng::new(3, Stream::Feedback));
    // hidden widths 5, 4, 4: two matrices, the 4-wide layers share the second
    assert_eq!(fb.matrices.len(), 2);
    assert_eq!(fb.layer_matrix, vec![Some(0), Some(1), Some(1)]);
    let net = random_net(Activation::Tanh, true, 21);
    let (x, y) = batch(9);
    let lib = library_grads(Rule::DFA, &net, &fb, &x, &y);
    let want = Plain::from(&net).rule_grads(Plan::Whole(Rule::DFA), &plain_feedback(&fb, 3), &xs_f64(&x), &y);
    for l in 0..net.depth() {
        assert!(rel_err(&lib[l], &want[l]) < 1e-5);
    }
}

#[test]
fn feedback_has_the_paper_shapes_and_bounds() {
    let sizes = [784, 800, 400, 10];
    let mut rng = DfaRng::new(1, Stream::Feedback);
    let fa = Feedback::new(Rule::FA, &sizes, false, None, &mut rng);
    assert_eq!(fa.matrices.iter().map(|m| (m.rows, m.cols)).collect::<Vec<_>>(), vec![(800, 400), (400, 10)]);
    let dfa = Feedback::new(Rule::DFA, &sizes, false, None, &mut rng);
    assert_eq!(dfa.matrices.iter().map(|m| (m.rows, m.cols)).collect::<Vec<_>>(), vec![(800, 10), (400, 10)]);
    // uniform in ±1/√n_i, n_i the receiving width
    let b = &dfa.matrices[0];
    let bound = 1.0 / 800f32.sqrt();
    assert!(b.values.iter().all(|v| v.abs() <= bound));
    assert!(b.values.iter().any(|v| v.abs() > 0.9 * bound));
    let ifa = Feedback::new(Rule::IFA, &sizes, false, None, &mut rng);
    assert_eq!(ifa.matrices.len(), 1);
    assert_eq!(ifa.layer_matrix, vec![Some(0), None]);
    assert!(Feedback::new(Rule::BP, &sizes, false, None, &mut rng).matrices.is_empty());
}

#[test]
fn fa_equals_bp_when_feedback_is_the_transposed_weights() {
    for act in ACTIVATIONS {
        let net = random_net(act, true, 31);
        let mut fb = Feedback::new(Rule::FA, &SIZES, false, None, &mut DfaRng::new(3, Stream::Feedback));
        for (l, m) in fb.matrices.iter_mut().enumerate() {
            let w = &net.layers[l + 1]; // B_i := W_{i+1}ᵀ, shape fan_in × fan_out of W_{i+1}
            for r in 0..m.rows {
                for c in 0..m.cols {
                    m.values[r * m.cols + c] = w.weight[c * w.fan_in + r];
                }
            }
        }
        let (x, y) = batch(2);
        let fa = library_grads(Rule::FA, &net, &fb, &x, &y);
        let bp = library_grads(Rule::BP, &net, &fb, &x, &y);
        for l in 0..net.depth() {
            let want = (
                vec![bp[l].weight.iter().map(|&v| v as f64).collect()],
                bp[l].bias.iter().map(|&v| v as f64).collect(),
            );
            assert!(rel_err(&fa[l], &want) < 1e-6, "{act:?} layer {l}");
        }
    }
}

#[test]
fn feedback_rules_differ_from_bp_in_every_hidden_layer() {
    let net = random_net(Activation::Tanh, true, 41);
    let (x, y) = batch(4);
    let bp_fb = Feedback::new(Rule::BP, &SIZES, false, None, &mut DfaRng::new(3, Stream::Feedback));
    let bp = library_grads(Rule::BP, &net, &bp_fb, &x, &y);
    for rule in [Rule::FA, Rule::DFA, Rule::IFA] {
        let fb = Feedback::new(rule, &SIZES, false, None, &mut DfaRng::new(3, Stream::Feedback));
        let g = library_grads(rule, &net, &fb, &x, &y);
        for l in 0..net.depth() - 1 {
            let want = (
                vec![bp[l].weight.iter().map(|&v| v as f64).collect()],
                bp[l].bias.iter().map(|&v| v as f64).collect(),
            );
            assert!(rel_err(&g[l], &want) > 0.1, "{rule:?} hidden layer {l} equals BP");
        }
        // the output layer always learns from e: identical to BP
        let last = net.depth() - 1;
        assert_eq!(g[last].weight, bp[last].weight);
    }
}

#[test]
fn a_rule_per_layer_equals_the_formulas_written_out() {
    let mixes: [&[Rule]; 10] = [
        &[Rule::DFA, Rule::BP, Rule::BP],
        &[Rule::BP, Rule::FA, Rule::DFA],
        &[Rule::FA, Rule::DFA, Rule::BP],
        &[Rule::DFA, Rule::DFA, Rule::DFA],
        &[Rule::DRTP, Rule::BP, Rule::DFA],
        &[Rule::FA, Rule::DRTP, Rule::DRTP],
        &[Rule::SDFA, Rule::BDFA, Rule::TDFA],
        &[Rule::USF, Rule::FRSF, Rule::DFA],
        &[Rule::BRSF, Rule::BP, Rule::BRSF],
        &[Rule::KP, Rule::DFA, Rule::KP],
    ];
    for rules in mixes {
        for act in ACTIVATIONS {
            let net = random_net(act, true, 31);
            let mut fb = Feedback::per_layer(rules, &SIZES, false, None, &mut DfaRng::new(4, Stream::Feedback));
            RuleSet::new(None, rules.to_vec()).refresh_feedback(&net, &mut fb, &mut DfaRng::new(1, Stream::Refresh));
            // feedback exactly where a layer's rule needs it, in the paper's shapes
            for (l, rule) in rules.iter().enumerate() {
                let want = match rule.name() {
                    "bp" => None,
                    "fa" | "usf" | "frsf" | "brsf" | "kp" => Some((SIZES[l + 1], SIZES[l + 2])),
                    _ => Some((SIZES[l + 1], 3)),
                };
                assert_eq!(fb.for_layer(l).map(|b| (b.rows, b.cols)), want, "{rules:?} layer {l}");
            }
            let (x, y) = batch(13);
            let mut ws = Workspace::new(&net, ROWS);
            net.forward(&x, ROWS, &mut ws, 1);
            ws.output_error(&y);
            rules::hidden_deltas_per_layer(rules, &net, &fb, &mut ws, ROWS, 1);
            rules::gradients(&net, &x, &mut ws, ROWS, 1);
            let want = Plain::from(&net).rule_grads(
                Plan::PerLayer(rules),
                &plain_feedback(&fb, SIZES.len() - 2),
                &xs_f64(&x),
                &y,
            );
            for (l, (got, want)) in ws.grads.iter().zip(&want).enumerate() {
                let err = rel_err(got, want);
                assert!(err < 1e-5, "{rules:?} {act:?} layer {l}: rel err {err:.2e}");
            }
        }
    }
    // one rule for every layer draws the same feedback as the whole-network rule
    for rule in [Rule::BP, Rule::FA, Rule::DFA] {
        let a = Feedback::per_layer(&[rule; 3], &SIZES, false, None, &mut DfaRng::new(4, Stream::Feedback));
        let b = Feedback::new(rule, &SIZES, false, None, &mut DfaRng::new(4, Stream::Feedback));
        assert_eq!(a.matrices, b.matrices);
    }
}

#[test]
fn a_dense_network_draws_the_same_feedback_through_both_constructors() {
    let net = Network::new(&SIZES, Activation::Tanh, true, true, &mut DfaRng::new(1, Stream::Weights));
    for rules in [[Rule::FA, Rule::DFA, Rule::BP], [Rule::DFA; 3], [Rule::FA; 3], [Rule::BP, Rule::FA, Rule::DFA]] {
        let a = Feedback::for_network(&rules, &net, None, &mut DfaRng::new(4, Stream::Feedback));
        let b = Feedback::per_layer(&rules, &SIZES, false, None, &mut DfaRng::new(4, Stream::Feedback));
        assert_eq!(a, b, "{rules:?}");
        let expected = rules.iter().filter(|&&r| r != Rule::BP).count();
        assert_eq!(a.matrices.len(), expected);
        assert!(a.matrices.iter().all(|m| m.values.iter().any(|&v| v != 0.0)));
    }
    // shared DFA feedback: the layers of width 4 use one matrix
    let shared = Feedback::per_layer(&[Rule::DFA; 3], &SIZES, true, None, &mut DfaRng::new(4, Stream::Feedback));
    assert_eq!(shared.layer_matrix, [Some(0), Some(1), Some(1)]);
}

#[test]
fn dfa_on_wide_layers_equals_the_formula_written_out() {
    // widths that take every path of the fused projection: 64-column tiles, 16-column tiles and
    // single columns (150 = 2·64 + 16 + 6, 83 = 64 + 16 + 3)
    let sizes = [12, 150, 83, 3];
    let rows = 5;
    for act in ACTIVATIONS {
        let net = Network::new(&sizes, act, true, true, &mut DfaRng::new(4, Stream::Weights));
        let fb = Feedback::new(Rule::DFA, &sizes, false, None, &mut DfaRng::new(5, Stream::Feedback));
        let mut rng = DfaRng::new(6, Stream::Shuffle);
        let x: Vec<f32> = (0..rows * sizes[0]).map(|_| rng.unit()).collect();
        let y: Vec<u8> = (0..rows).map(|_| rng.below(3) as u8).collect();
        let mut ws = Workspace::new(&net, rows);
        net.forward(&x, rows, &mut ws, 1);
        let logits = ws.outputs[2].clone();
        output_error(&logits, &y, 3, &mut ws.deltas[2]);
        rules::hidden_deltas(Rule::DFA, &net, &fb, &mut ws, rows, 1);
        rules::gradients(&net, &x, &mut ws, rows, 1);
        let xs: Vec<Vec<f64>> = x.chunks(sizes[0]).map(|r| r.iter().map(|&v| v as f64).collect()).collect();
        let want = Plain::from(&net).rule_grads(Plan::Whole(Rule::DFA), &plain_feedback(&fb, 2), &xs, &y);
        for (l, (got, want)) in ws.grads.iter().zip(&want).enumerate() {
            let err = rel_err(got, want);
            assert!(err < 1e-5, "{act:?} layer {l}: rel err {err:.2e}");
        }
    }
}

#[test]
fn dfa_deltas_are_the_same_bits_on_one_and_two_threads_on_a_deep_net() {
    // 64 rows × 24 layers of 300 × 10 outputs: above the size where the projection is spread
    // over the layers on several threads
    let mut sizes = vec![20];
    sizes.extend([300; 24]);
    sizes.push(10);
    let rows = 64;
    let net = Network::new(&sizes, Activation::Tanh, true, true, &mut DfaRng::new(4, Stream::Weights));
    let fb = Feedback::new(Rule::DFA, &sizes, false, None, &mut DfaRng::new(5, Stream::Feedback));
    let mut rng = DfaRng::new(6, Stream::Shuffle);
    let x: Vec<f32> = (0..rows * sizes[0]).map(|_| rng.unit()).collect();
    let y: Vec<u8> = (0..rows).map(|_| rng.below(10) as u8).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let deltas = |threads: usize| {
        let mut ws = Workspace::new(&net, rows);
        pool.install(|| {
            net.forward(&x, rows, &mut ws, threads);
            let logits = ws.outputs[net.depth() - 1].clone();
            output_error(&logits, &y, 10, &mut ws.deltas[net.depth() - 1]);
            rules::hidden_deltas(Rule::DFA, &net, &fb, &mut ws, rows, threads);
        });
        ws.deltas
    };
    let (one, two) = (deltas(1), deltas(2));
    assert!(one == two);
    // and layer 17's δa is (B e) ⊙ f' written out
    let (b, h) = (fb.for_layer(17).unwrap(), {
        let mut ws = Workspace::new(&net, rows);
        net.forward(&x, rows, &mut ws, 1);
        ws.outputs[17].clone()
    });
    let e = &one[net.depth() - 1];
    for r in 0..rows {
        for i in 0..300 {
            let s: f64 = (0..10).map(|k| b.values[i * 10 + k] as f64 * e[r * 10 + k] as f64).sum();
            let want = s * (1.0 - (h[r * 300 + i] as f64).powi(2));
            assert!((one[17][r * 300 + i] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()), "row {r} unit {i}");
        }
    }
}

#[test]
fn the_output_error_is_the_logistic_residual_bit_for_bit() {
    let logits: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) * 1.7).chain([0.0, -0.0, 88.0, -104.0]).collect();
    let n = logits.len() / 4;
    let labels: Vec<u8> = (0..n).map(|r| (r % 4) as u8).collect();
    let mut e = vec![0.0; logits.len()];
    let (loss, _) = output_error(&logits, &labels, 4, &mut e);
    let mut want_loss = 0.0f64;
    for (i, &a) in logits.iter().enumerate() {
        let y = (i % 4 == labels[i / 4] as usize) as i32 as f32;
        assert_eq!(e[i], (dfa::layers::activation::sigmoid(a) - y) * (1.0 / n as f32), "logit {a}");
        let a = a as f64;
        want_loss += a.max(0.0) + (-a.abs()).exp().ln_1p() - y as f64 * a;
    }
    assert!((loss - want_loss).abs() < 1e-5 * want_loss, "{loss} vs {want_loss}");
}

#[test]
fn binary_ternary_and_sparse_feedback_are_drawn_as_documented() {
    // a wide layer, so that the statistics are tight: B is 4000 × 10
    let sizes = [784, 4000, 10];
    let b = 1.0 / (4000f64).sqrt();
    let stats = |rule: Rule| {
        let fb = Feedback::new(rule, &sizes, false, None, &mut DfaRng::new(5, Stream::Feedback));
        let m = fb.for_layer(0).unwrap();
        assert_eq!((m.rows, m.cols), (4000, 10), "{rule}");
        // written out densely: the statistics are those of the whole matrix
        let v: Vec<f64> = m.to_dense().iter().map(|&x| x as f64).collect();
        let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
        (v, var)
    };
    // every kind has the variance of the uniform draw, b²/3 (within 3 %)
    for rule in [Rule::DFA, Rule::BDFA, Rule::TDFA, Rule::SDFA] {
        let (_, var) = stats(rule);
        assert!((var / (b * b / 3.0) - 1.0).abs() < 0.03, "{rule}: variance {var:e}, want {:e}", b * b / 3.0);
    }
    // binary: exactly ±b/√3, both signs about equally often
    let (v, _) = stats(Rule::BDFA);
    let b32 = 1.0 / 4000f32.sqrt();
    let s = (b32 / 3f32.sqrt()) as f64;
    assert!(v.iter().all(|&x| x == s || x == -s));
    let plus = v.iter().filter(|&&x| x > 0.0).count() as f64 / v.len() as f64;
    assert!((plus - 0.5).abs() < 0.01, "binary: {plus} positive");
    // ternary: exactly −b/√2, 0, +b/√2, each about a third
    let (v, _) = stats(Rule::TDFA);
    let s = (b32 / 2f32.sqrt()) as f64;
    assert!(v.iter().all(|&x| x == s || x == -s || x == 0.0));
    for value in [-s, 0.0, s] {
        let share = v.iter().filter(|&&x| x == value).count() as f64 / v.len() as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.01, "ternary: {share} at {value}");
    }
    // sparse: one non-zero per row, every output heard by about a tenth of the units
    let (v, _) = stats(Rule::SDFA);
    let mut heard = [0usize; 10];
    for row in v.chunks_exact(10) {
        let nonzero: Vec<usize> = (0..10).filter(|&c| row[c] != 0.0).collect();
        assert_eq!(nonzero.len(), 1, "sparse row {row:?}");
        heard[nonzero[0]] += 1;
    }
    assert!(heard.iter().all(|&h| (320..480).contains(&h)), "sparse: units per output {heard:?}");
    // --feedback-density k: k non-zeros per row, the variance kept
    for k in [3, 10] {
        let options = rules::FeedbackOptions { bound: None, nonzeros: k };
        let fb = Feedback::new(Rule::SDFA, &sizes, false, options, &mut DfaRng::new(5, Stream::Feedback));
        let m = fb.for_layer(0).unwrap();
        // stored sparse: k values and k distinct columns per row, memory ∝ the non-zeros
        assert!(m.is_sparse() && m.per_row() == k && m.bytes() == 4000 * k * 8, "density {k}");
        for c in m.columns.chunks_exact(k) {
            assert!(c.iter().all(|&c| c < 10) && (1..k).all(|i| !c[..i].contains(&c[i])), "density {k}: {c:?}");
        }
        let v = &m.to_dense();
        assert!(v.chunks_exact(10).all(|row| row.iter().filter(|&&x| x != 0.0).count() == k), "density {k}");
        let var = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64;
        assert!((var / (b * b / 3.0) - 1.0).abs() < 0.03, "density {k}: variance {var:e}");
    }
    // the uniform draw is unchanged: the same bits as every earlier version's DFA
    let dfa = Feedback::new(Rule::DFA, &sizes, false, None, &mut DfaRng::new(5, Stream::Feedback));
    let mut rng = DfaRng::new(5, Stream::Feedback);
    let mut want = vec![0.0; 4000 * 10];
    rng.fill_symmetric(&mut want, b32);
    assert_eq!(dfa.for_layer(0).unwrap().values, want);
}

#[test]
fn sign_symmetry_feedback_is_the_signs_of_the_weights_above() {
    // frSF: FA's draw gives the magnitudes, the weights above the signs; uSF: the signs alone
    let net = random_net(Activation::Tanh, true, 41);
    let fa = Feedback::new(Rule::FA, &SIZES, false, None, &mut DfaRng::new(6, Stream::Feedback));
    for rule in [Rule::USF, Rule::FRSF] {
        let mut fb = Feedback::new(rule, &SIZES, false, None, &mut DfaRng::new(6, Stream::Feedback));
        RuleSet::new(Some(rule), vec![rule; SIZES.len() - 2]).refresh_feedback(
            &net,
            &mut fb,
            &mut DfaRng::new(1, Stream::Refresh),
        );
        for l in 0..SIZES.len() - 2 {
            let (b, u, w) = (fb.for_layer(l).unwrap(), fa.for_layer(l).unwrap(), &net.layers[l + 1]);
            assert_eq!((b.rows, b.cols), (w.fan_in, w.fan_out), "{rule} layer {l}: the shape of W_l+1 transposed");
            for i in 0..b.rows {
                for j in 0..b.cols {
                    let s = sign(w.weight[j * w.fan_in + i] as f64) as f32;
                    let want = if rule == Rule::USF { s } else { u.values[i * b.cols + j].abs() * s };
                    assert_eq!(b.values[i * b.cols + j], want, "{rule} layer {l} entry ({i}, {j})");
                }
            }
        }
    }
}

#[test]
fn brsf_redraws_its_magnitudes_at_every_refresh() {
    let net = random_net(Activation::Tanh, true, 43);
    let rules = RuleSet::new(Some(Rule::BRSF), vec![Rule::BRSF; SIZES.len() - 2]);
    let mut fb = Feedback::new(Rule::BRSF, &SIZES, false, None, &mut DfaRng::new(7, Stream::Feedback));
    let mut rng = DfaRng::new(7, Stream::Refresh);
    rules.refresh_feedback(&net, &mut fb, &mut rng);
    let first = fb.clone();
    rules.refresh_feedback(&net, &mut fb, &mut rng);
    for l in 0..SIZES.len() - 2 {
        let (a, b, w) = (first.for_layer(l).unwrap(), fb.for_layer(l).unwrap(), &net.layers[l + 1]);
        let bound = 1.0 / (b.rows as f32).sqrt();
        let mut changed = 0;
        for i in 0..b.rows {
            for j in 0..b.cols {
                let s = sign(w.weight[j * w.fan_in + i] as f64) as f32;
                for m in [a, b] {
                    let v = m.values[i * b.cols + j];
                    assert!(v.signum() == s && v.abs() <= bound, "layer {l} ({i}, {j}): {v} for sign {s}");
                }
                changed += (a.values[i * b.cols + j] != b.values[i * b.cols + j]) as usize;
            }
        }
        assert_eq!(changed, b.rows * b.cols, "layer {l}: every magnitude redrawn");
    }
}
