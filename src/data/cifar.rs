//! The CIFAR-10 and CIFAR-100 binary formats (Krizhevsky 2009), raw or gzip-compressed.
//!
//! A CIFAR-10 record is 1 label byte (0–9) and 3072 pixel bytes: the 32×32 red plane, then green,
//! then blue, each row-major. A CIFAR-100 record has two label bytes, the coarse (0–19) and the
//! fine (0–99) label, then the same 3072 pixel bytes. Files: CIFAR-10 `data_batch_1.bin` …
//! `data_batch_5.bin` and `test_batch.bin` (folder `cifar-10-batches-bin/`), CIFAR-100
//! `train.bin` and `test.bin` (folder `cifar-100-binary/`). Pixels are kept in this
//! channel-major order (`3 × 32 × 32`), scaled to `[0, 1]`.

use super::{DataFile, DatasetKind, Split, idx::maybe_gunzip, sha256_hex};
use crate::base::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Pixels of one image (3 × 32 × 32).
pub const PIXELS: usize = 3072;

/// CIFAR-10's official test file; `../shared/data` has only a partial copy (see `TEST_PARTIAL`).
pub const TEST_FULL: &str = "test_batch";
/// 9980 of the 10 000 CIFAR-10 test images (all but 19 ships and 1 horse), not in the official
/// order, as `../shared/data` provides them; used only when the full test file is absent.
pub const TEST_PARTIAL: &str = "test_batch_partial_9980";

/// The file names (without `.bin` / `.bin.gz`) of `kind`'s training and test splits.
pub fn file_names(kind: DatasetKind) -> (Vec<String>, &'static str) {
    match kind {
        DatasetKind::Cifar10 => ((1..=5).map(|k| format!("data_batch_{k}")).collect(), TEST_FULL),
        _ => (vec!["train".into()], "test"),
    }
}

/// The sub-folders a data set may live in (the official archive's name first).
pub fn folders(kind: DatasetKind) -> &'static [&'static str] {
    match kind {
        DatasetKind::Cifar10 => &["cifar-10-batches-bin", "cifar10"],
        _ => &["cifar-100-binary", "cifar100"],
    }
}

/// `folder/<name>.bin.gz` or `folder/<name>.bin`, whichever exists.
fn find(folder: &Path, name: &str) -> Option<PathBuf> {
    super::find_file(folder, &format!("{name}.bin"))
}

/// The located files of a CIFAR data set: training files, test file, and whether the test file is
/// the partial CIFAR-10 copy.
pub struct Located {
    pub train: Vec<PathBuf>,
    pub test: PathBuf,
    pub partial_test: bool,
}

/// Finds `kind`'s files in `dir/<folder>/` (or `dir` itself); the error lists what is missing.
pub fn locate(kind: DatasetKind, dir: &Path) -> Result<Located> {
    let (train_names, test_name) = file_names(kind);
    let mut candidates: Vec<PathBuf> = folders(kind).iter().map(|f| dir.join(f)).collect();
    candidates.push(dir.to_path_buf());
    for folder in &candidates {
        let train: Vec<Option<PathBuf>> = train_names.iter().map(|n| find(folder, n)).collect();
        let full_test = find(folder, test_name);
        let partial = if kind == DatasetKind::Cifar10 { find(folder, TEST_PARTIAL) } else { None };
        if train.iter().all(Option::is_some) && (full_test.is_some() || partial.is_some()) {
            let partial_test = full_test.is_none();
            return Ok(Located {
                train: train.into_iter().flatten().collect(),
                test: full_test.or(partial).expect("one of them"),
                partial_test,
            });
        }
    }
    let folder = &candidates[0];
    let mut missing: Vec<String> = train_names
        .iter()
        .chain(std::iter::once(&test_name.to_string()))
        .filter(|n| find(folder, n).is_none())
        .map(|n| folder.join(format!("{n}.bin")).display().to_string())
        .collect();
    if missing.is_empty() {
        missing.push(folder.display().to_string());
    }
    Err(Error::MissingData { dataset: kind.name().into(), dir: dir.to_path_buf(), missing: missing.join(", ") })
}

/// More than any CIFAR file holds (CIFAR-100's training file: 50,000 records of 3,074 bytes);
/// a compressed file that inflates beyond it is refused before it fills the memory.
pub const MAX_FILE_BYTES: usize = 60_000 * (2 + PIXELS);

/// Parses the records of one uncompressed file; `path` names it in errors.
pub fn parse(bytes: &[u8], kind: DatasetKind, path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let label_bytes = if kind == DatasetKind::Cifar10 { 1 } else { 2 };
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(Error::format(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte {} records (truncated or not a {} file)",
                bytes.len(),
                kind.name(),
                kind.name()
            ),
        ));
    }
    let n = bytes.len() / record;
    let n_classes = kind.n_classes().unwrap_or(10);
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * PIXELS);
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        // CIFAR-100: byte 0 coarse, byte 1 fine
        let label = match kind {
            DatasetKind::Cifar100Coarse => r[0],
            DatasetKind::Cifar100 => r[1],
            _ => r[0],
        };
        if label as usize >= n_classes {
            return Err(Error::format(path, format!("label {label} of record {i} is outside 0..{n_classes}")));
        }
        labels.push(label);
        pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok((labels, pixels))
}

fn read_split(paths: &[PathBuf], kind: DatasetKind, files: &mut Vec<DataFile>) -> Result<Split> {
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    for path in paths {
        let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        files.push(DataFile { path: path.clone(), sha256: sha256_hex(&raw) });
        let (l, p) = parse(&maybe_gunzip(raw, path, MAX_FILE_BYTES)?, kind, path)?;
        labels.extend(l);
        pixels.extend(p);
    }
    Ok(Split { images: pixels.iter().map(|&p| p as f32 / 255.0).collect(), labels, dim: PIXELS })
}

/// The note that a result used the partial CIFAR-10 test set.
pub fn partial_note(path: &Path, n: usize) -> String {
    format!(
        "CIFAR-10 test set incomplete: {} ({n} of the 10000 official test images, not in the official order); test errors are on 99.8 % of the test set",
        path.display()
    )
}

/// Loads a CIFAR data set: the training split, the test split, the files read, and notes about
/// what is unusual (the partial CIFAR-10 test set).
pub fn load(kind: DatasetKind, dir: &Path) -> Result<(Split, Split, Vec<DataFile>, Vec<String>)> {
    let located = locate(kind, dir)?;
    let mut files = Vec::new();
    let train = read_split(&located.train, kind, &mut files)?;
    let test = read_split(std::slice::from_ref(&located.test), kind, &mut files)?;
    let mut notes = Vec::new();
    if located.partial_test {
        notes.push(partial_note(&located.test, test.len()));
    }
    Ok((train, test, files, notes))
}
