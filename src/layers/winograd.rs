//! Winograd minimal filtering for stride-1 convolutions (issue 22): the forward pass, the input
//! gradient and the weight gradient of a `r×r` convolution with fewer multiplications than im2col.
//!
//! **1-D.** `F(m, r)` computes `m` outputs of an `r`-tap correlation `y_i = Σ_j d_{i+j} g_j` from
//! `α = m + r − 1` inputs as `y = Aᵀ[(G g) ⊙ (Bᵀ d)]`: `α` multiplications instead of `m·r`.
//! The matrices come from Toom–Cook: with `E_k` the `α × k` matrix that evaluates a polynomial of
//! degree `k − 1` at the points `p_0 … p_{α−2}` and at infinity (its leading coefficient), and
//! `C = E_α⁻¹` the interpolation, the correlation is the transpose of the polynomial product, so
//! `Aᵀ = E_mᵀ`, `G = E_r`, `Bᵀ = Cᵀ` (`docs/conv.md` has the derivation). The matrices are built
//! here in f64 from the points `0, ±1, ±2, ±½` (the smallest magnitudes, the usual choice for
//! precision), then row `j` of `Bᵀ` is scaled to a largest entry of 1 and row `j` of `G` by the
//! inverse (same product, smaller rounding in the data transform), and rounded to f32.
//!
//! **2-D.** Nesting gives `Y = Aᵀ[Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)]A` for an `m×m` output tile from an
//! `α×α` input tile. Over a batch, with the tiles numbered `t` and the `α²` positions `ξ` of the
//! transformed tile, the channel sum is one GEMM per position:
//! `M_ξ (tiles × C_out) = V_ξ (tiles × C_in) · U_ξᵀ`, `V = Bᵀ d B` per tile and channel,
//! `U = G g Gᵀ` per kernel. Tiles that overhang the output are computed and dropped; inputs
//! outside the image are the zero padding.
//!
//! **Gradients.** The input gradient is the stride-1 convolution of `δ` (padded by `r − 1 − pad`)
//! with the kernels rotated by 180° and their channels swapped: the same three steps with the
//! kernels transformed upside down and multiplied untransposed. The weight gradient
//! `∂W[o, ky, kx, c] = Σ_{t, y, x} δ[t, y, x, o] d[t, y + ky, x + kx, c]` is, per output tile, an
//! `r×r` correlation of the input tile with the `m×m` tile of `δ` as its filter: `F(r, m)`, whose
//! `α` and `Bᵀ` are those of `F(m, r)` (same points), so the forward pass's `V` is reused:
//! `∂Ŵ_ξ (C_out × C_in) = (G' δ G'ᵀ)_ξᵀ · V_ξ`, then `∂W = A'ᵀ ∂Ŵ A'` per kernel, with
//! `A'ᵀ = E_rᵀ`, `G' = E_m` (scaled as `G`).
//!
//! **Layout.** Activations are channels-last, so every transform works on vectors of channels
//! (16 at a time, on the stack). `V` and `M` are stored tile by tile (`[tile][ξ][channel]`): each
//! image's tiles are written by one thread, and `V_ξ` is a strided view (rows `α²·C` apart) that
//! the GEMM packs anyway. Every value is a fixed sum in a fixed order: the bits do not depend on
//! the thread count (the GEMMs are split as in `base::linalg`).

// the transforms index small tiles by position; ranges read more plainly than iterators there
#![allow(clippy::needless_range_loop)]

use crate::base::linalg::gemm;
use crate::layers::geometry::Conv2d;
use faer::{MatMut, MatRef};
use rayon::prelude::*;
use std::sync::{Mutex, OnceLock};

/// The largest `α` supported (`F(4, 5)`, `F(6, 3)`).
pub const MAX_ALPHA: usize = 8;

/// Channels transformed together (a vector of 16 floats: one AVX-512 register, two AVX2).
const LANES: usize = 16;

/// The finite interpolation points, in the order they are taken (`α − 1` of them).
const POINTS: [f64; 7] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];

/// The matrices of `F(m, r)`: `y = Aᵀ[(G g) ⊙ (Bᵀ d)]`, row-major.
#[derive(Clone, Debug)]
pub struct Transform {
    pub m: usize,
    pub r: usize,
    pub alpha: usize,
    /// `Aᵀ`, `m × α`.
    pub at: Vec<f64>,
    /// `G`, `α × r`.
    pub g: Vec<f64>,
    /// `Bᵀ`, `α × α`.
    pub bt: Vec<f64>,
    at32: Vec<f32>,
    g32: Vec<f32>,
    g32_flipped: Vec<f32>,
    bt32: Vec<f32>,
}

/// `E_k`: the `α × k` matrix that evaluates a polynomial of degree `k − 1` (coefficients from
/// the constant term up) at the points and, in its last row, at infinity (the leading
/// coefficient).
fn evaluation(alpha: usize, k: usize) -> Vec<f64> {
    let mut e = vec![0.0; alpha * k];
    for (j, &p) in POINTS[..alpha - 1].iter().enumerate() {
        for i in 0..k {
            e[j * k + i] = p.powi(i as i32);
        }
    }
    e[(alpha - 1) * k + k - 1] = 1.0;
    e
}

/// The inverse of an `n × n` row-major matrix (Gauss–Jordan with partial pivoting, f64).
fn inverse(a: &[f64], n: usize) -> Vec<f64> {
    let mut a = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x * n + col].abs().total_cmp(&a[y * n + col].abs())).unwrap();
        assert!(a[pivot * n + col].abs() > 1e-12, "the interpolation points are distinct");
        for j in 0..n {
            a.swap(col * n + j, pivot * n + j);
            inv.swap(col * n + j, pivot * n + j);
        }
        let d = a[col * n + col];
        for j in 0..n {
            a[col * n + j] /= d;
            inv[col * n + j] /= d;
        }
        for row in 0..n {
            if row != col {
                let f = a[row * n + col];
                if f != 0.0 {
                    for j in 0..n {
                        a[row * n + j] -= f * a[col * n + j];
                        inv[row * n + j] -= f * inv[col * n + j];
                    }
                }
            }
        }
    }
    inv
}

impl Transform {
    /// The matrices of `F(m, r)` (`m + r − 1 ≤ 8`).
    pub fn new(m: usize, r: usize) -> Self {
        let alpha = m + r - 1;
        assert!(m >= 1 && r >= 1 && (2..=MAX_ALPHA).contains(&alpha), "F({m}, {r}): α = {alpha} is out of range");
        let e_m = evaluation(alpha, m);
        let mut g = evaluation(alpha, r);
        let c = inverse(&evaluation(alpha, alpha), alpha);
        // Bᵀ = Cᵀ, each row scaled to a largest entry of 1; G's row takes the inverse scale
        let mut bt: Vec<f64> = (0..alpha * alpha).map(|i| c[(i % alpha) * alpha + i / alpha]).collect();
        for j in 0..alpha {
            let row = &mut bt[j * alpha..][..alpha];
            let s = row.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
            row.iter_mut().for_each(|v| *v /= s);
            g[j * r..][..r].iter_mut().for_each(|v| *v *= s);
        }
        let at: Vec<f64> = (0..m * alpha).map(|i| e_m[(i % alpha) * m + i / alpha]).collect();
        let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let g32_flipped = (0..alpha * r).map(|i| g[(i / r) * r + r - 1 - i % r] as f32).collect();
        Transform { m, r, alpha, at32: to32(&at), g32: to32(&g), g32_flipped, bt32: to32(&bt), at, g, bt }
    }
}

/// The transform of `F(m, r)`, built once per process (a leaked box per pair; the training step
/// allocates nothing after its first use).
pub fn transform(m: usize, r: usize) -> &'static Transform {
    static CACHE: OnceLock<Mutex<Vec<&'static Transform>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = cache.iter().find(|t| t.m == m && t.r == r) {
        return t;
    }
    let t: &'static Transform = Box::leak(Box::new(Transform::new(m, r)));
    cache.push(t);
    t
}

/// A vector of channels.
type Lanes = [f32; LANES];

/// `out = P · D · Pᵀ` on tiles of channel vectors: `P` is `PR × DR` (row-major), `D` is
/// `DR × DR`, `out` is `PR × PR` (both `MAX_ALPHA` columns apart). The sizes are constants, so
/// the loops unroll into vector multiply-adds on registers. Every lane is computed (lanes
/// beyond the channels hold leftovers that are never stored).
#[inline(always)]
fn sandwich_fixed<const PR: usize, const DR: usize>(
    p: &[f32],
    d: &[[Lanes; MAX_ALPHA]; MAX_ALPHA],
    out: &mut [[Lanes; MAX_ALPHA]; MAX_ALPHA],
) {
    let p: &[f32] = &p[..PR * DR];
    let mut t = [[[0.0f32; LANES]; DR]; PR];
    for a in 0..PR {
        for j in 0..DR {
            let mut acc = [0.0f32; LANES];
            for i in 0..DR {
                let w = p[a * DR + i];
                for l in 0..LANES {
                    acc[l] += w * d[i][j][l];
                }
            }
            t[a][j] = acc;
        }
    }
    for a in 0..PR {
        for b in 0..PR {
            let mut acc = [0.0f32; LANES];
            for j in 0..DR {
                let w = p[b * DR + j];
                for l in 0..LANES {
                    acc[l] += w * t[a][j][l];
                }
            }
            out[a][b] = acc;
        }
    }
}

/// [`sandwich_fixed`] for the sizes of the transforms (`P` is `p_rows × d_rows`).
#[inline(always)]
fn sandwich(
    (p, p_rows): (&[f32], usize),
    d: &[[Lanes; MAX_ALPHA]; MAX_ALPHA],
    d_rows: usize,
    out: &mut [[Lanes; MAX_ALPHA]; MAX_ALPHA],
) {
    macro_rules! sizes {
        ($(($pr:literal, $dr:literal)),*) => {
            match (p_rows, d_rows) {
                $(($pr, $dr) => sandwich_fixed::<$pr, $dr>(p, d, out),)*
                _ => unreachable!("no transform of {p_rows}×{d_rows}"),
            }
        };
    }
    // data (α×α), output (m×α), kernel (α×r), δ (α×m), weight gradient (r×α) for
    // F(2, 3), F(4, 3), F(6, 3), F(2, 5), F(4, 5)
    sizes!(
        (4, 4),
        (6, 6),
        (8, 8),
        (2, 4),
        (4, 6),
        (6, 8),
        (2, 6),
        (4, 8),
        (4, 3),
        (6, 3),
        (8, 3),
        (6, 5),
        (8, 5),
        (4, 2),
        (6, 4),
        (8, 6),
        (6, 2),
        (8, 4),
        (3, 4),
        (3, 6),
        (3, 8),
        (5, 6),
        (5, 8)
    )
}

/// Copies the `n ≤ LANES` values of `src` into the first lanes of `dst` (a fixed-size copy when
/// the vector is full).
#[inline(always)]
fn load(dst: &mut Lanes, src: &[f32], n: usize) {
    if n == LANES {
        *dst = src[..LANES].try_into().expect("a full vector");
    } else {
        dst[..n].copy_from_slice(&src[..n]);
    }
}

/// Copies the first `n ≤ LANES` lanes of `src` into `dst`.
#[inline(always)]
fn store(dst: &mut [f32], src: &Lanes, n: usize) {
    if n == LANES {
        let dst: &mut Lanes = (&mut dst[..LANES]).try_into().expect("a full vector");
        *dst = *src;
    } else {
        dst[..n].copy_from_slice(&src[..n]);
    }
}

/// One stride-1 convolution's geometry on channels-last images: input `h × w × c_in`, zero
/// padding `pad`, output `oh × ow × c_out`, tiles of `m × m` outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plane {
    pub h: usize,
    pub w: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Plane {
    fn tiles_y(&self, m: usize) -> usize {
        self.oh.div_ceil(m)
    }
    fn tiles_x(&self, m: usize) -> usize {
        self.ow.div_ceil(m)
    }
    /// Tiles per image.
    pub fn tiles(&self, m: usize) -> usize {
        self.tiles_y(m) * self.tiles_x(m)
    }
}

/// The `α²` planes of a transformed batch (`[ξ][tile][channel]`, each plane a row-major
/// `tiles × channels` matrix for its GEMM), written row by row by the images' tasks in parallel:
/// each task writes the rows of its own tiles only.
#[derive(Clone, Copy)]
struct Planes {
    ptr: *mut f32,
    planes: usize,
    tiles: usize,
    channels: usize,
}

// SAFETY: `Planes` hands out rows of one buffer that outlives the parallel loop; the callers
// write disjoint rows (an image's tiles), so sharing it between threads races on nothing.
unsafe impl Send for Planes {}
unsafe impl Sync for Planes {}

impl Planes {
    fn new(buf: &mut [f32], planes: usize, tiles: usize, channels: usize) -> Self {
        assert!(buf.len() >= planes * tiles * channels, "a buffer for {planes} planes of {tiles}×{channels}");
        Planes { ptr: buf.as_mut_ptr(), planes, tiles, channels }
    }

    /// Row `tile` of plane `xi`.
    ///
    /// # Safety
    /// The buffer `Planes::new` was given is alive and nothing else reads or writes this row
    /// while the returned slice lives.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, xi: usize, tile: usize) -> &mut [f32] {
        assert!(xi < self.planes && tile < self.tiles);
        // SAFETY: in bounds (asserted here and in `new`); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add((xi * self.tiles + tile) * self.channels), self.channels) }
    }
}

crate::multiversion! {
    /// `V` of one image, its tiles numbered from `first` in `v`: `Bᵀ d B` of every input tile
    /// and channel.
    fn input_tiles(tr: &Transform, p: Plane, img: &[f32], first: usize, v: Planes) {
        let (m, alpha, c) = (tr.m, tr.alpha, p.c_in);
        let tx_n = p.tiles_x(m);
        let mut d = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        let mut out = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        for t in 0..p.tiles(m) {
            let y0 = (t / tx_n * m) as isize - p.pad as isize;
            let x0 = (t % tx_n * m) as isize - p.pad as isize;
            for c0 in (0..c).step_by(LANES) {
                let n = LANES.min(c - c0);
                for i in 0..alpha {
                    let y = y0 + i as isize;
                    for j in 0..alpha {
                        let x = x0 + j as isize;
                        let lanes = &mut d[i][j];
                        if y < 0 || x < 0 || y >= p.h as isize || x >= p.w as isize {
                            *lanes = [0.0; LANES];
                        } else {
                            load(lanes, &img[(y as usize * p.w + x as usize) * c + c0..], n);
                        }
                    }
                }
                sandwich((&tr.bt32, alpha), &d, alpha, &mut out);
                for a in 0..alpha {
                    for b in 0..alpha {
                        // SAFETY: this image's task is the only writer of its tiles' rows
                        store(&mut unsafe { v.row(a * alpha + b, first + t) }[c0..], &out[a][b], n);
                    }
                }
            }
        }
    }
}

crate::multiversion! {
    /// The outputs of one image (`oh × ow × c_out`, overwritten) from `M` (`α²` planes of
    /// `n_tiles × c_out`; the image's tiles numbered from `first`): `Aᵀ M A` per tile and
    /// channel, the overhanging outputs dropped.
    fn output_tiles(tr: &Transform, p: Plane, mt: &[f32], tiles: (usize, usize), img: &mut [f32]) {
        let (m, alpha, c) = (tr.m, tr.alpha, p.c_out);
        let (first, n_tiles) = tiles;
        let tx_n = p.tiles_x(m);
        let mut d = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        let mut out = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        for t in 0..p.tiles(m) {
            let (y0, x0) = (t / tx_n * m, t % tx_n * m);
            let (rows, cols) = (m.min(p.oh - y0), m.min(p.ow - x0));
            for c0 in (0..c).step_by(LANES) {
                let n = LANES.min(c - c0);
                for a in 0..alpha {
                    for b in 0..alpha {
                        load(&mut d[a][b], &mt[((a * alpha + b) * n_tiles + first + t) * c + c0..], n);
                    }
                }
                sandwich((&tr.at32, m), &d, alpha, &mut out);
                for i in 0..rows {
                    for j in 0..cols {
                        store(&mut img[((y0 + i) * p.ow + x0 + j) * c + c0..], &out[i][j], n);
                    }
                }
            }
        }
    }
}

crate::multiversion! {
    /// `U` (`α² × c_out × c_in`) of the kernels `weight` (`c_out × r × r × c_in`): `G g Gᵀ` per
    /// kernel, or of the kernels rotated by 180° (`flipped`: the input gradient's).
    fn kernel_tiles(tr: &Transform, weight: &[f32], channels: (usize, usize), flipped: bool, u: &mut [f32]) {
        let ((c_out, c_in), r, alpha) = (channels, tr.r, tr.alpha);
        let g = if flipped { &tr.g32_flipped } else { &tr.g32 };
        let mut d = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        let mut out = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        for o in 0..c_out {
            let kernel = &weight[o * r * r * c_in..][..r * r * c_in];
            for c0 in (0..c_in).step_by(LANES) {
                let n = LANES.min(c_in - c0);
                for i in 0..r {
                    for j in 0..r {
                        load(&mut d[i][j], &kernel[(i * r + j) * c_in + c0..], n);
                    }
                }
                sandwich((g, alpha), &d, r, &mut out);
                for a in 0..alpha {
                    for b in 0..alpha {
                        store(&mut u[((a * alpha + b) * c_out + o) * c_in + c0..], &out[a][b], n);
                    }
                }
            }
        }
    }
}

crate::multiversion! {
    /// The weight gradient's transform of one image's `δ` (`oh × ow × c_out`), its tiles
    /// numbered from `first` in `dt`: `G' δ G'ᵀ` per `m×m` tile, zero beyond the output.
    fn delta_tiles(tw: &Transform, p: Plane, delta: &[f32], first: usize, dt: Planes) {
        // F(r, m): its "kernel" is the m×m tile of δ
        let (m, alpha, c) = (tw.r, tw.alpha, p.c_out);
        let tx_n = p.tiles_x(m);
        let mut d = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        let mut out = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        for t in 0..p.tiles(m) {
            let (y0, x0) = (t / tx_n * m, t % tx_n * m);
            for c0 in (0..c).step_by(LANES) {
                let n = LANES.min(c - c0);
                for i in 0..m {
                    for j in 0..m {
                        let (y, x) = (y0 + i, x0 + j);
                        let lanes = &mut d[i][j];
                        if y < p.oh && x < p.ow {
                            load(lanes, &delta[(y * p.ow + x) * c + c0..], n);
                        } else {
                            *lanes = [0.0; LANES];
                        }
                    }
                }
                sandwich((&tw.g32, alpha), &d, m, &mut out);
                for a in 0..alpha {
                    for b in 0..alpha {
                        // SAFETY: this image's task is the only writer of its tiles' rows
                        store(&mut unsafe { dt.row(a * alpha + b, first + t) }[c0..], &out[a][b], n);
                    }
                }
            }
        }
    }
}

crate::multiversion! {
    /// `∂W` (`c_out × r × r × c_in`, overwritten) from `∂Ŵ` (`α² × c_out × c_in`):
    /// `A'ᵀ ∂Ŵ A'` per kernel.
    fn weight_tiles(tw: &Transform, channels: (usize, usize), hat: &[f32], gw: &mut [f32]) {
        let ((c_out, c_in), r, alpha) = (channels, tw.m, tw.alpha);
        let mut d = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        let mut out = [[[0.0f32; LANES]; MAX_ALPHA]; MAX_ALPHA];
        for o in 0..c_out {
            for c0 in (0..c_in).step_by(LANES) {
                let n = LANES.min(c_in - c0);
                for a in 0..alpha {
                    for b in 0..alpha {
                        load(&mut d[a][b], &hat[((a * alpha + b) * c_out + o) * c_in + c0..], n);
                    }
                }
                sandwich((&tw.at32, r), &d, alpha, &mut out);
                for i in 0..r {
                    for j in 0..r {
                        store(&mut gw[((o * r + i) * r + j) * c_in + c0..], &out[i][j], n);
                    }
                }
            }
        }
    }
}

/// A stride-1 `r×r` convolution computed with `F(m, r)` (and `F(r, m)` for its weight
/// gradient). Buffer sizes: [`Winograd::tile_len`], [`Winograd::kernel_len`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Winograd {
    pub m: usize,
    pub r: usize,
}

impl Winograd {
    /// Whether `F(m, ·)` serves `conv`: stride 1, square kernel, channels-last input, padding at
    /// most `r − 1` (the input gradient pads by `r − 1 − pad`), and a transform compiled here:
    /// `F(2, 3)`, `F(4, 3)`, `F(6, 3)`, `F(2, 5)`, `F(4, 5)`.
    pub fn serves(m: usize, conv: &Conv2d) -> bool {
        conv.stride == 1
            && conv.kh == conv.kw
            && !conv.chw_input
            && conv.pad < conv.kh
            && matches!((m, conv.kh), (2 | 4 | 6, 3) | (2 | 4, 5))
    }

    fn forward_plane(conv: &Conv2d) -> Plane {
        let o = conv.output();
        Plane { h: conv.input.h, w: conv.input.w, c_in: conv.input.c, c_out: o.c, pad: conv.pad, oh: o.h, ow: o.w }
    }

    /// The input gradient as a convolution of `δ` (the forward pass's output) back onto its input.
    fn backward_plane(conv: &Conv2d) -> Plane {
        let o = conv.output();
        let i = conv.input;
        Plane { h: o.h, w: o.w, c_in: o.c, c_out: i.c, pad: conv.kh - 1 - conv.pad, oh: i.h, ow: i.w }
    }

    fn alpha(&self) -> usize {
        self.m + self.r - 1
    }

    /// Floats of a transformed batch (`V`, `M`, the transformed `δ`) of `rows` images: the larger
    /// of the forward and the input-gradient tilings, times `α²` and the wider channel count.
    pub fn tile_len(&self, conv: &Conv2d, rows: usize) -> usize {
        let (f, b) = (Self::forward_plane(conv), Self::backward_plane(conv));
        let tiles = f.tiles(self.m).max(b.tiles(self.m));
        rows * tiles * self.alpha() * self.alpha() * conv.input.c.max(conv.out_channels)
    }

    /// Floats of a transformed kernel set (`U`).
    pub fn kernel_len(&self, conv: &Conv2d) -> usize {
        self.alpha() * self.alpha() * conv.out_channels * conv.input.c
    }

    /// Floats of the weight gradient's scratch: `∂Ŵ` and, for an accumulated gradient, `∂W`.
    pub fn hat_len(&self, conv: &Conv2d) -> usize {
        self.kernel_len(conv) + conv.out_channels * conv.k()
    }

    /// The stride-1 convolution of `rows` images `x` on `p` with the transformed kernels `u`
    /// (`α² × c_out × c_in`, or `α² × c_in × c_out` when `u_by_input`): `V` into `v`, `M` into
    /// `mt`, the result into `out` (`rows × oh × ow × c_out`).
    #[allow(clippy::too_many_arguments)]
    fn convolve(
        &self,
        p: Plane,
        (x, rows): (&[f32], usize),
        (u, u_by_input): (&[f32], bool),
        v: &mut [f32],
        mt: &mut [f32],
        out: &mut [f32],
        threads: usize,
    ) {
        let tr = transform(self.m, self.r);
        let (alpha2, tiles) = (self.alpha() * self.alpha(), p.tiles(self.m));
        let (in_len, out_len) = (p.h * p.w * p.c_in, p.oh * p.ow * p.c_out);
        let n_tiles = rows * tiles;
        let planes = Planes::new(v, alpha2, n_tiles, p.c_in);
        (0..rows)
            .into_par_iter()
            .zip(x[..rows * in_len].par_chunks(in_len))
            .for_each(|(b, img)| input_tiles(tr, p, img, b * tiles, planes));
        for xi in 0..alpha2 {
            let a = MatRef::from_row_major_slice(&v[xi * n_tiles * p.c_in..][..n_tiles * p.c_in], n_tiles, p.c_in);
            let c = MatMut::from_row_major_slice_mut(
                &mut mt[xi * n_tiles * p.c_out..][..n_tiles * p.c_out],
                n_tiles,
                p.c_out,
            );
            let plane = &u[xi * p.c_in * p.c_out..][..p.c_in * p.c_out];
            let b = if u_by_input {
                MatRef::from_row_major_slice(plane, p.c_in, p.c_out)
            } else {
                MatRef::from_row_major_slice(plane, p.c_out, p.c_in).transpose()
            };
            gemm(c, a, b, false, threads);
        }
        let mt = &mt[..alpha2 * n_tiles * p.c_out];
        out[..rows * out_len]
            .par_chunks_mut(out_len)
            .enumerate()
            .for_each(|(b, img)| output_tiles(tr, p, mt, (b * tiles, n_tiles), img));
    }

    /// The convolution (no bias) of `rows` channels-last images `x` into `out`
    /// (`rows × H_out × W_out × C_out`); `v` keeps the transformed input for
    /// [`Winograd::weight_gradient`], `u` and `mt` are scratch ([`Winograd::kernel_len`],
    /// [`Winograd::tile_len`]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        conv: &Conv2d,
        (x, rows): (&[f32], usize),
        weight: &[f32],
        (u, v, mt): (&mut [f32], &mut [f32], &mut [f32]),
        out: &mut [f32],
        threads: usize,
    ) {
        let tr = transform(self.m, self.r);
        kernel_tiles(tr, weight, (conv.out_channels, conv.input.c), false, u);
        self.convolve(Self::forward_plane(conv), (x, rows), (u, false), v, mt, out, threads);
    }

    /// The input gradient `dx` (`rows × H × W × C_in`, overwritten) of `δ` (`rows × H_out ×
    /// W_out × C_out`) through the kernels `weight` (the forward kernels for BP, feedback kernels
    /// of the same shape for FA); `u`, `v` and `mt` are scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn input_gradient(
        &self,
        conv: &Conv2d,
        (delta, rows): (&[f32], usize),
        weight: &[f32],
        (u, v, mt): (&mut [f32], &mut [f32], &mut [f32]),
        dx: &mut [f32],
        threads: usize,
    ) {
        let tr = transform(self.m, self.r);
        kernel_tiles(tr, weight, (conv.out_channels, conv.input.c), true, u);
        self.convolve(Self::backward_plane(conv), (delta, rows), (u, true), v, mt, dx, threads);
    }

    /// The weight gradient `gw` (`C_out × r × r × C_in`, overwritten, or added to when
    /// `accumulate`) of `δ` (`rows × H_out × W_out × C_out`) and the forward pass's `v`; `dt`
    /// ([`Winograd::tile_len`]) and `hat` ([`Winograd::hat_len`]) are scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn weight_gradient(
        &self,
        conv: &Conv2d,
        (delta, rows): (&[f32], usize),
        v: &[f32],
        (dt, hat): (&mut [f32], &mut [f32]),
        gw: &mut [f32],
        accumulate: bool,
        threads: usize,
    ) {
        let tw = transform(self.r, self.m);
        let p = Self::forward_plane(conv);
        let (alpha2, tiles) = (self.alpha() * self.alpha(), p.tiles(self.m));
        let out_len = p.oh * p.ow * p.c_out;
        let n_tiles = rows * tiles;
        let planes = Planes::new(dt, alpha2, n_tiles, p.c_out);
        (0..rows)
            .into_par_iter()
            .zip(delta[..rows * out_len].par_chunks(out_len))
            .for_each(|(b, img)| delta_tiles(tw, p, img, b * tiles, planes));
        for xi in 0..alpha2 {
            let a = MatRef::from_row_major_slice(&dt[xi * n_tiles * p.c_out..][..n_tiles * p.c_out], n_tiles, p.c_out);
            let b = MatRef::from_row_major_slice(&v[xi * n_tiles * p.c_in..][..n_tiles * p.c_in], n_tiles, p.c_in);
            let c = MatMut::from_row_major_slice_mut(
                &mut hat[xi * p.c_out * p.c_in..][..p.c_out * p.c_in],
                p.c_out,
                p.c_in,
            );
            gemm(c, a.transpose(), b, false, threads);
        }
        let k = self.r * self.r * p.c_in;
        if accumulate {
            // the inverse transform overwrites: go through the stretch of `hat` after `∂Ŵ`
            let (hat, tmp) = hat.split_at_mut(alpha2 * p.c_out * p.c_in);
            let tmp = &mut tmp[..p.c_out * k];
            weight_tiles(tw, (p.c_out, p.c_in), hat, tmp);
            gw[..p.c_out * k].iter_mut().zip(tmp.iter()).for_each(|(g, t)| *g += t);
        } else {
            weight_tiles(tw, (p.c_out, p.c_in), hat, &mut gw[..p.c_out * k]);
        }
    }
}
