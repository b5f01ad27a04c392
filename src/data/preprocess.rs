//! Preprocessing of the convolutional nets' input (SPEC §2: "conv nets: whitened data"): global
//! contrast normalisation, then ZCA whitening fitted on the training split only, as in pylearn2's
//! `make_cifar10_gcn_whitened.py` (Goodfellow et al. 2013), the preprocessing of the dropout
//! paper's CIFAR networks (Srivastava et al. 2014) whose CONV net the paper uses.
//!
//! - GCN, per image `x` (pixels on pylearn2's 0–255 scale): `x ← (x − mean(x)) / √(10 + var(x))`
//!   with the unbiased variance (`ddof = 1`).
//! - ZCA, fitted on the GCN'd training images `X` (`n × d`): `μ = mean(X)`,
//!   `C = (X − μ)ᵀ(X − μ)/n + 0.01·I`, `C = V diag(λ) Vᵀ`, `P = V diag(1/√λ) Vᵀ`; every image
//!   becomes `(x − μ) P` (`P` is symmetric). Computed in f64.
//!
//! The dense nets use the plain `[0, 1]` scaling of the loaders.

use super::{Dataset, DatasetKind, sha256_hex};
use crate::base::error::{Error, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What is done to the loaded `[0, 1]` pixels before training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preprocess {
    /// The loader's `[0, 1]` scaling (the dense nets).
    #[default]
    Scale,
    /// Global contrast normalisation, then ZCA whitening fitted on the training split (the conv
    /// nets); cached in the cache folder.
    GcnZca,
}

crate::choices!(Preprocess {
    Scale => "scale": "The loader's `[0, 1]` scaling (the dense nets)",
    GcnZca => "gcn-zca": "Global contrast normalisation, then ZCA whitening fitted on the training split (the conv nets); cached in the cache folder",
});

impl Preprocess {
    pub fn is_scale(&self) -> bool {
        *self == Preprocess::Scale
    }
}

/// The cache folder: `$DFA_CACHE`, else `./cache`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("DFA_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("cache"),
    }
}

/// Applies `preprocess` to a loaded data set. GCN + ZCA is read from `cache` when a file made
/// from the same data files (by SHA-256) is there, else computed and written there (atomically),
/// with its parameters (`mean`, `zca`) beside the whitened splits.
pub fn prepare(mut data: Dataset, preprocess: Preprocess, cache: &Path) -> Result<Dataset> {
    if preprocess == Preprocess::Scale {
        return Ok(data);
    }
    let sources: Vec<&str> = data.files.iter().map(|f| f.sha256.as_str()).collect();
    let key = &sha256_hex(sources.join(",").as_bytes())[..16];
    let path = cache.join(format!("{}-gcn-zca-{key}.safetensors", data.kind.name()));
    let (train, test) = match read_cache(&path, &data) {
        Some(splits) => splits,
        None => {
            let dim = data.train.dim;
            let mut train = (*data.train).clone();
            let mut test = (*data.test).clone();
            gcn(&mut train.images, dim, GCN_SQRT_BIAS);
            gcn(&mut test.images, dim, GCN_SQRT_BIAS);
            let zca = fit_zca(&train.images, dim, ZCA_FILTER_BIAS)?;
            zca.apply(&mut train.images);
            zca.apply(&mut test.images);
            write_cache(&path, &train, &test, &zca, data.kind)?;
            (train, test)
        }
    };
    data.train = Arc::new(train);
    data.test = Arc::new(test);
    data.notes.push(format!("inputs: global contrast normalisation and ZCA whitening (cache {})", path.display()));
    Ok(data)
}

fn write_cache(path: &Path, train: &super::Split, test: &super::Split, zca: &Zca, kind: DatasetKind) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = crate::base::io::f32_bytes;
    let tensors = [
        ("train", vec![train.len(), train.dim], bytes(&train.images)),
        ("test", vec![test.len(), test.dim], bytes(&test.images)),
        ("mean", vec![zca.dim], bytes(&zca.mean)),
        ("zca", vec![zca.dim, zca.dim], bytes(&zca.p)),
    ];
    let views = tensors
        .iter()
        .map(|(name, shape, b)| TensorView::new(Dtype::F32, shape.clone(), b).map(|v| (name.to_string(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    let meta = std::collections::HashMap::from([
        ("dataset".to_string(), kind.name().to_string()),
        ("preprocess".to_string(), format!("gcn(sqrt_bias={GCN_SQRT_BIAS}) + zca(filter_bias={ZCA_FILTER_BIAS})")),
    ]);
    let out = safetensors::serialize(views, Some(meta)).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    crate::base::io::write_atomically(path, &out)
}

/// The cached splits, when the file exists and fits the data set (a damaged or foreign file is
/// ignored and rebuilt).
fn read_cache(path: &Path, data: &Dataset) -> Option<(super::Split, super::Split)> {
    let bytes = std::fs::read(path).ok()?;
    let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let read = |name: &str, split: &super::Split| -> Option<super::Split> {
        let t = st.tensor(name).ok()?;
        if t.shape() != [split.len(), split.dim] {
            return None;
        }
        let images = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some(super::Split { images, labels: split.labels.clone(), dim: split.dim })
    };
    Some((read("train", &data.train)?, read("test", &data.test)?))
}

/// pylearn2's `GlobalContrastNormalization(sqrt_bias=10., use_std=True)`, on 0–255 pixels.
pub const GCN_SQRT_BIAS: f64 = 10.0;
/// pylearn2's `ZCA()` default `filter_bias`.
pub const ZCA_FILTER_BIAS: f64 = 0.01;

/// Global contrast normalisation of every image (`dim` values each, given in `[0, 1]`), in place.
pub fn gcn(images: &mut [f32], dim: usize, sqrt_bias: f64) {
    for x in images.chunks_exact_mut(dim) {
        let n = dim as f64;
        let mean = x.iter().map(|&v| v as f64 * 255.0).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 * 255.0 - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let norm = (sqrt_bias + var).sqrt();
        let norm = if norm < 1e-8 { 1.0 } else { norm };
        for v in x.iter_mut() {
            *v = ((*v as f64 * 255.0 - mean) / norm) as f32;
        }
    }
}

/// A fitted ZCA whitening: `x ↦ (x − mean) P`.
#[derive(Clone, Debug, PartialEq)]
pub struct Zca {
    pub dim: usize,
    pub mean: Vec<f32>,
    /// `dim × dim`, symmetric, row-major.
    pub p: Vec<f32>,
}

/// Fits ZCA on `images` (`n × dim`, row-major) with `filter_bias` added to the covariance.
pub fn fit_zca(images: &[f32], dim: usize, filter_bias: f64) -> Result<Zca> {
    let n = images.len() / dim;
    if n < 2 {
        return Err(Error::config("zca", format!("{n} images; whitening needs at least 2")));
    }
    let mut mean = vec![0.0f64; dim];
    for x in images.chunks_exact(dim) {
        mean.iter_mut().zip(x).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    // C = Σ (x − μ)ᵀ(x − μ) / n, accumulated over chunks of centred rows in f64
    let mut cov = Mat::<f64>::zeros(dim, dim);
    const CHUNK: usize = 1024;
    for rows in images.chunks(CHUNK * dim) {
        let r = rows.len() / dim;
        let centred = Mat::<f64>::from_fn(r, dim, |i, j| rows[i * dim + j] as f64 - mean[j]);
        matmul(cov.as_mut(), Accum::Add, centred.transpose(), centred.as_ref(), 1.0 / n as f64, Par::rayon(0));
    }
    for i in 0..dim {
        cov[(i, i)] += filter_bias;
    }
    let eigen = cov
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::config("zca", format!("the eigendecomposition failed: {e:?}")))?;
    let (u, s) = (eigen.U(), eigen.S());
    let scaled = Mat::<f64>::from_fn(dim, dim, |i, j| u[(i, j)] / s[j].max(f64::MIN_POSITIVE).sqrt());
    let mut p = Mat::<f64>::zeros(dim, dim);
    matmul(p.as_mut(), Accum::Replace, scaled.as_ref(), u.transpose(), 1.0, Par::rayon(0));
    let p: Vec<f32> = (0..dim * dim).map(|k| p[(k / dim, k % dim)] as f32).collect();
    Ok(Zca { dim, mean: mean.iter().map(|&m| m as f32).collect(), p })
}

impl Zca {
    /// Whitens `images` (`n × dim`) in place.
    pub fn apply(&self, images: &mut [f32]) {
        let dim = self.dim;
        let p = MatRef::from_row_major_slice(&self.p, dim, dim);
        let mut centred = vec![0.0f32; 1024 * dim];
        for rows in images.chunks_mut(1024 * dim) {
            let r = rows.len() / dim;
            for (c, x) in centred.chunks_exact_mut(dim).zip(rows.chunks_exact(dim)) {
                c.iter_mut().zip(x).zip(&self.mean).for_each(|((c, &x), &m)| *c = x - m);
            }
            let c = MatRef::from_row_major_slice(&centred[..r * dim], r, dim);
            let out = faer::MatMut::from_row_major_slice_mut(rows, r, dim);
            matmul(out, Accum::Replace, c, p, 1.0f32, Par::rayon(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::rng::{DfaRng, Stream};

    #[test]
    fn gcn_of_a_hand_computed_image() {
        let mut x = [0.0f32, 0.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5];
        gcn(&mut x, 4, GCN_SQRT_BIAS);
        // 0–255 pixels [0, 0, 255, 255]: mean 127.5, unbiased variance 4·127.5²/3 = 21675
        let want = 127.5 / (10.0f64 + 21675.0).sqrt();
        for (v, s) in x[..4].iter().zip([-1.0, -1.0, 1.0, 1.0]) {
            assert!((*v as f64 - s * want).abs() < 1e-6, "{x:?}");
        }
        // a flat image has no contrast: zero, not NaN
        assert_eq!(&x[4..], &[0.0; 4]);
    }

    #[test]
    fn zca_whitens_correlated_data_and_is_symmetric() {
        let (n, dim) = (4000, 12);
        let mut rng = DfaRng::new(5, Stream::Shuffle);
        let mix: Vec<f32> = (0..dim * dim).map(|_| rng.symmetric(1.0)).collect();
        let data: Vec<f32> = (0..n)
            .flat_map(|_| {
                let z: Vec<f32> = (0..dim).map(|_| rng.symmetric(1.0)).collect();
                (0..dim).map(|i| 3.0 + (0..dim).map(|j| mix[i * dim + j] * z[j]).sum::<f32>()).collect::<Vec<_>>()
            })
            .collect();
        let zca = fit_zca(&data, dim, 1e-9).unwrap();
        for i in 0..dim {
            for j in 0..dim {
                assert!((zca.p[i * dim + j] - zca.p[j * dim + i]).abs() < 1e-4, "P is not symmetric");
            }
        }
        let mut white = data.clone();
        zca.apply(&mut white);
        // the whitened training data: zero mean, identity covariance
        for i in 0..dim {
            let mean: f64 = white.chunks_exact(dim).map(|x| x[i] as f64).sum::<f64>() / n as f64;
            assert!(mean.abs() < 1e-4, "mean {mean}");
            for j in 0..dim {
                let c: f64 = white.chunks_exact(dim).map(|x| x[i] as f64 * x[j] as f64).sum::<f64>() / n as f64;
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((c - want).abs() < 1e-3, "cov[{i}][{j}] = {c}");
            }
        }
        assert!(fit_zca(&data[..dim], dim, 0.01).is_err());
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::base::rng::{DfaRng, Stream};
    use crate::data::{DataFile, Split};

    fn dataset(seed: u64) -> Dataset {
        let mut rng = DfaRng::new(seed, Stream::Shuffle);
        let mut split = |n: usize| Split {
            images: (0..n * 16).map(|_| rng.unit()).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            dim: 16,
        };
        let (train, test) = (split(300), split(50));
        Dataset {
            kind: DatasetKind::Cifar10,
            train: Arc::new(train),
            test: Arc::new(test),
            n_classes: 10,
            shape: crate::base::shape::Shape::flat(16),
            files: vec![DataFile { path: "x".into(), sha256: format!("{seed:064}") }],
            notes: Vec::new(),
        }
    }

    #[test]
    fn gcn_zca_is_cached_and_a_damaged_cache_is_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = prepare(dataset(1), Preprocess::GcnZca, tmp.path()).unwrap();
        let files: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(fresh.notes.iter().any(|n| n.contains("ZCA")));
        // by hand: GCN, then ZCA fitted on the training split only
        let mut train = dataset(1).train.images.clone();
        let mut test = dataset(1).test.images.clone();
        gcn(&mut train, 16, GCN_SQRT_BIAS);
        gcn(&mut test, 16, GCN_SQRT_BIAS);
        let zca = fit_zca(&train, 16, ZCA_FILTER_BIAS).unwrap();
        zca.apply(&mut test);
        assert!(fresh.test.images == test);
        // from the cache: the same numbers
        let cached = prepare(dataset(1), Preprocess::GcnZca, tmp.path()).unwrap();
        assert!(cached.train.images == fresh.train.images && cached.test.images == fresh.test.images);
        // other data files, other cache file
        prepare(dataset(2), Preprocess::GcnZca, tmp.path()).unwrap();
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
        // a damaged cache file is rebuilt, not trusted
        std::fs::write(&files[0], b"damaged").unwrap();
        let rebuilt = prepare(dataset(1), Preprocess::GcnZca, tmp.path()).unwrap();
        assert!(rebuilt.test.images == fresh.test.images);
        // scaling leaves the data alone
        let plain = prepare(dataset(1), Preprocess::Scale, tmp.path()).unwrap();
        assert!(plain.train.images == dataset(1).train.images);
    }
}
