//! Row-major f32 matrix products on top of faer's `matmul`.
//!
//! Every tensor in the trainer is a row-major slice with the mini-batch along the rows:
//! activations `H_i` are `N × n_i`, weights `W_i` are `n_i × n_{i-1}` (as `torch.nn.Linear`).
//! The three products the rules need are then
//!
//! | product | shape | use |
//! | --- | --- | --- |
//! | `C = A·Bᵀ` ([`gemm_nt`]) | `m×k · (n×k)ᵀ` | forward `H W ᵀ`, feedback `E Bᵀ`, IFA `D W ᵀ` |
//! | `C = A·B` ([`gemm_nn`]) | `m×k · k×n` | BP `D W` |
//! | `C = Aᵀ·B` ([`gemm_tn`]) | `(k×m)ᵀ · k×n` | weight gradient `Dᵀ H` |
//!
//! All three are strided views over the buffers (no transpose copies). faer splits the output
//! over threads without changing the order of the sums along `k`, so the bits of a product do
//! not depend on the thread count (measured in `../shared/notes/gemm-crates.md`).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// Products below this many multiply-adds run on one thread: splitting them costs more than it
/// saves (the 64×800×10 output layer lost 30–40 % with two threads in the GEMM study).
const PARALLEL_THRESHOLD: usize = 1 << 20;

fn par_for(m: usize, k: usize, n: usize, threads: usize) -> Par {
    if threads <= 1 || m * k * n < PARALLEL_THRESHOLD {
        Par::Seq
    } else {
        Par::rayon(threads)
    }
}

fn accum(accumulate: bool) -> Accum {
    if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    }
}

/// `C (m×n) = A (m×k) · B(n×k)ᵀ`, or `C += …` when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_nt(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    threads: usize,
) {
    let a = MatRef::from_row_major_slice(&a[..m * k], m, k);
    let b = MatRef::from_row_major_slice(&b[..n * k], n, k);
    let c = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    matmul(
        c,
        accum(accumulate),
        a,
        b.transpose(),
        1.0f32,
        par_for(m, k, n, threads),
    );
}

/// `C (m×n) = A (m×k) · B (k×n)`, or `C += …` when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_nn(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    threads: usize,
) {
    let a = MatRef::from_row_major_slice(&a[..m * k], m, k);
    let b = MatRef::from_row_major_slice(&b[..k * n], k, n);
    let c = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    matmul(
        c,
        accum(accumulate),
        a,
        b,
        1.0f32,
        par_for(m, k, n, threads),
    );
}

/// `C (m×n) = A(k×m)ᵀ · B (k×n)`, or `C += …` when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_tn(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    threads: usize,
) {
    let a = MatRef::from_row_major_slice(&a[..k * m], k, m);
    let b = MatRef::from_row_major_slice(&b[..k * n], k, n);
    let c = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    matmul(
        c,
        accum(accumulate),
        a.transpose(),
        b,
        1.0f32,
        par_for(m, k, n, threads),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive f64 product of row-major `a (m×k)` and `b (k×n)`.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum();
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0; a.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = a[r * cols + c];
            }
        }
        t
    }

    #[test]
    fn three_layouts_match_naive_product() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.71).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let close = |c: &[f32]| c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5);

        let mut c = vec![0.0; m * n];
        gemm_nn(&mut c, &a, &b, m, k, n, false, 1);
        assert!(close(&c));
        gemm_nt(&mut c, &a, &transpose(&b, k, n), m, k, n, false, 2);
        assert!(close(&c));
        gemm_tn(&mut c, &transpose(&a, m, k), &b, m, k, n, false, 2);
        assert!(close(&c));
        // accumulate adds the product once more
        gemm_nn(&mut c, &a, &b, m, k, n, true, 1);
        assert!(c.iter().zip(&want).all(|(x, y)| (x - 2.0 * y).abs() < 1e-5));
    }
}
