//! Convolution and max-pooling against independent computations: the library's f32 forward and
//! backward passes against a naive f64 model and its finite differences (odd sizes, stride,
//! padding, overlapping pools), and the exact routing of max-pooling's ties.

mod common;

use dfa::base::rng::{DfaRng, Stream};
use dfa::layers::conv::{Conv2d, MaxPool, Shape};

fn random(n: usize, seed: u64, bound: f32) -> Vec<f32> {
    let mut rng = DfaRng::new(seed, Stream::Weights);
    (0..n).map(|_| rng.symmetric(bound)).collect()
}

/// The naive f64 convolution, from the taps written out in `common::conv_taps`.
fn conv_f64(c: &Conv2d, x: &[f64], batch: usize, w: &[f64], b: &[f64]) -> Vec<f64> {
    let (i, o) = (c.input, c.output());
    let taps = common::conv_taps(c);
    let mut out = vec![0.0; batch * o.len()];
    for n in 0..batch {
        let (xs, ys) = (&x[n * i.len()..(n + 1) * i.len()], &mut out[n * o.len()..(n + 1) * o.len()]);
        for pos in 0..o.h * o.w {
            ys[pos * o.c..(pos + 1) * o.c].copy_from_slice(b);
        }
        for &(pos, kidx, at) in &taps {
            for co in 0..o.c {
                ys[pos * o.c + co] += w[co * c.k() + kidx] * xs[at];
            }
        }
    }
    out
}

fn pool_f64(p: &MaxPool, x: &[f64], batch: usize) -> Vec<f64> {
    let (i, o) = (p.input, p.output());
    let mut out = vec![f64::NEG_INFINITY; batch * o.len()];
    for n in 0..batch {
        for oy in 0..o.h {
            for ox in 0..o.w {
                for c in 0..i.c {
                    for ky in 0..p.k {
                        for kx in 0..p.k {
                            let v = x[n * i.len() + ((oy * p.stride + ky) * i.w + ox * p.stride + kx) * i.c + c];
                            let o_at = n * o.len() + (oy * o.w + ox) * o.c + c;
                            out[o_at] = out[o_at].max(v);
                        }
                    }
                }
            }
        }
    }
    out
}

/// J = Σ r ⊙ pool(tanh(conv(x))), in f64.
fn loss(conv: &Conv2d, pool: &MaxPool, x: &[f64], w: &[f64], b: &[f64], r: &[f64], batch: usize) -> f64 {
    let a = conv_f64(conv, x, batch, w, b);
    let h: Vec<f64> = a.iter().map(|v| v.tanh()).collect();
    pool_f64(pool, &h, batch).iter().zip(r).map(|(p, r)| p * r).sum()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn conv_tanh_pool_gradients_match_finite_differences_in_f64() {
    // odd sizes, a non-square kernel, stride 2 with padding; then an overlapping 3×3/2 pool
    for (input, out_channels, kh, kw, stride, pad, chw_input) in [
        (Shape { h: 9, w: 11, c: 3 }, 4, 3, 2, 1, 1, false),
        (Shape { h: 13, w: 13, c: 2 }, 3, 5, 5, 2, 2, false),
        (Shape { h: 8, w: 7, c: 3 }, 2, 3, 3, 1, 1, true),
    ] {
        let batch = 2;
        let conv = Conv2d { input, out_channels, kh, kw, stride, pad, chw_input };
        let co = conv.output();
        let pool = MaxPool { input: co, k: 3, stride: 2 };
        let po = pool.output();
        let x = random(batch * input.len(), 1, 1.0);
        let w = random(out_channels * conv.k(), 2, 0.5);
        let b = random(out_channels, 3, 0.5);
        let r = random(batch * po.len(), 4, 1.0);
        let rows = batch * co.h * co.w;

        // the library: forward, then backward through pool, tanh' and the convolution
        let mut patches = vec![0.0; rows * conv.k()];
        let mut a = vec![0.0; batch * co.len()];
        conv.forward((&x, batch), (&w, &b), &mut patches, &mut a, 2);
        let want_a = conv_f64(&conv, &to64(&x), batch, &to64(&w), &to64(&b));
        for (g, e) in a.iter().zip(&want_a) {
            assert!((*g as f64 - e).abs() < 1e-5, "forward {g} vs {e}");
        }
        let h: Vec<f32> = a.iter().map(|v| v.tanh()).collect();
        let mut y = vec![0.0; batch * po.len()];
        let mut argmax = vec![0u32; y.len()];
        pool.forward(&h, batch, &mut y, &mut argmax);
        let mut dh = vec![0.0; h.len()];
        pool.backward(&r, batch, &argmax, &mut dh);
        let delta: Vec<f32> = dh.iter().zip(&h).map(|(d, h)| d * (1.0 - h * h)).collect();
        let (mut gw, mut gb) = (vec![0.0; w.len()], vec![0.0; b.len()]);
        let (mut dx, mut cols) = (vec![0.0; x.len()], vec![0.0; rows * conv.k()]);
        conv.backward((&delta, batch), &w, &patches, (&mut gw, &mut gb), Some((&mut dx, &mut cols)), 2);

        // finite differences of the f64 model
        let (x64, w64, b64, r64) = (to64(&x), to64(&w), to64(&b), to64(&r));
        let eps = 1e-6;
        let fd = |which: usize, k: usize| {
            let (mut xp, mut wp, mut bp) = (x64.clone(), w64.clone(), b64.clone());
            let (mut xm, mut wm, mut bm) = (x64.clone(), w64.clone(), b64.clone());
            match which {
                0 => (xp[k] += eps, xm[k] -= eps),
                1 => (wp[k] += eps, wm[k] -= eps),
                _ => (bp[k] += eps, bm[k] -= eps),
            };
            (loss(&conv, &pool, &xp, &wp, &bp, &r64, batch) - loss(&conv, &pool, &xm, &wm, &bm, &r64, batch))
                / (2.0 * eps)
        };
        for (which, got, name) in [(0, &dx, "input"), (1, &gw, "weights"), (2, &gb, "biases")] {
            let want: Vec<f64> = (0..got.len()).map(|k| fd(which, k)).collect();
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
            let err = got.iter().zip(&want).fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs())) / scale;
            assert!(err < 1e-3, "{input:?} k{kh}x{kw} s{stride} p{pad}: {name} rel err {err:.2e}");
            assert!(want.iter().any(|v| v.abs() > 1e-3), "{name}: the check would be vacuous");
        }
    }
}

#[test]
fn max_pool_ties_go_to_the_first_position_and_overlaps_add_up() {
    // 5×5×1, one plateau of equal values: every window's maximum ties
    let input = Shape { h: 5, w: 5, c: 1 };
    let pool = MaxPool { input, k: 3, stride: 2 };
    assert_eq!(pool.output(), Shape { h: 2, w: 2, c: 1 });
    let x = vec![1.0f32; 25];
    let mut y = vec![0.0; 4];
    let mut argmax = vec![0u32; 4];
    pool.forward(&x, 1, &mut y, &mut argmax);
    // the first position of each window in (ky, kx) order: (0,0), (0,2), (2,0), (2,2)
    assert_eq!(argmax, [0, 2, 10, 12]);
    let mut dx = vec![0.0; 25];
    pool.backward(&[1.0, 2.0, 3.0, 4.0], 1, &argmax, &mut dx);
    let mut want = vec![0.0; 25];
    (want[0], want[2], want[10], want[12]) = (1.0, 2.0, 3.0, 4.0);
    assert_eq!(dx, want);
    // a maximum shared by overlapping windows receives the sum of their gradients
    let mut x = vec![0.0f32; 25];
    x[12] = 5.0; // the centre, in all four windows
    pool.forward(&x, 1, &mut y, &mut argmax);
    assert_eq!((y.clone(), argmax.clone()), (vec![5.0; 4], vec![12; 4]));
    pool.backward(&[1.0, 2.0, 3.0, 4.0], 1, &argmax, &mut dx);
    assert_eq!(dx[12], 10.0);
    assert_eq!(dx.iter().sum::<f32>(), 10.0);
}

#[test]
fn output_sizes_follow_the_floor_rule() {
    use dfa::layers::conv::out_size;
    assert_eq!(out_size(32, 5, 1, 2), Some(32));
    assert_eq!(out_size(32, 3, 2, 0), Some(15));
    assert_eq!(out_size(7, 3, 2, 0), Some(3));
    assert_eq!(out_size(2, 3, 1, 0), None);
}
