//! Data sets: MNIST and Fashion-MNIST in IDX format, CIFAR-10 and CIFAR-100 in their binary
//! format, loaded as f32 in `[0, 1]`, flattened (the dense nets' input; CIFAR keeps its
//! `3 × 32 × 32` channel-major order).
//!
//! The data folder is `--data-dir`, else the environment variable `DFA_DATA`, else `./data`.
//! A data set lives in its own sub-folder (`mnist/`, `fashion-mnist/`, `cifar-10-batches-bin/`,
//! `cifar-100-binary/`), or directly in the folder given. Every file may be gzip-compressed
//! (`.gz`) or raw.

pub mod arrays;
pub mod cifar;
pub mod download;
pub mod idx;
pub mod preprocess;

use crate::base::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    Mnist,
    FashionMnist,
    Cifar10,
    /// CIFAR-100 with its 100 fine labels.
    Cifar100,
    /// CIFAR-100 with its 20 coarse labels (superclasses).
    Cifar100Coarse,
    /// Your own arrays: the `.npz` file or folder of `.npy` files of the configuration's `data`.
    File,
    /// Arrays handed over from Python (`dfa.Net.fit`); such a run resumes from Python only.
    Arrays,
}

crate::choices!(DatasetKind {
    Mnist => "mnist",
    FashionMnist => "fashion-mnist",
    Cifar10 => "cifar10",
    Cifar100 => "cifar100": "CIFAR-100 with its 100 fine labels",
    Cifar100Coarse => "cifar100-coarse": "CIFAR-100 with its 20 coarse labels (superclasses)",
    File => "file": "your own arrays: the .npz file (or folder of .npy files) given by --data",
    Arrays => "arrays": "arrays passed from Python (dfa.Net.fit)",
});

/// The four IDX files, in the order train images, train labels, test images, test labels.
pub const IDX_FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

impl DatasetKind {
    /// The name used on the command line and as the sub-folder of the data folder.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Cifar100Coarse => "cifar100-coarse",
            DatasetKind::File => "file",
            DatasetKind::Arrays => "arrays",
        }
    }

    /// The classes of a named data set; `None` for your own data (the labels decide).
    pub fn n_classes(self) -> Option<usize> {
        match self {
            DatasetKind::Cifar100 => Some(100),
            DatasetKind::Cifar100Coarse => Some(20),
            DatasetKind::Mnist | DatasetKind::FashionMnist | DatasetKind::Cifar10 => Some(10),
            DatasetKind::File | DatasetKind::Arrays => None,
        }
    }

    /// The shape of one image of a named data set (channel-major in the loaded data); `None`
    /// for your own data (the arrays decide).
    pub fn image_shape(self) -> Option<crate::base::shape::Shape> {
        match self {
            DatasetKind::File | DatasetKind::Arrays => None,
            k if k.is_cifar() => Some(crate::base::shape::Shape { h: 32, w: 32, c: 3 }),
            _ => Some(crate::base::shape::Shape { h: 28, w: 28, c: 1 }),
        }
    }

    /// Whether this is a data set of its own name (MNIST, CIFAR…), not your own arrays.
    pub fn is_named(self) -> bool {
        !matches!(self, DatasetKind::File | DatasetKind::Arrays)
    }

    pub fn is_cifar(self) -> bool {
        matches!(self, DatasetKind::Cifar10 | DatasetKind::Cifar100 | DatasetKind::Cifar100Coarse)
    }
}

/// The data folder: the flag if given, else `$DFA_DATA`, else `./data`.
pub fn resolve_data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    match std::env::var_os("DFA_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("data"),
    }
}

/// One split of a data set: `len` samples of `dim` features, row-major.
#[derive(Clone, Debug)]
pub struct Split {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub dim: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Splits off the last `n` samples (e.g. as a validation set) and returns them.
    pub fn split_off_last(&mut self, n: usize) -> Split {
        let keep = self.len().saturating_sub(n);
        Split { images: self.images.split_off(keep * self.dim), labels: self.labels.split_off(keep), dim: self.dim }
    }

    /// A copy of the first `n` samples (all of them when `n` is larger).
    pub fn first(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split { images: self.images[..n * self.dim].to_vec(), labels: self.labels[..n].to_vec(), dim: self.dim }
    }

    /// The first `n` samples (all of them when `n` is larger).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.dim);
    }
}

/// A file the run read, with the SHA-256 of its bytes as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: PathBuf,
    pub sha256: String,
}

/// A loaded data set. The splits are shared (`Arc`): every run of `dfa reproduce` and every
/// `Trainer` reads the same copy (CIFAR-10's training split alone is 614 MB as f32).
#[derive(Clone, Debug)]
pub struct Dataset {
    pub kind: DatasetKind,
    pub train: std::sync::Arc<Split>,
    pub test: std::sync::Arc<Split>,
    pub n_classes: usize,
    /// The shape of one sample (`1×1×D` for flat vectors).
    pub shape: crate::base::shape::Shape,
    pub files: Vec<DataFile>,
    /// What a user should know about this copy (e.g. an incomplete test set); recorded in every
    /// run's `meta.json` and printed.
    pub notes: Vec<String>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `folder/<file>.gz` or `folder/<file>`, whichever exists (the gzip-compressed copy first).
pub fn find_file(folder: &Path, file: &str) -> Option<PathBuf> {
    [format!("{file}.gz"), file.to_string()].into_iter().map(|f| folder.join(f)).find(|p| p.is_file())
}

/// The folder that holds `kind`'s files: `dir/<name>/` if it has them, else `dir` itself if it
/// has them, else an error that lists what is missing and how to fetch it.
pub fn locate(kind: DatasetKind, dir: &Path) -> Result<[PathBuf; 4]> {
    let find_in =
        |folder: &Path| -> Vec<Option<PathBuf>> { IDX_FILES.iter().map(|name| find_file(folder, name)).collect() };
    let sub = dir.join(kind.name());
    for folder in [sub.as_path(), dir] {
        let found = find_in(folder);
        if found.iter().all(Option::is_some) {
            let v: Vec<PathBuf> = found.into_iter().flatten().collect();
            return Ok([v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone()]);
        }
    }
    let found = find_in(&sub);
    let missing: Vec<String> = IDX_FILES
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(name, _)| sub.join(format!("{name}.gz")).display().to_string())
        .collect();
    Err(Error::MissingData { dataset: kind.name().into(), dir: dir.to_path_buf(), missing: missing.join(", ") })
}

fn read_file(path: &Path, ndim: usize, files: &mut Vec<DataFile>) -> Result<idx::IdxArray> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    files.push(DataFile { path: path.to_path_buf(), sha256: sha256_hex(&raw) });
    idx::parse_stored(&raw, path, Some(ndim))
}

/// One split and its images' `rows × cols`.
fn split(
    images_path: &Path,
    labels_path: &Path,
    n_classes: usize,
    files: &mut Vec<DataFile>,
) -> Result<(Split, [usize; 2])> {
    let images = read_file(images_path, 3, files)?;
    let labels = read_file(labels_path, 1, files)?;
    if images.dims.len() != 3 {
        return Err(Error::format(
            images_path,
            format!("expected an image file with 3 dimensions (count × rows × cols), found {:?}", images.dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::format(
            labels_path,
            format!("expected a label file with 1 dimension, found {:?}", labels.dims),
        ));
    }
    if images.dims[0] == 0 {
        return Err(Error::format(images_path, "holds 0 images; a split needs at least one"));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::CountMismatch {
            images: images_path.to_path_buf(),
            labels: labels_path.to_path_buf(),
            n_images: images.dims[0],
            n_labels: labels.dims[0],
        });
    }
    if let Some((i, &l)) = labels.data.iter().enumerate().find(|(_, l)| **l as usize >= n_classes) {
        return Err(Error::format(labels_path, format!("label {l} at position {i} is outside 0..{n_classes}")));
    }
    let size = [images.dims[1], images.dims[2]];
    let dim = size[0] * size[1];
    let images = images.data.iter().map(|&p| p as f32 / 255.0).collect();
    Ok((Split { images, labels: labels.data, dim }, size))
}

/// What a user must know about `kind`'s copy in `dir`, without loading it (the notes of
/// [`Dataset::notes`]; empty when the data are complete or absent).
pub fn notes(kind: DatasetKind, dir: &Path) -> Vec<String> {
    match cifar::locate(kind, dir) {
        Ok(located) if kind.is_cifar() && located.partial_test => vec![cifar::partial_note(&located.test, 9980)],
        _ => Vec::new(),
    }
}

/// Loads `kind` from the data folder `dir` and applies `preprocess` (see [`preprocess::prepare`];
/// its cache is [`preprocess::cache_dir`]).
pub fn load_prepared(kind: DatasetKind, preprocess: preprocess::Preprocess, dir: &Path) -> Result<Dataset> {
    preprocess::prepare(load(kind, dir)?, preprocess, &preprocess::cache_dir())
}

/// Loads `kind` from the data folder `dir`.
pub fn load(kind: DatasetKind, dir: &Path) -> Result<Dataset> {
    if kind.is_cifar() {
        let (train, test, files, notes) = cifar::load(kind, dir)?;
        let (n_classes, shape) = (kind.n_classes().unwrap_or(10), crate::base::shape::Shape { h: 32, w: 32, c: 3 });
        return Ok(Dataset { kind, train: train.into(), test: test.into(), n_classes, shape, files, notes });
    }
    if !kind.is_named() {
        return Err(Error::config(
            "dataset",
            format!(
                "'{}' data are not in a data folder; they come with the run (--data FILE, or from Python)",
                kind.name()
            ),
        ));
    }
    let paths = locate(kind, dir)?;
    let n_classes = kind.n_classes().unwrap_or(10);
    let mut files = Vec::new();
    let (train, train_size) = split(&paths[0], &paths[1], n_classes, &mut files)?;
    let (test, test_size) = split(&paths[2], &paths[3], n_classes, &mut files)?;
    if train_size != test_size {
        let [tr, tc] = train_size;
        let [sr, sc] = test_size;
        return Err(Error::format(
            &paths[2],
            format!("test images are {sr}×{sc} pixels, training images ({}) {tr}×{tc}", paths[0].display()),
        ));
    }
    let shape = crate::base::shape::Shape { h: train_size[0], w: train_size[1], c: 1 };
    Ok(Dataset { kind, train: train.into(), test: test.into(), n_classes, shape, files, notes: Vec::new() })
}
