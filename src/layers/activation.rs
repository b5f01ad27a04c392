//! Hidden-unit non-linearities `h = f(a)` and their derivatives (SPEC §1).
//!
//! The derivative is always taken from the output `h`, so the forward pass keeps only `h_i`:
//!
//! | f | f(a) | f'(a) through h |
//! | --- | --- | --- |
//! | tanh | `tanh a` | `1 − h²` |
//! | logistic | `1 / (1 + e^{−a})` | `h (1 − h)` |
//! | ReLU | `max(0, a)` | `1 if h > 0 else 0` |

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Logistic,
    Relu,
}

crate::choices!(Activation { Tanh => "tanh", Logistic => "logistic", Relu => "relu" });

/// `tanh` as a rational function (the minimax approximation Eigen uses for `float`): odd
/// polynomial of degree 13 over even polynomial of degree 6, on `x` clamped to ±7.905 (where
/// f32 `tanh` is ±1). Branch-free, so the compiler vectorises it; libm's `tanhf` is not, and
/// cost a fifth of a 2x800 epoch. Error: within a few ulp of f32 `tanh` (see the tests).
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2.mul_add(A13, A11);
    p = p.mul_add(x2, A9);
    p = p.mul_add(x2, A7);
    p = p.mul_add(x2, A5);
    p = p.mul_add(x2, A3);
    p = p.mul_add(x2, A1);
    p *= x;
    let mut q = x2.mul_add(B6, B4);
    q = q.mul_add(x2, B2);
    q = q.mul_add(x2, B0);
    p / q
}

/// The logistic function, written so that it never overflows.
#[inline]
pub fn sigmoid(a: f32) -> f32 {
    sigmoid_given(a, (-a.abs()).exp())
}

/// `σ(a)` from `t = e^{−|a|}` (for callers that need `t` anyway, e.g. for `softplus`).
#[inline]
pub fn sigmoid_given(a: f32, t: f32) -> f32 {
    if a >= 0.0 { 1.0 / (1.0 + t) } else { t / (1.0 + t) }
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Logistic => "logistic",
            Activation::Relu => "relu",
        }
    }

    #[inline]
    pub fn apply(self, a: f32) -> f32 {
        match self {
            Activation::Tanh => fast_tanh(a),
            // σ(a) = (1 + tanh(a/2)) / 2, vectorisable like tanh
            Activation::Logistic => 0.5f32.mul_add(fast_tanh(0.5 * a), 0.5),
            Activation::Relu => a.max(0.0),
        }
    }

    /// `f'(a)` expressed through `h = f(a)`.
    #[inline]
    pub fn derivative_from_output(self, h: f32) -> f32 {
        match self {
            Activation::Tanh => 1.0 - h * h,
            Activation::Logistic => h * (1.0 - h),
            Activation::Relu => {
                if h > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// `h ← f(a + b)` over a row-major `rows × b.len()` block: bias and activation in one pass.
    pub fn bias_apply(self, h: &mut [f32], bias: &[f32]) {
        match self {
            Activation::Tanh => bias_tanh(h, bias),
            Activation::Logistic => bias_logistic(h, bias),
            Activation::Relu => bias_relu(h, bias),
        }
    }

    /// `d ← s ⊙ f'(a)` over `d.len() / width` rows of `width`, with `f'` taken from the layer
    /// output `h` (`d`, `h` row-major with rows of `width`; the rows of `s` are `s_stride` apart,
    /// e.g. one layer's columns of DFA's stacked feedback signal).
    pub fn scaled_by_derivative(self, d: &mut [f32], s: &[f32], s_stride: usize, h: &[f32], width: usize) {
        match self {
            Activation::Tanh => scaled_tanh(d, s, s_stride, h, width),
            Activation::Logistic => scaled_logistic(d, s, s_stride, h, width),
            Activation::Relu => scaled_relu(d, s, s_stride, h, width),
        }
    }

    /// DFA's projection and `⊙ f'` in one pass: `d ← (E Bᵀ) ⊙ f'(a)` for one hidden layer of
    /// `width` units (its outputs `h`), with `E` row-major `rows × n_out` (`rows = d.len() / width`)
    /// and `Bᵀ` given as the layer's `width` columns of the transposed stack of every layer's `B`
    /// ([`Columns`]). Each element is the `fma` chain `Σ_k e_k b_k` in the order of `k` from zero,
    /// then one multiply by `f'`.
    pub fn project_by_derivative(
        self,
        d: &mut [f32],
        (e, n_out): (&[f32], usize),
        bt: Columns<'_>,
        (h, width): (&[f32], usize),
    ) {
        match self {
            Activation::Tanh => project_tanh(d, e, n_out, bt, h, width),
            Activation::Logistic => project_logistic(d, e, n_out, bt, h, width),
            Activation::Relu => project_relu(d, e, n_out, bt, h, width),
        }
    }

    /// `d ← d ⊙ f'(a)`, with `f'` taken from the layer output `h`.
    pub fn scale_by_derivative(self, d: &mut [f32], h: &[f32]) {
        match self {
            Activation::Tanh => scale_tanh(d, h),
            Activation::Logistic => scale_logistic(d, h),
            Activation::Relu => scale_relu(d, h),
        }
    }
}

/// Some columns of a row-major matrix: `values` holds rows of `stride` elements, the columns
/// start at `offset`.
#[derive(Clone, Copy, Debug)]
pub struct Columns<'a> {
    pub values: &'a [f32],
    pub stride: usize,
    pub offset: usize,
}

// One loop per activation (the `match` outside), so that each vectorises.
macro_rules! element_wise {
    ($bias:ident, $scale:ident, $scaled:ident, $project:ident, $act:expr) => {
        crate::multiversion! {
            fn $bias(h: &mut [f32], bias: &[f32]) {
                for row in h.chunks_exact_mut(bias.len()) {
                    for (x, b) in row.iter_mut().zip(bias) {
                        *x = $act.apply(*x + b);
                    }
                }
            }
        }
        crate::multiversion! {
            fn $scale(d: &mut [f32], h: &[f32]) {
                for (x, &h) in d.iter_mut().zip(h) {
                    *x *= $act.derivative_from_output(h);
                }
            }
        }
        crate::multiversion! {
            fn $scaled(d: &mut [f32], s: &[f32], s_stride: usize, h: &[f32], width: usize) {
                for ((d, s), h) in d.chunks_exact_mut(width).zip(s.chunks(s_stride)).zip(h.chunks_exact(width)) {
                    for ((x, &s), &h) in d.iter_mut().zip(&s[..width]).zip(h) {
                        *x = s * $act.derivative_from_output(h);
                    }
                }
            }
        }
        crate::multiversion! {
            fn $project(d: &mut [f32], e: &[f32], n_out: usize, columns: Columns<'_>, h: &[f32], width: usize) {
                let Columns { values: bt, stride, offset } = columns;
                // row by row (d and h stream in order; the layer's n_out × width slice of `bt`
                // stays in L1), each row in tiles of 64 columns, then 16, then single columns, the
                // tile's sums accumulated in registers over the n_out products
                #[inline(always)]
                fn tile<const T: usize>(d: &mut [f32], e: &[f32], bt: &[f32], stride: usize, h: &[f32]) {
                    let mut acc = [0.0f32; T];
                    for (k, &ek) in e.iter().enumerate() {
                        let b = &bt[k * stride..][..T];
                        for (a, &b) in acc.iter_mut().zip(b) {
                            *a = ek.mul_add(b, *a);
                        }
                    }
                    let (d, h) = (&mut d[..T], &h[..T]);
                    for i in 0..T {
                        d[i] = acc[i] * $act.derivative_from_output(h[i]);
                    }
                }
                for ((d, e), h) in d.chunks_exact_mut(width).zip(e.chunks_exact(n_out)).zip(h.chunks_exact(width)) {
                    let mut j = 0;
                    while j + 64 <= width {
                        tile::<64>(&mut d[j..], e, &bt[offset + j..], stride, &h[j..]);
                        j += 64;
                    }
                    while j + 16 <= width {
                        tile::<16>(&mut d[j..], e, &bt[offset + j..], stride, &h[j..]);
                        j += 16;
                    }
                    while j < width {
                        tile::<1>(&mut d[j..], e, &bt[offset + j..], stride, &h[j..]);
                        j += 1;
                    }
                }
            }
        }
    };
}
element_wise!(bias_tanh, scale_tanh, scaled_tanh, project_tanh, Activation::Tanh);
element_wise!(bias_logistic, scale_logistic, scaled_logistic, project_logistic, Activation::Logistic);
element_wise!(bias_relu, scale_relu, scaled_relu, project_relu, Activation::Relu);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_central_differences() {
        for act in [Activation::Tanh, Activation::Logistic, Activation::Relu] {
            for &a in &[-2.5f32, -0.3, 0.4, 1.7] {
                let eps = 1e-3f64;
                let f = |x: f64| act.apply(x as f32) as f64;
                let fd = (f(a as f64 + eps) - f(a as f64 - eps)) / (2.0 * eps);
                let d = act.derivative_from_output(act.apply(a)) as f64;
                assert!((fd - d).abs() < 1e-3, "{act:?} at {a}: fd {fd} vs {d}");
            }
        }
    }

    #[test]
    fn fast_tanh_is_within_a_few_ulp() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-5; // [-10, 10]
            let want = (x as f64).tanh();
            worst = worst.max((fast_tanh(x) as f64 - want).abs());
        }
        assert!(worst < 5e-7, "max abs error {worst:e}");
        // saturates at tanh(7.905) = 1 − 2e-7, never beyond ±1
        assert!((1.0 - fast_tanh(30.0)) < 5e-7 && fast_tanh(30.0) <= 1.0);
        assert_eq!(fast_tanh(-30.0), -fast_tanh(30.0));
        assert_eq!(fast_tanh(0.0), 0.0);
        let logistic = Activation::Logistic.apply(1.3) as f64;
        assert!((logistic - 1.0 / (1.0 + (-1.3f64).exp())).abs() < 5e-7);
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }
}
