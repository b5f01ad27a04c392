//! Winograd convolutions against the naive f64 convolution written out tap by tap: the forward
//! pass, the input gradient and the weight gradient, on odd sizes, every padding the algorithm
//! serves, 3×3 and 5×5 kernels, channel counts that leave a partial vector, and tile sizes 2 and
//! 4 (and 6 for 3×3). The 1-D matrices are checked against the correlation they stand for in
//! f64; the bits against the thread count.
//!
//! **Tolerance.** Each output is compared with its exact value relative to the sum of the
//! absolute values of its terms (`Σ|w·x|`, the scale at which any f32 summation errs). A plain
//! f32 dot product of `K` terms errs by up to ~`K·2⁻²⁴` of that in the worst case and ~`√K·2⁻²⁴`
//! typically; the transforms add a few roundings of values up to `max|Bᵀ|·α` times larger
//! (`F(2, 5)`) and, with the points ±½ and ±2, of values whose scale differs by up to `2⁴`
//! (`F(4, 5)`). Measured here (`--nocapture` prints it) and on conv-tanh's layers (the last
//! test): the limits below hold with room of ~3–10×; the im2col GEMM is measured beside them.

mod common;

use dfa::base::rng::{DfaRng, Stream};
use dfa::layers::conv::{Conv2d, Shape};
use dfa::layers::winograd::{Transform, Winograd};

fn random(n: usize, seed: u64, bound: f32) -> Vec<f32> {
    let mut rng = DfaRng::new(seed, Stream::Weights);
    (0..n).map(|_| rng.symmetric(bound)).collect()
}

/// The exact results and their scales (`Σ|terms|`) of a convolution: forward, input gradient
/// and weight gradient, from the taps.
struct Naive {
    y: Vec<f64>,
    y_scale: Vec<f64>,
    dx: Vec<f64>,
    dx_scale: Vec<f64>,
    gw: Vec<f64>,
    gw_scale: Vec<f64>,
}

fn naive(c: &Conv2d, x: &[f32], w: &[f32], delta: &[f32], batch: usize) -> Naive {
    let (i, o, k) = (c.input, c.output(), c.k());
    let taps = common::conv_taps(c);
    let mut n = Naive {
        y: vec![0.0; batch * o.len()],
        y_scale: vec![0.0; batch * o.len()],
        dx: vec![0.0; batch * i.len()],
        dx_scale: vec![0.0; batch * i.len()],
        gw: vec![0.0; o.c * k],
        gw_scale: vec![0.0; o.c * k],
    };
    for b in 0..batch {
        for &(pos, kidx, at) in &taps {
            for co in 0..o.c {
                let (wv, xv) = (w[co * k + kidx] as f64, x[b * i.len() + at] as f64);
                let dv = delta[b * o.len() + pos * o.c + co] as f64;
                let out = b * o.len() + pos * o.c + co;
                n.y[out] += wv * xv;
                n.y_scale[out] += (wv * xv).abs();
                n.dx[b * i.len() + at] += wv * dv;
                n.dx_scale[b * i.len() + at] += (wv * dv).abs();
                n.gw[co * k + kidx] += dv * xv;
                n.gw_scale[co * k + kidx] += (dv * xv).abs();
            }
        }
    }
    n
}

/// The largest error relative to the scale of its terms.
fn worst(got: &[f32], exact: &[f64], scale: &[f64]) -> f64 {
    got.iter().zip(exact).zip(scale).map(|((&g, &e), &s)| (g as f64 - e).abs() / s.max(1e-30)).fold(0.0, f64::max)
}

/// Errors of the three passes of `F(m, ·)` on `conv` (`rows` images).
fn errors(conv: &Conv2d, m: usize, rows: usize, seed: u64) -> [f64; 3] {
    let (i, o) = (conv.input, conv.output());
    let x = random(rows * i.len(), seed, 1.0);
    let w = random(conv.out_channels * conv.k(), seed + 1, 1.0 / (conv.k() as f32).sqrt());
    let delta = random(rows * o.len(), seed + 2, 1.0);
    let exact = naive(conv, &x, &w, &delta, rows);
    let wg = Winograd { m, r: conv.kh };
    let (mut u, mut v, mut mt) =
        (vec![0.0; wg.kernel_len(conv)], vec![0.0; wg.tile_len(conv, rows)], vec![0.0; wg.tile_len(conv, rows)]);
    let mut y = vec![0.0; rows * o.len()];
    wg.forward(conv, (&x, rows), &w, (&mut u, &mut v, &mut mt), &mut y, 2);
    let mut gw = vec![0.0; conv.out_channels * conv.k()];
    let mut hat = vec![0.0; wg.hat_len(conv)];
    wg.weight_gradient(conv, (&delta, rows), &v, (&mut mt, &mut hat), &mut gw, false, 2);
    let mut dx = vec![0.0; rows * i.len()];
    let (mut v2, mut mt2) = (vec![0.0; wg.tile_len(conv, rows)], vec![0.0; wg.tile_len(conv, rows)]);
    wg.input_gradient(conv, (&delta, rows), &w, (&mut u, &mut v2, &mut mt2), &mut dx, 2);
    [
        worst(&y, &exact.y, &exact.y_scale),
        worst(&dx, &exact.dx, &exact.dx_scale),
        worst(&gw, &exact.gw, &exact.gw_scale),
    ]
}

fn conv(h: usize, w: usize, c_in: usize, c_out: usize, r: usize, pad: usize) -> Conv2d {
    Conv2d { input: Shape { h, w, c: c_in }, out_channels: c_out, kh: r, kw: r, stride: 1, pad, chw_input: false }
}

/// The limit for `F(m, r)` (see the module doc).
fn limit(m: usize, r: usize) -> f64 {
    match m + r - 1 {
        ..=6 => 5e-5,
        _ => 1e-3,
    }
}

#[test]
fn the_1d_matrices_compute_the_correlation() {
    for (m, r) in [(2, 3), (4, 3), (6, 3), (2, 5), (4, 5), (5, 2), (5, 4), (3, 6)] {
        let t = Transform::new(m, r);
        let alpha = t.alpha;
        for seed in 0..5u64 {
            let d: Vec<f64> = random(alpha, seed, 1.0).iter().map(|&v| v as f64).collect();
            let g: Vec<f64> = random(r, seed + 9, 1.0).iter().map(|&v| v as f64).collect();
            let gg: Vec<f64> = (0..alpha).map(|a| (0..r).map(|j| t.g[a * r + j] * g[j]).sum()).collect();
            let bd: Vec<f64> = (0..alpha).map(|a| (0..alpha).map(|j| t.bt[a * alpha + j] * d[j]).sum()).collect();
            for i in 0..m {
                let y: f64 = (0..alpha).map(|a| t.at[i * alpha + a] * gg[a] * bd[a]).sum();
                let exact: f64 = (0..r).map(|j| d[i + j] * g[j]).sum();
                assert!((y - exact).abs() < 1e-12, "F({m}, {r}) output {i}: {y} against {exact}");
            }
        }
        // the data transform's rows are scaled to a largest entry of 1
        for row in t.bt.chunks(alpha) {
            assert_eq!(row.iter().fold(0.0f64, |a, v| a.max(v.abs())), 1.0, "F({m}, {r}) Bᵀ row {row:?}");
        }
    }
}

#[test]
fn forward_and_gradients_match_the_naive_convolution() {
    let mut report = Vec::new();
    for (h, w, c_in, c_out, r) in [(7, 9, 3, 5, 3), (11, 6, 19, 21, 5), (5, 5, 17, 33, 5), (8, 13, 24, 7, 3)] {
        for pad in 0..r {
            for m in [2, 4, 6] {
                let c = conv(h, w, c_in, c_out, r, pad);
                if !Winograd::serves(m, &c) || c.output().h == 0 {
                    continue;
                }
                let e = errors(&c, m, 2, (h * 100 + pad * 10 + m) as u64);
                let lim = limit(m, r);
                report.push(format!(
                    "{h}x{w}x{c_in}->{c_out} r{r} p{pad} F({m},{r}): {:.1e} {:.1e} {:.1e}",
                    e[0], e[1], e[2]
                ));
                for (what, err) in ["forward", "input gradient", "weight gradient"].iter().zip(e) {
                    assert!(
                        err < lim,
                        "{h}x{w}x{c_in}->{c_out} r{r} pad {pad} F({m}, {r}) {what}: {err:.2e} ≥ {lim:.0e}"
                    );
                }
            }
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn only_stride_one_square_channels_last_convolutions_are_served() {
    let c = conv(9, 9, 8, 8, 5, 2);
    assert!(Winograd::serves(2, &c) && Winograd::serves(4, &c));
    assert!(!Winograd::serves(6, &c), "α = 10 is too large");
    assert!(!Winograd::serves(2, &Conv2d { stride: 2, ..c }));
    assert!(!Winograd::serves(2, &Conv2d { kw: 3, ..c }));
    assert!(!Winograd::serves(2, &Conv2d { chw_input: true, ..c }));
    assert!(!Winograd::serves(2, &Conv2d { pad: 5, ..c }), "the input gradient would need negative padding");
}

#[test]
fn the_bits_do_not_depend_on_the_thread_count() {
    let c = conv(15, 15, 24, 40, 5, 2);
    let rows = 3;
    let x = random(rows * c.input.len(), 1, 1.0);
    let w = random(c.out_channels * c.k(), 2, 0.1);
    let delta = random(rows * c.output().len(), 3, 1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let wg = Winograd { m: 4, r: 5 };
            let (mut u, mut v, mut mt) =
                (vec![0.0; wg.kernel_len(&c)], vec![0.0; wg.tile_len(&c, rows)], vec![0.0; wg.tile_len(&c, rows)]);
            let mut y = vec![0.0; rows * c.output().len()];
            wg.forward(&c, (&x, rows), &w, (&mut u, &mut v, &mut mt), &mut y, threads);
            let mut gw = vec![0.0; c.out_channels * c.k()];
            let mut hat = vec![0.0; wg.hat_len(&c)];
            wg.weight_gradient(&c, (&delta, rows), &v, (&mut mt, &mut hat), &mut gw, false, threads);
            let mut dx = vec![0.0; rows * c.input.len()];
            wg.input_gradient(&c, (&delta, rows), &w, (&mut u, &mut v, &mut mt), &mut dx, threads);
            [y, gw, dx].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
        })
    };
    assert!(run(1) == run(2), "one and two threads give different bits");
}

/// Norm-wise relative error `‖got − exact‖ / ‖exact‖`.
fn normwise(got: &[f32], exact: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(exact).map(|(&g, &e)| (g as f64 - e).powi(2)).sum();
    let den: f64 = exact.iter().map(|e| e * e).sum();
    (num / den).sqrt()
}

/// conv-tanh's two layers that Winograd serves (15×15×96 → 128 and 7×7×128 → 256, 5×5, pad 2),
/// on tanh-range inputs and kernels at their initial scale: the norm-wise error of each pass
/// for im2col (the GEMM's own rounding) and for `F(2, 5)` and `F(4, 5)`.
#[test]
fn conv_tanh_layers_lose_little_precision() {
    let mut report = Vec::new();
    for (h, c_in, c_out) in [(15, 96, 128), (7, 128, 256)] {
        let c = conv(h, h, c_in, c_out, 5, 2);
        let (i, o, rows) = (c.input, c.output(), 2);
        let x = random(rows * i.len(), 11, 1.0);
        let w = random(c_out * c.k(), 12, 1.0 / (c.k() as f32).sqrt());
        let delta = random(rows * o.len(), 13, 1e-3);
        let exact = naive(&c, &x, &w, &delta, rows);
        // im2col
        let mut patches = vec![0.0; rows * o.h * o.w * c.k()];
        let mut y = vec![0.0; rows * o.len()];
        c.forward((&x, rows), (&w, &vec![0.0; c_out]), &mut patches, &mut y, 2);
        let (mut gw, mut gb) = (vec![0.0; c_out * c.k()], vec![0.0; c_out]);
        let (mut dx, mut cols) = (vec![0.0; rows * i.len()], vec![0.0; patches.len()]);
        c.backward((&delta, rows), &w, &patches, (&mut gw, &mut gb), Some((&mut dx, &mut cols)), 2);
        let plain = [normwise(&y, &exact.y), normwise(&dx, &exact.dx), normwise(&gw, &exact.gw)];
        report.push(format!("{h}x{h}x{c_in}->{c_out} im2col: {:.1e} {:.1e} {:.1e}", plain[0], plain[1], plain[2]));
        for m in [2, 4] {
            let wg = Winograd { m, r: 5 };
            let (mut u, mut v, mut mt) =
                (vec![0.0; wg.kernel_len(&c)], vec![0.0; wg.tile_len(&c, rows)], vec![0.0; wg.tile_len(&c, rows)]);
            wg.forward(&c, (&x, rows), &w, (&mut u, &mut v, &mut mt), &mut y, 2);
            let mut hat = vec![0.0; wg.hat_len(&c)];
            wg.weight_gradient(&c, (&delta, rows), &v, (&mut mt, &mut hat), &mut gw, false, 2);
            let (mut v2, mut mt2) = (vec![0.0; wg.tile_len(&c, rows)], vec![0.0; wg.tile_len(&c, rows)]);
            wg.input_gradient(&c, (&delta, rows), &w, (&mut u, &mut v2, &mut mt2), &mut dx, 2);
            let e = [normwise(&y, &exact.y), normwise(&dx, &exact.dx), normwise(&gw, &exact.gw)];
            report.push(format!("{h}x{h}x{c_in}->{c_out} F({m},5): {:.1e} {:.1e} {:.1e}", e[0], e[1], e[2]));
            let lim = if m == 2 { 1e-5 } else { 3e-5 };
            for (what, err) in ["forward", "input gradient", "weight gradient"].iter().zip(e) {
                assert!(err < lim, "{h}x{h}x{c_in}->{c_out} F({m}, 5) {what}: {err:.2e} ≥ {lim:.0e}");
            }
        }
    }
    println!("norm-wise relative error (forward, input gradient, weight gradient):\n{}", report.join("\n"));
}

/// Timings of conv-tanh's layers, im2col against Winograd (`cargo test --release --test winograd
/// timings -- --ignored --nocapture`); `dfa bench` measures the whole net.
#[test]
#[ignore]
fn timings() {
    use std::time::Instant;
    let threads: usize = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        for (h, c_in, c_out) in [(15, 96, 128), (7, 128, 256)] {
            let c = conv(h, h, c_in, c_out, 5, 2);
            let (i, o, rows) = (c.input, c.output(), 64);
            let x = random(rows * i.len(), 11, 1.0);
            let w = random(c_out * c.k(), 12, 0.02);
            let delta = random(rows * o.len(), 13, 1e-3);
            let mut patches = vec![0.0; rows * o.h * o.w * c.k()];
            let mut y = vec![0.0; rows * o.len()];
            let (mut gw, mut gb) = (vec![0.0; c_out * c.k()], vec![0.0; c_out]);
            let (mut dx, mut cols) = (vec![0.0; rows * i.len()], vec![0.0; patches.len()]);
            let reps = 5;
            for round in 0..2 {
                let t = Instant::now();
                for _ in 0..reps {
                    c.forward((&x, rows), (&w, &vec![0.0; c_out]), &mut patches, &mut y, threads);
                }
                let f = t.elapsed().as_secs_f64() / reps as f64;
                let t = Instant::now();
                for _ in 0..reps {
                    c.backward((&delta, rows), &w, &patches, (&mut gw, &mut gb), None, threads);
                }
                let g = t.elapsed().as_secs_f64() / reps as f64;
                let t = Instant::now();
                for _ in 0..reps {
                    c.backward((&delta, rows), &w, &patches, (&mut gw, &mut gb), Some((&mut dx, &mut cols)), threads);
                }
                let d = t.elapsed().as_secs_f64() / reps as f64 - g;
                println!(
                    "{h}x{h}x{c_in}->{c_out} round {round} im2col: fwd {:.1} ms wgrad {:.1} ms dgrad {:.1} ms",
                    f * 1e3,
                    g * 1e3,
                    d * 1e3
                );
                for m in [2, 4] {
                    let wg = Winograd { m, r: 5 };
                    let (mut u, mut v, mut mt) = (
                        vec![0.0; wg.kernel_len(&c)],
                        vec![0.0; wg.tile_len(&c, rows)],
                        vec![0.0; wg.tile_len(&c, rows)],
                    );
                    let mut hat = vec![0.0; wg.hat_len(&c)];
                    let (mut v2, mut mt2) = (vec![0.0; wg.tile_len(&c, rows)], vec![0.0; wg.tile_len(&c, rows)]);
                    let t = Instant::now();
                    for _ in 0..reps {
                        wg.forward(&c, (&x, rows), &w, (&mut u, &mut v, &mut mt), &mut y, threads);
                    }
                    let f = t.elapsed().as_secs_f64() / reps as f64;
                    let t = Instant::now();
                    for _ in 0..reps {
                        wg.weight_gradient(&c, (&delta, rows), &v, (&mut mt, &mut hat), &mut gw, false, threads);
                    }
                    let g = t.elapsed().as_secs_f64() / reps as f64;
                    let t = Instant::now();
                    for _ in 0..reps {
                        wg.input_gradient(&c, (&delta, rows), &w, (&mut u, &mut v2, &mut mt2), &mut dx, threads);
                    }
                    let d = t.elapsed().as_secs_f64() / reps as f64;
                    println!(
                        "{h}x{h}x{c_in}->{c_out} round {round} F({m},5): fwd {:.1} ms wgrad {:.1} ms dgrad {:.1} ms",
                        f * 1e3,
                        g * 1e3,
                        d * 1e3
                    );
                }
            }
        }
    });
}

/// Where a conv-tanh DFA step's time goes, layer by layer (forward, weight gradient, and for the
/// blocks the backward inside the block): `cargo test --release --test winograd breakdown --
/// --ignored --nocapture` (`CONV_ALGO=im2col` for the plain path).
#[test]
#[ignore]
fn breakdown() {
    use dfa::train::config::{ConvAlgo, TrainConfig};
    use std::time::Instant;
    let threads: usize = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let algo = if std::env::var("CONV_ALGO").as_deref() == Ok("im2col") { ConvAlgo::Im2col } else { ConvAlgo::Auto };
    let config = TrainConfig { model: "conv-tanh".into(), conv_algo: algo, ..Default::default() };
    let model = dfa::train::Model::new(&config, Shape { h: 32, w: 32, c: 3 }, 10).unwrap();
    let net = model.net;
    let rows = 64;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut ws = dfa::layers::Workspace::new(&net, rows);
        let x = random(rows * 3072, 1, 1.0);
        for d in ws.deltas.iter_mut() {
            d.iter_mut().enumerate().for_each(|(i, v)| *v = ((i % 17) as f32 - 8.0) * 1e-4);
        }
        for round in 0..3 {
            let mut line = format!("round {round}:");
            let t = Instant::now();
            net.forward(&x, rows, &mut ws, threads);
            line += &format!(" forward {:.1} ms |", t.elapsed().as_secs_f64() * 1e3);
            for (l, layer) in net.layers.iter().enumerate() {
                let mut g = std::mem::take(&mut ws.grads[l]);
                let t = Instant::now();
                layer.gradients((&ws.deltas[l], ws.gradient_input(&x, l), rows), &mut g, false, threads);
                line += &format!(" wgrad{l} {:.1}", t.elapsed().as_secs_f64() * 1e3);
                ws.grads[l] = g;
            }
            for (l, layer) in net.layers.iter().enumerate() {
                if let (Some(block), Some(s)) = (&layer.block, &ws.blocks[l]) {
                    let mut d = std::mem::take(&mut ws.deltas[l]);
                    let t = Instant::now();
                    block.backward(net.activation, s, rows, &mut d);
                    line += &format!(" inside{l} {:.1}", t.elapsed().as_secs_f64() * 1e3);
                    ws.deltas[l] = d;
                }
            }
            println!("{line}");
        }
        // the forward pass per layer
        for round in 0..2 {
            let mut line = format!("forward per layer, round {round}:");
            for (l, layer) in net.layers.iter().enumerate() {
                let t = Instant::now();
                let input: Vec<f32> = if l == 0 { x.clone() } else { ws.outputs[l - 1].clone() };
                let copy = t.elapsed();
                let t = Instant::now();
                match (&layer.block, ws.blocks[l].as_mut()) {
                    (Some(block), Some(s)) => {
                        let mut out = std::mem::take(&mut ws.outputs[l]);
                        block.forward(
                            net.activation,
                            (&layer.weight, &layer.bias),
                            (&input, rows),
                            s,
                            &mut out,
                            threads,
                        );
                        ws.outputs[l] = out;
                    }
                    _ => {
                        let mut out = std::mem::take(&mut ws.outputs[l]);
                        layer.forward_dense(
                            (net.activation, l + 1 == net.depth()),
                            &input,
                            &mut out,
                            rows,
                            (threads, false),
                        );
                        ws.outputs[l] = out;
                    }
                }
                let _ = copy;
                line += &format!(" {l}: {:.1}", t.elapsed().as_secs_f64() * 1e3);
            }
            println!("{line}");
        }
    });
}

/// The pieces of conv-tanh's forward blocks (batch 64): im2col or Winograd, GEMM, bias + f,
/// pooling, in ms. `cargo test --release --test winograd pieces -- --ignored --nocapture`.
#[test]
#[ignore]
fn pieces() {
    use dfa::train::config::TrainConfig;
    use std::time::Instant;
    let threads: usize = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let config = TrainConfig { model: "conv-tanh".into(), ..Default::default() };
    let net = dfa::train::Model::new(&config, Shape { h: 32, w: 32, c: 3 }, 10).unwrap().net;
    let rows = 64;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut ws = dfa::layers::Workspace::new(&net, rows);
        let x = random(rows * 3072, 1, 1.0);
        net.forward(&x, rows, &mut ws, threads);
        for round in 0..3 {
            let mut line = format!("round {round}:");
            for (l, layer) in net.layers.iter().enumerate() {
                let (Some(block), Some(s)) = (&layer.block, ws.blocks[l].as_mut()) else { continue };
                let input: Vec<f32> = if l == 0 { x.clone() } else { ws.outputs[l - 1].clone() };
                let mut out = std::mem::take(&mut ws.outputs[l]);
                let t = Instant::now();
                block.forward(net.activation, (&layer.weight, &layer.bias), (&input, rows), s, &mut out, threads);
                let all = t.elapsed().as_secs_f64() * 1e3;
                let n = rows * block.conv_len();
                let t = Instant::now();
                net.activation.bias_apply(&mut s.act[..n], &layer.bias);
                let f = t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                if let Some(p) = &block.pool {
                    p.forward(&s.act, rows, &mut out, &mut s.argmax);
                }
                let p = t.elapsed().as_secs_f64() * 1e3;
                line += &format!(" | L{l} all {all:.1} (bias+f {f:.1}, pool {p:.1})");
                ws.outputs[l] = out;
            }
            println!("{line}");
        }
    });
}
