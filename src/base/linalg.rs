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
//! All three are strided views over the buffers (no transpose copies).
//!
//! **Threads.** A product large enough to share is cut into contiguous blocks of output columns
//! (or rows, whichever dimension is larger), one per thread, each computed by faer's
//! single-threaded kernel under `rayon::join`. Every output element is still one uninterrupted
//! sum over `k` in the kernel's order, so the bits do not depend on the thread count, and
//! nothing is allocated (faer's own `Par::Rayon` allocated ~20–50 times per training step).
//!
//! **The forward product of a mini-batch** (`H Wᵀ`, at most 128 rows) goes through a
//! column-major buffer per thread (see [`through_column_major`]): faer then packs the small `H`
//! and streams `W`, instead of gathering `W`'s rows — 3–25 % faster (the more, the wider the
//! input), same bits.
//!
//! **Weights that come from memory.** A net whose parameters are larger than the last-level
//! cache reads every weight matrix from memory at each use. faer packs the forward product's
//! weights (`W` row-major is the left operand of `Cᵀ = W·Aᵀ`) by gathering 96 rows at a time,
//! an access pattern the hardware prefetchers cannot follow: on 100 layers 240×240 the packing
//! ran at ~7 GB/s and took 31 % of the forward pass. [`gemm_nt_weights`] and
//! [`gemm_nn_weights`] can first read each thread's block of `W` in one sequential pass (which
//! streams at full speed) when that block fits well inside L2; the product then finds it there.
//! Nothing but timing changes.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par, prelude::ReborrowMut};

/// Products below this many multiply-adds run on one thread: splitting them costs more than it
/// saves (the 64×800×10 output layer lost 30–40 % with two threads in the GEMM study).
const PARALLEL_THRESHOLD: usize = 1 << 20;

/// Block boundaries are multiples of this (a whole number of SIMD micro-tiles).
const ALIGN: usize = 16;

fn accum(accumulate: bool) -> Accum {
    if accumulate { Accum::Add } else { Accum::Replace }
}

/// A thread's block of `B` is read ahead of a product from memory (see the module doc) only up
/// to this size, a quarter of this machine's L2: the packed copy and `A` must fit beside it.
/// Measured on 100 layers 240×240 (blocks of 115 and 230 KB), a win of 5–9 % per training
/// step; a 2 MB block (3x1000) or weights that stay in L3 (7x240) lose 3–6 %.
const READ_AHEAD_MAX_BYTES: usize = 256 << 10;

/// `C = A·B` (or `C += A·B`) on strided views, split over `threads` (see the module doc).
pub fn gemm(c: MatMut<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>, accumulate: bool, threads: usize) {
    product(c, a, b, accumulate, threads, false);
}

/// [`gemm`]; with `read_ahead`, each thread first reads its block of `B` sequentially when the
/// block is at most [`READ_AHEAD_MAX_BYTES`].
fn product(
    c: MatMut<'_, f32>,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
    threads: usize,
    read_ahead: bool,
) {
    let (m, n, k) = (c.nrows(), c.ncols(), a.ncols());
    if threads <= 1 || m * k * n < PARALLEL_THRESHOLD {
        if read_ahead && b.nrows() * b.ncols() * size_of::<f32>() <= READ_AHEAD_MAX_BYTES {
            read_through(b);
        }
        if !accumulate && m <= COLUMN_MAJOR_MAX_ROWS && c.col_stride() == 1 && b.row_stride() == 1 {
            through_column_major(c, a, b);
        } else {
            matmul(c, accum(accumulate), a, b, 1.0f32, Par::Seq);
        }
        return;
    }
    let left = threads / 2;
    let share = |len: usize| ((len * left / threads).div_ceil(ALIGN) * ALIGN).min(len);
    let right = threads - left;
    if n >= m {
        let mid = share(n);
        let (c0, c1) = c.split_at_col_mut(mid);
        let (b0, b1) = b.split_at_col(mid);
        rayon::join(
            || product(c0, a, b0, accumulate, left, read_ahead),
            || product(c1, a, b1, accumulate, right, read_ahead),
        );
    } else {
        let mid = share(m);
        let (c0, c1) = c.split_at_row_mut(mid);
        let (a0, a1) = a.split_at_row(mid);
        rayon::join(
            || product(c0, a0, b, accumulate, left, read_ahead),
            || product(c1, a1, b, accumulate, right, read_ahead),
        );
    }
}

/// Products of at most this many rows into a row-major `C`, with `B`'s columns contiguous (the
/// forward product `A·Wᵀ` of a mini-batch), are computed into a column-major buffer, then
/// transposed into `C` (see [`through_column_major`]).
const COLUMN_MAJOR_MAX_ROWS: usize = 128;

/// Floats in each thread's column-major buffer (256 KB, a quarter of L2): 1024 columns of a
/// 64-row product, 512 of a 128-row one; a wider block is computed in chunks of columns.
const COLUMN_MAJOR_LEN: usize = 64 << 10;

thread_local! {
    static COLUMN_MAJOR: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `C = A·B` for a row-major `C` of few rows and a `B` whose columns are contiguous (`B = Wᵀ`,
/// `W` row-major): faer computes a row-major `C` as `Cᵀ = Bᵀ·Aᵀ`, packing `W` — the large
/// operand — by gathering rows, which ran at ~80 GFLOP/s on 64×3072×1000 and ~103 on
/// 64×784×800. Into a column-major `C` it packs the small `A` instead and streams `W`'s rows:
/// 106 and 115 GFLOP/s. The transpose into `C` (8×8 blocks in registers) costs 0.2–2 % of the
/// product. Every element is the same sum in the same order: the bits are those of the direct
/// product.
fn through_column_major(mut c: MatMut<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>) {
    let (m, n) = (c.nrows(), c.ncols());
    if m == 0 || n == 0 {
        return;
    }
    COLUMN_MAJOR.with_borrow_mut(|buf| {
        if buf.len() < COLUMN_MAJOR_LEN {
            buf.resize(COLUMN_MAJOR_LEN, 0.0);
        }
        let chunk = (COLUMN_MAJOR_LEN / m).min(n);
        let mut j = 0;
        while j < n {
            let width = chunk.min(n - j);
            let cols = &mut buf[..m * width];
            let product = MatMut::from_column_major_slice_mut(cols, m, width);
            matmul(product, Accum::Replace, a, b.subcols(j, width), 1.0f32, Par::Seq);
            transpose_into(c.rb_mut().subcols_mut(j, width), cols);
            j += width;
        }
    });
}

/// Writes the column-major `m×n` matrix `cols` into `c` (`m×n`, unit column stride).
fn transpose_into(c: MatMut<'_, f32>, cols: &[f32]) {
    let (m, n) = (c.nrows(), c.ncols());
    assert!(c.col_stride() == 1 && cols.len() == m * n);
    let ldc = c.row_stride();
    let out = c.as_ptr_mut();
    // rows `..i0` of columns `..j0` are done in 8×8 blocks
    let (i0, j0) = {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX; `out` addresses the `m×n` elements of `c`, rows `ldc` apart.
            unsafe { transpose_8x8_blocks(out, ldc, cols, m, n) };
            (m / 8 * 8, n / 8 * 8)
        } else {
            (0, 0)
        }
        #[cfg(not(target_arch = "x86_64"))]
        (0, 0)
    };
    for i in 0..m {
        let from = if i < i0 { j0 } else { 0 };
        for j in from..n {
            // SAFETY: `i < m`, `j < n`: an element of `c`.
            unsafe { *out.offset(i as isize * ldc + j as isize) = cols[j * m + i] };
        }
    }
}

/// [`transpose_into`] over the whole 8×8 blocks of an `m×n` matrix.
///
/// # Safety
/// The CPU supports AVX; `out` points at an `m×n` matrix with rows `ldc` apart and unit column
/// stride, which nothing else accesses meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_8x8_blocks(out: *mut f32, ldc: isize, cols: &[f32], m: usize, n: usize) {
    use std::arch::x86_64::*;
    assert!(cols.len() >= m * n);
    for j in (0..n / 8 * 8).step_by(8) {
        for i in (0..m / 8 * 8).step_by(8) {
            // SAFETY: rows `i..i + 8` of columns `j..j + 8` lie inside `cols` (asserted above),
            // and the same block of `c` inside the `m×n` matrix at `out`.
            unsafe {
                let src = cols.as_ptr().add(j * m + i);
                let r: [__m256; 8] = std::array::from_fn(|t| _mm256_loadu_ps(src.add(t * m)));
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let rows = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                let dst = out.offset(i as isize * ldc + j as isize);
                for (t, row) in rows.into_iter().enumerate() {
                    _mm256_storeu_ps(dst.offset(t as isize * ldc), row);
                }
            }
        }
    }
}

/// Reads every element of `b` once, along its contiguous dimension, so that the hardware
/// prefetchers stream it into cache.
fn read_through(b: MatRef<'_, f32>) {
    let mut acc = [0u32; 16];
    let mut read = |x: &[f32]| {
        let mut chunks = x.chunks_exact(16);
        for chunk in &mut chunks {
            for (a, v) in acc.iter_mut().zip(chunk) {
                *a |= v.to_bits();
            }
        }
        for (a, v) in acc.iter_mut().zip(chunks.remainder()) {
            *a |= v.to_bits();
        }
    };
    if b.row_stride() == 1 {
        for j in 0..b.ncols() {
            read(b.col(j).try_as_col_major().expect("unit row stride").as_slice());
        }
    } else if b.col_stride() == 1 {
        for i in 0..b.nrows() {
            read(b.row(i).try_as_row_major().expect("unit column stride").as_slice());
        }
    }
    std::hint::black_box(acc);
}

/// Makes the calling thread allocate its GEMM packing memory now: faer's x86 kernels keep it in
/// a thread-local buffer created on a thread's first product. A trainer calls this on every
/// thread of its pool, so that no training step allocates.
pub fn warm_up_thread() {
    // above faer's 16³ threshold for its tiny-product kernels, so the x86 kernels run
    let (a, b) = ([0.0f32; 32 * 32], [0.0f32; 32 * 32]);
    let mut c = [0.0f32; 32 * 32];
    gemm_nn(&mut c, &a, &b, (32, 32, 32), false, 1);
    COLUMN_MAJOR.with_borrow_mut(|buf| buf.resize(COLUMN_MAJOR_LEN, 0.0));
}

/// `C (m×n) = A (m×k) · B(n×k)ᵀ`, or `C += …` when `accumulate`.
pub fn gemm_nt(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    row_major(c, a, b, (m, k, n), (true, accumulate), threads, false);
}

/// `C (m×n) = A (m×k) · B (k×n)`, or `C += …` when `accumulate`.
pub fn gemm_nn(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    row_major(c, a, b, (m, k, n), (false, accumulate), threads, false);
}

/// `C (m×n) = A (m×k) · W (n×k)ᵀ` for a weight matrix `W`: [`gemm_nt`], reading each thread's
/// block of `W` ahead of the product when `streamed` (the net's weights do not stay in cache
/// from one use to the next; see the module doc).
pub fn gemm_nt_weights(
    c: &mut [f32],
    a: &[f32],
    w: &[f32],
    mkn: (usize, usize, usize),
    threads: usize,
    streamed: bool,
) {
    row_major(c, a, w, mkn, (true, false), threads, streamed);
}

/// `C (m×n) = A (m×k) · W (k×n)` for a weight matrix `W`: [`gemm_nn`], reading ahead as
/// [`gemm_nt_weights`] does.
pub fn gemm_nn_weights(
    c: &mut [f32],
    a: &[f32],
    w: &[f32],
    mkn: (usize, usize, usize),
    threads: usize,
    streamed: bool,
) {
    row_major(c, a, w, mkn, (false, false), threads, streamed);
}

/// `C = A·Bᵀ` (`b_stored_transposed`: `B` given as its `n×k` transpose) or `C = A·B` over
/// row-major slices; `C += …` when `accumulate`.
fn row_major(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    (b_stored_transposed, accumulate): (bool, bool),
    threads: usize,
    ahead: bool,
) {
    let a = MatRef::from_row_major_slice(&a[..m * k], m, k);
    let c = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    let b = if b_stored_transposed {
        MatRef::from_row_major_slice(&b[..n * k], n, k).transpose()
    } else {
        MatRef::from_row_major_slice(&b[..k * n], k, n)
    };
    product(c, a, b, accumulate, threads, ahead);
}

/// `C (m×n) = A(k×m)ᵀ · B (k×n)`, or `C += …` when `accumulate`.
pub fn gemm_tn(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    let a = MatRef::from_row_major_slice(&a[..k * m], k, m);
    let b = MatRef::from_row_major_slice(&b[..k * n], k, n);
    let c = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    gemm(c, a.transpose(), b, accumulate, threads);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive f64 product of row-major `a (m×k)` and `b (k×n)`.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
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
    fn threaded_products_are_bitwise_equal_to_one_thread() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (m, k, n) in [(64, 300, 200), (200, 64, 300), (64, 784, 800), (37, 1000, 45)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.011).collect();
            let mut one = vec![0.0; m * n];
            gemm_nn(&mut one, &a, &b, (m, k, n), false, 1);
            for threads in [2, 3] {
                let mut many = vec![0.0; m * n];
                pool.install(|| gemm_nn(&mut many, &a, &b, (m, k, n), false, threads));
                assert!(one == many, "{m}x{k}x{n}, {threads} threads");
            }
        }
    }

    #[test]
    fn weight_products_read_ahead_or_not_give_the_plain_products_bits() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // 240×240 blocks are read ahead, 784×800 ones are too large to be
        for (m, k, n) in [(64, 240, 240), (64, 784, 800), (5, 7, 3)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.011).collect();
            for threads in [1, 2] {
                let (mut plain, mut weights) = (vec![0.0; m * n], vec![0.0; m * n]);
                for streamed in [false, true] {
                    pool.install(|| {
                        // W as n×k (forward) and as k×n (BP's chain)
                        gemm_nt(&mut plain, &a, &w, (m, k, n), false, threads);
                        gemm_nt_weights(&mut weights, &a, &w, (m, k, n), threads, streamed);
                        assert!(plain == weights, "A·Wᵀ {m}x{k}x{n}, {threads} threads, streamed {streamed}");
                        gemm_nn(&mut plain, &a, &w, (m, k, n), false, threads);
                        gemm_nn_weights(&mut weights, &a, &w, (m, k, n), threads, streamed);
                        assert!(plain == weights, "A·W {m}x{k}x{n}, {threads} threads, streamed {streamed}");
                    });
                }
            }
        }
    }

    #[test]
    fn forward_products_through_a_column_major_buffer_keep_the_direct_products_bits() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // whole 8×8 blocks, ragged edges, one row, chunks of columns (128 rows: 512 per chunk),
        // and 129 rows, which take faer's direct product
        for (m, k, n) in [(64, 240, 240), (37, 100, 45), (1, 5, 3), (128, 50, 1500), (64, 784, 20), (129, 30, 70)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.011).collect();
            let mut direct = vec![0.0; m * n];
            let b = MatRef::from_row_major_slice(&w, n, k).transpose();
            let c = MatMut::from_row_major_slice_mut(&mut direct, m, n);
            matmul(c, Accum::Replace, MatRef::from_row_major_slice(&a, m, k), b, 1.0f32, Par::Seq);
            let want = naive(&a, &transpose(&w, n, k), m, k, n);
            assert!(direct.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-3), "{m}x{k}x{n}");
            for threads in [1, 2] {
                let mut ours = vec![f32::NAN; m * n];
                pool.install(|| gemm_nt(&mut ours, &a, &w, (m, k, n), false, threads));
                assert!(ours == direct, "{m}x{k}x{n}, {threads} threads");
            }
        }
    }

    #[test]
    fn three_layouts_match_naive_product() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.71).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let close = |c: &[f32]| c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5);

        let mut c = vec![0.0; m * n];
        gemm_nn(&mut c, &a, &b, (m, k, n), false, 1);
        assert!(close(&c));
        gemm_nt(&mut c, &a, &transpose(&b, k, n), (m, k, n), false, 2);
        assert!(close(&c));
        gemm_tn(&mut c, &transpose(&a, m, k), &b, (m, k, n), false, 2);
        assert!(close(&c));
        // accumulate adds the product once more
        gemm_nn(&mut c, &a, &b, (m, k, n), true, 1);
        assert!(c.iter().zip(&want).all(|(x, y)| (x - 2.0 * y).abs() < 1e-5));
    }
}
