//! Your own data: arrays in NumPy's formats (an `.npz` file, or a folder of `.npy` files), or
//! arrays handed over from Python (`dfa.Net.fit`), made into a [`Dataset`] with the same checks.
//!
//! The arrays are `x_train`, `y_train` and optionally `x_test`, `y_test`:
//! - inputs `float32` (used as they are), `float64` (rounded to `float32`) or `uint8` (divided by
//!   255, as the named data sets are); `N×D` (flat), `N×H×W` (one channel) or `N×C×H×W`
//!   (channel-major: what the conv blocks read), C order;
//! - labels of any integer type, one per sample, `0 ≤ y < 256`; the number of classes is the
//!   largest label of either split plus one.
//!
//! Without `x_test`/`y_test` the run has no test set: its test error is not a number (`NaN`,
//! written as `null` in the JSON records) and says so in the run's notes.

use crate::base::error::{Error, Result};
use crate::base::shape::Shape;
use crate::data::{DataFile, Dataset, DatasetKind, Split, sha256_hex};
use std::io::Read;
use std::path::Path;

/// The names of the four arrays, in the order train inputs, train labels, test inputs, test labels.
pub const NAMES: [&str; 4] = ["x_train", "y_train", "x_test", "y_test"];

/// The largest number of classes (labels are stored as bytes).
pub const MAX_CLASSES: usize = 256;

/// Input values as they arrive, borrowed.
#[derive(Clone, Copy, Debug)]
pub enum Pixels<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    U8(&'a [u8]),
}

impl Pixels<'_> {
    fn len(&self) -> usize {
        match self {
            Pixels::F32(v) => v.len(),
            Pixels::F64(v) => v.len(),
            Pixels::U8(v) => v.len(),
        }
    }

    /// The values as `f32` (one copy), or the position of the first one that is not finite.
    fn to_f32(self) -> std::result::Result<Vec<f32>, (usize, f64)> {
        let bad = |i: usize, v: f64| Err((i, v));
        match self {
            Pixels::F32(v) => match v.iter().position(|x| !x.is_finite()) {
                Some(i) => bad(i, v[i] as f64),
                None => Ok(v.to_vec()),
            },
            Pixels::F64(v) => match v.iter().position(|x| !(*x as f32).is_finite()) {
                Some(i) => bad(i, v[i]),
                None => Ok(v.iter().map(|&x| x as f32).collect()),
            },
            Pixels::U8(v) => Ok(v.iter().map(|&p| p as f32 / 255.0).collect()),
        }
    }
}

/// An input array: its shape (samples first) and values in C order.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub shape: &'a [usize],
    pub values: Pixels<'a>,
}

/// A label array: its shape and values, widened to `i64`.
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    pub shape: &'a [usize],
    pub values: &'a [i64],
}

/// A pair of arrays, named for the messages (`"my.npz: x_train"`, or `"x_train"` from Python).
#[derive(Clone, Copy, Debug)]
pub struct Pair<'a> {
    pub inputs: Inputs<'a>,
    pub labels: Labels<'a>,
}

/// The shape of one sample of an input array: `N×D` flat, `N×H×W` one channel, `N×C×H×W`.
fn sample_shape(name: &str, shape: &[usize]) -> Result<Shape> {
    match *shape {
        [_, d] => Ok(Shape { h: 1, w: d, c: 1 }),
        [_, h, w] => Ok(Shape { h, w, c: 1 }),
        [_, c, h, w] => Ok(Shape { h, w, c }),
        _ => Err(Error::config(
            name,
            format!(
                "expected inputs of shape (N, D), (N, H, W) or (N, C, H, W), found {} dimensions {shape:?}",
                shape.len()
            ),
        )),
    }
}

/// One split from a pair of arrays, checked (shapes, lengths, label range, finite inputs) and
/// converted to `f32` (the one copy); its per-sample shape.
pub fn split(names: [&str; 2], pair: Pair) -> Result<(Split, Shape)> {
    let [xn, yn] = names;
    let shape = sample_shape(xn, pair.inputs.shape)?;
    let n = pair.inputs.shape[0];
    if n == 0 || shape.is_empty() {
        return Err(Error::config(
            xn,
            format!("holds no values (shape {:?}); a split needs samples", pair.inputs.shape),
        ));
    }
    let expected = n.checked_mul(shape.len());
    if expected != Some(pair.inputs.values.len()) {
        return Err(Error::config(
            xn,
            format!(
                "shape {:?} needs {expected:?} values, the array holds {}",
                pair.inputs.shape,
                pair.inputs.values.len()
            ),
        ));
    }
    if pair.labels.shape.len() != 1 {
        let hint = if pair.labels.shape.len() == 2 { " (one-hot rows? pass their argmax)" } else { "" };
        return Err(Error::config(
            yn,
            format!("expected one integer label per sample, shape (N,), found {:?}{hint}", pair.labels.shape),
        ));
    }
    if pair.labels.values.len() != n {
        return Err(Error::config(
            yn,
            format!(
                "holds {} labels but {xn} holds {n} samples; the two must have the same length",
                pair.labels.values.len()
            ),
        ));
    }
    if let Some((i, &l)) = pair.labels.values.iter().enumerate().find(|(_, l)| !(0..MAX_CLASSES as i64).contains(*l)) {
        return Err(Error::config(
            yn,
            format!("label {l} at position {i} is outside 0..{MAX_CLASSES} (class indices 0, 1, … are expected)"),
        ));
    }
    let images = pair.inputs.values.to_f32().map_err(|(i, v)| {
        Error::config(
            xn,
            format!("value {v} at sample {}, feature {}: inputs must be finite", i / shape.len(), i % shape.len()),
        )
    })?;
    let labels = pair.labels.values.iter().map(|&l| l as u8).collect();
    Ok((Split { images, labels, dim: shape.len() }, shape))
}

/// A data set from arrays: `names` name the four arrays in messages (see [`NAMES`]); `files`
/// are what the run records as its data (with their SHA-256).
pub fn dataset(
    kind: DatasetKind,
    names: [&str; 4],
    train: Pair,
    test: Option<Pair>,
    files: Vec<DataFile>,
) -> Result<Dataset> {
    let (train, shape) = split([names[0], names[1]], train)?;
    let mut notes = Vec::new();
    let test = match test {
        Some(pair) => {
            let (test, test_shape) = split([names[2], names[3]], pair)?;
            if test_shape != shape {
                return Err(Error::config(
                    names[2],
                    format!(
                        "samples are {}×{}×{} (C×H×W), those of {} {}×{}×{}; both splits need the same shape",
                        test_shape.c, test_shape.h, test_shape.w, names[0], shape.c, shape.h, shape.w
                    ),
                ));
            }
            test
        }
        None => {
            notes.push(format!(
                "no {} / {}: the run has no test set, its test error is not measured",
                names[2], names[3]
            ));
            Split { images: Vec::new(), labels: Vec::new(), dim: shape.len() }
        }
    };
    let n_classes = train.labels.iter().chain(&test.labels).map(|&l| l as usize + 1).max().unwrap_or(0);
    if n_classes < 2 {
        return Err(Error::config(names[1], "all labels are 0: a classifier needs at least two classes"));
    }
    Ok(Dataset { kind, train: train.into(), test: test.into(), n_classes, shape, files, notes })
}

/// An array read from a `.npy` stream.
struct Array {
    shape: Vec<usize>,
    data: ArrayData,
}

enum ArrayData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U8(Vec<u8>),
    Int(Vec<i64>),
}

impl Array {
    fn inputs(&self, name: &str) -> Result<Inputs<'_>> {
        let values = match &self.data {
            ArrayData::F32(v) => Pixels::F32(v),
            ArrayData::F64(v) => Pixels::F64(v),
            ArrayData::U8(v) => Pixels::U8(v),
            ArrayData::Int(_) => {
                return Err(Error::config(
                    name,
                    "inputs are integers other than uint8; expected float32, float64 or uint8",
                ));
            }
        };
        Ok(Inputs { shape: &self.shape, values })
    }

    fn labels(&self, name: &str) -> Result<Labels<'_>> {
        match &self.data {
            ArrayData::Int(v) => Ok(Labels { shape: &self.shape, values: v }),
            ArrayData::U8(_) => Err(Error::config(name, "internal: uint8 labels are widened when read")),
            _ => Err(Error::config(name, "labels are floating point; expected integer class indices")),
        }
    }
}

/// Reads one `.npy` array of at most `limit` bytes of data; `labels` widens every integer type
/// (uint8 too) to `i64`.
fn read_npy(reader: impl Read, name: &str, limit: u64, labels: bool) -> Result<Array> {
    use npyz::{DType, Order, TypeChar};
    let bad = |m: String| Error::config(name, m);
    let npy = npyz::NpyFile::new(reader).map_err(|e| bad(format!("not a .npy array: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() == Order::Fortran && shape.len() > 1 {
        return Err(bad("stored in Fortran order; save np.ascontiguousarray(the array) instead".into()));
    }
    let DType::Plain(ts) = npy.dtype() else {
        return Err(bad(format!("dtype {} is not a plain number type", npy.dtype().descr())));
    };
    let size = ts.size_field();
    let declared = shape.iter().try_fold(size, |a, &d| a.checked_mul(d as u64));
    match declared {
        Some(bytes) if bytes <= limit => {}
        _ => {
            return Err(bad(format!(
                "its header declares shape {shape:?} of {size}-byte values, more than the {limit} bytes that hold it"
            )));
        }
    }
    let e = |e: std::io::Error| bad(format!("unreadable data: {e}"));
    let data = match (ts.type_char(), size) {
        (TypeChar::Float, 4) => ArrayData::F32(npy.into_vec().map_err(e)?),
        (TypeChar::Float, 8) => ArrayData::F64(npy.into_vec().map_err(e)?),
        (TypeChar::Uint, 1) if !labels => ArrayData::U8(npy.into_vec().map_err(e)?),
        (TypeChar::Uint, 1) => ArrayData::Int(npy.into_vec::<u8>().map_err(e)?.into_iter().map(i64::from).collect()),
        (TypeChar::Uint, 2) => ArrayData::Int(npy.into_vec::<u16>().map_err(e)?.into_iter().map(i64::from).collect()),
        (TypeChar::Uint, 4) => ArrayData::Int(npy.into_vec::<u32>().map_err(e)?.into_iter().map(i64::from).collect()),
        (TypeChar::Uint, 8) => ArrayData::Int(
            npy.into_vec::<u64>().map_err(e)?.into_iter().map(|v| v.min(i64::MAX as u64) as i64).collect(),
        ),
        (TypeChar::Int, 1) => ArrayData::Int(npy.into_vec::<i8>().map_err(e)?.into_iter().map(i64::from).collect()),
        (TypeChar::Int, 2) => ArrayData::Int(npy.into_vec::<i16>().map_err(e)?.into_iter().map(i64::from).collect()),
        (TypeChar::Int, 4) => ArrayData::Int(npy.into_vec::<i32>().map_err(e)?.into_iter().map(i64::from).collect()),
        (TypeChar::Int, 8) => ArrayData::Int(npy.into_vec::<i64>().map_err(e)?),
        _ => {
            return Err(bad(format!(
                "dtype {} is not supported; expected float32, float64 or uint8 inputs and integer labels",
                ts
            )));
        }
    };
    Ok(Array { shape, data })
}

/// Loads your own data from `path`: an `.npz` file (`np.savez` or `np.savez_compressed`) with
/// the arrays of [`NAMES`], or a folder with `x_train.npy`, `y_train.npy` (and optionally
/// `x_test.npy`, `y_test.npy`). Every file is recorded with its SHA-256.
pub fn load(path: &Path) -> Result<Dataset> {
    let what = |name: &str| format!("{}: {name}", path.display());
    let mut files = Vec::new();
    let mut arrays: Vec<Option<Array>> = Vec::new();
    if path.is_dir() {
        for (k, name) in NAMES.iter().enumerate() {
            let file = path.join(format!("{name}.npy"));
            if !file.is_file() {
                arrays.push(None);
                continue;
            }
            let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
            files.push(DataFile { path: file.clone(), sha256: sha256_hex(&bytes) });
            let limit = bytes.len() as u64;
            arrays.push(Some(read_npy(&bytes[..], &file.display().to_string(), limit, k % 2 == 1)?));
        }
    } else {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        files.push(DataFile { path: path.to_path_buf(), sha256: sha256_hex(&bytes) });
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..])).map_err(|e| {
            Error::format(path, format!("not an .npz file (a zip archive of .npy arrays, as np.savez writes): {e}"))
        })?;
        let budget = crate::base::memory::available_bytes().unwrap_or(u64::MAX);
        for (k, name) in NAMES.iter().enumerate() {
            let member = match zip.by_name(&format!("{name}.npy")) {
                Ok(m) => m,
                Err(zip::result::ZipError::FileNotFound) => {
                    arrays.push(None);
                    continue;
                }
                Err(e) => return Err(Error::format(path, format!("member {name}.npy: {e}"))),
            };
            let limit = member.size().min(budget);
            arrays.push(Some(read_npy(member.take(limit), &what(name), limit, k % 2 == 1)?));
        }
    }
    let mut it = arrays.into_iter();
    let (x_train, y_train, x_test, y_test) =
        (it.next().flatten(), it.next().flatten(), it.next().flatten(), it.next().flatten());
    let names = NAMES.map(what);
    let names = [names[0].as_str(), names[1].as_str(), names[2].as_str(), names[3].as_str()];
    let (Some(xt), Some(yt)) = (&x_train, &y_train) else {
        let missing: Vec<&str> = [("x_train", &x_train), ("y_train", &y_train)]
            .iter()
            .filter(|(_, a)| a.is_none())
            .map(|(n, _)| *n)
            .collect();
        return Err(Error::format(
            path,
            format!(
                "no {} in it; expected the arrays x_train and y_train (and optionally x_test, y_test){}",
                missing.join(" or "),
                if path.is_dir() { " as .npy files in the folder" } else { "" }
            ),
        ));
    };
    let train = Pair { inputs: xt.inputs(names[0])?, labels: yt.labels(names[1])? };
    let test = match (&x_test, &y_test) {
        (Some(x), Some(y)) => Some(Pair { inputs: x.inputs(names[2])?, labels: y.labels(names[3])? }),
        (None, None) => None,
        (Some(_), None) => return Err(Error::format(path, "holds x_test but no y_test; give both or neither")),
        (None, Some(_)) => return Err(Error::format(path, "holds y_test but no x_test; give both or neither")),
    };
    dataset(DatasetKind::File, names, train, test, files)
}
