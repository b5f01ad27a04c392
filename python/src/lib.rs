//! `dfa._dfa`: the Python bindings of `dfa`, a thin layer over the library. A `Net` is a
//! `TrainConfig` and, once trained or loaded, a `Model` and its `Progress`, exactly what a run
//! folder holds; `fit` drives the library's `Trainer` epoch by epoch with the GIL released.
//!
//! Arrays from Python are read in place (NumPy buffers borrowed, never copied before the one
//! conversion into the training split) and checked by `dfa::data::arrays`, whose errors become
//! `ValueError`s; a wrong type or dtype is a `TypeError`; a Rust panic becomes
//! `pyo3_runtime.PanicException`.

use dfa::Error;
use dfa::base::shape::Shape;
use dfa::data::arrays::{self, Inputs, Labels, Pair, Pixels};
use dfa::data::{DataFile, Dataset, DatasetKind, sha256_hex};
use dfa::train::config::TrainConfig;
use dfa::train::record::{self, CHECKPOINT_FILE, GIT_COMMIT, META_FILE, Meta, RunDir, SUMMARY_FILE, Summary, VERSION};
use dfa::train::{EpochMetrics, Model, Progress, StopReason, Trainer, apply_subsets, infer, resolve_threads};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn err(e: Error) -> PyErr {
    match e {
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A JSON value (a record of the library) as a Python object, through `json.loads`.
fn to_py<'py, T: serde::Serialize + ?Sized>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// A Python value (an option of `Net`) as JSON.
fn to_json(name: &str, v: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use serde_json::Value;
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = v.extract::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok(Value::from(f));
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(Value::String(s));
    }
    if let Ok(items) = v.extract::<Vec<Bound<'_, PyAny>>>() {
        return items.iter().map(|i| to_json(name, i)).collect::<PyResult<Vec<_>>>().map(Value::Array);
    }
    Err(PyTypeError::new_err(format!("{name}: expected a number, string, bool or list, got {}", v.get_type().name()?)))
}

/// An input array borrowed from NumPy.
enum InputArray<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    U8(PyReadonlyArrayDyn<'py, u8>),
}

fn untyped<'a, 'py>(name: &str, obj: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyUntypedArray>> {
    obj.cast::<PyUntypedArray>().map_err(|_| {
        let t = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        PyTypeError::new_err(format!("{name}: expected a numpy array, got {t}"))
    })
}

fn input_array<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<InputArray<'py>> {
    let array = untyped(name, obj)?;
    let a = if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        InputArray::F32(a)
    } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f64>>() {
        InputArray::F64(a)
    } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, u8>>() {
        InputArray::U8(a)
    } else {
        return Err(PyTypeError::new_err(format!(
            "{name}: dtype {} is not supported; expected float32, float64 or uint8 inputs",
            array.dtype()
        )));
    };
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} is not C-contiguous (a slice with a step, or a transpose?): it is refused rather than \
             copied behind your back; pass np.ascontiguousarray({name})"
        )));
    }
    Ok(a)
}

impl InputArray<'_> {
    fn shape(&self) -> &[usize] {
        match self {
            InputArray::F32(a) => a.shape(),
            InputArray::F64(a) => a.shape(),
            InputArray::U8(a) => a.shape(),
        }
    }

    fn inputs(&self) -> Inputs<'_> {
        let contiguous = "checked C-contiguous";
        let values = match self {
            InputArray::F32(a) => Pixels::F32(a.as_slice().expect(contiguous)),
            InputArray::F64(a) => Pixels::F64(a.as_slice().expect(contiguous)),
            InputArray::U8(a) => Pixels::U8(a.as_slice().expect(contiguous)),
        };
        Inputs { shape: self.shape(), values }
    }

    /// SHA-256 of the values as stored (little-endian), recorded as the run's data.
    fn sha256(&self) -> String {
        let inputs = self.inputs();
        let bytes: Vec<u8> = match inputs.values {
            Pixels::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Pixels::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Pixels::U8(v) => v.to_vec(),
        };
        sha256_hex(&bytes)
    }
}

/// Labels of any integer dtype, widened to `i64` (a copy: labels are small), with their shape.
fn label_array(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<(Vec<usize>, Vec<i64>)> {
    let array = untyped(name, obj)?;
    let shape = array.shape().to_vec();
    macro_rules! widen {
        ($($t:ty),*) => {$(
            if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, $t>>() {
                return Ok((shape, a.as_array().iter().map(|&v| v as i64).collect()));
            }
        )*};
    }
    widen!(i64, i32, i16, i8, u8, u16, u32);
    if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, u64>>() {
        return Ok((shape, a.as_array().iter().map(|&v| v.min(i64::MAX as u64) as i64).collect()));
    }
    Err(PyTypeError::new_err(format!(
        "{name}: dtype {} is not supported; expected integer class labels (e.g. int64)",
        array.dtype()
    )))
}

/// A data set from the arrays of `fit`, checked as `dfa train --data` checks an `.npz` file.
fn dataset_from(
    x_train: &Bound<'_, PyAny>,
    y_train: &Bound<'_, PyAny>,
    test: Option<(&Bound<'_, PyAny>, &Bound<'_, PyAny>)>,
) -> PyResult<Dataset> {
    let xt = input_array("x_train", x_train)?;
    let (yt_shape, yt) = label_array("y_train", y_train)?;
    let test_arrays = match test {
        Some((x, y)) => Some((input_array("x_test", x)?, label_array("y_test", y)?)),
        None => None,
    };
    let mut files = vec![DataFile { path: "x_train".into(), sha256: xt.sha256() }];
    files.push(DataFile { path: "y_train".into(), sha256: sha256_hex(&label_bytes(&yt)) });
    if let Some((x, (_, y))) = &test_arrays {
        files.push(DataFile { path: "x_test".into(), sha256: x.sha256() });
        files.push(DataFile { path: "y_test".into(), sha256: sha256_hex(&label_bytes(y)) });
    }
    let train = Pair { inputs: xt.inputs(), labels: Labels { shape: &yt_shape, values: &yt } };
    let test =
        test_arrays.as_ref().map(|(x, (shape, y))| Pair { inputs: x.inputs(), labels: Labels { shape, values: y } });
    arrays::dataset(DatasetKind::Arrays, arrays::NAMES, train, test, files).map_err(err)
}

fn label_bytes(labels: &[i64]) -> Vec<u8> {
    labels.iter().flat_map(|l| l.to_le_bytes()).collect()
}

/// Inputs for `predict`, `evaluate`, `angles`: as `f32`, with their per-sample shape.
fn inputs_f32(name: &str, x: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, Shape, usize)> {
    let a = input_array(name, x)?;
    let inputs = a.inputs();
    let labels: Vec<i64> = vec![0; inputs.shape.first().copied().unwrap_or(0)];
    let shape = [labels.len()];
    // the same checks and conversion as training data (labels are not looked at here)
    let pair = Pair { inputs, labels: Labels { shape: &shape, values: &labels } };
    let split = arrays::split([name, "labels"], pair).map_err(err)?;
    Ok((split.0.images, split.1, labels.len()))
}

/// What `fit` continues from: the model and its progress, and the data shape it was built for.
#[derive(Clone)]
struct State {
    model: Model,
    progress: Progress,
    shape: Shape,
    n_classes: usize,
}

/// A network with its learning rule, as `dfa train` configures it.
///
/// Every option of `dfa train` is a keyword argument, by the name it has in a run's
/// `config.toml` (e.g. `learning_rate`, `batch_size`, `optimiser`, `dropout_hidden`,
/// `align_every`, `layer_rules`, `feedback_density`); `hidden` is the list of hidden widths (or
/// a model string such as `"2x800"` or `"conv-tanh"`), `act` the activation.
#[pyclass(module = "dfa._dfa")]
struct Net {
    config: TrainConfig,
    state: Option<State>,
    history: Vec<EpochMetrics>,
    data_files: Vec<DataFile>,
    n_train: usize,
    n_test: usize,
    notes: Vec<String>,
}

fn build_config(
    hidden: Option<&Bound<'_, PyAny>>,
    act: Option<String>,
    rule: Option<String>,
    seed: Option<u64>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<TrainConfig> {
    let defaults = TrainConfig { dataset: DatasetKind::Arrays, ..TrainConfig::default() };
    let mut map = match serde_json::to_value(&defaults) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Err(PyValueError::new_err("the default configuration does not serialise")),
    };
    if let Some(h) = hidden {
        let model = if let Ok(s) = h.extract::<String>() {
            s
        } else if let Ok(widths) = h.extract::<Vec<usize>>() {
            widths.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        } else {
            return Err(PyTypeError::new_err("hidden: expected a list of widths, e.g. [800, 800], or a model string"));
        };
        map.insert("model".into(), model.into());
    }
    if let Some(a) = act {
        map.insert("activation".into(), a.into());
    }
    if let Some(r) = rule {
        map.insert("rule".into(), r.into());
    }
    if let Some(s) = seed {
        map.insert("seed".into(), s.into());
    }
    if let Some(options) = options {
        for (k, v) in options.iter() {
            let key: String = k.extract()?;
            let key = match key.as_str() {
                "lr" => "learning_rate".to_string(),
                "optimizer" => "optimiser".to_string(),
                "act" => "activation".to_string(),
                _ => key,
            };
            match to_json(&key, &v)? {
                serde_json::Value::Null => map.remove(&key),
                value => map.insert(key, value),
            };
        }
    }
    let mut config: TrainConfig = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| PyValueError::new_err(format!("invalid option: {e}")))?;
    config.threads = resolve_threads(config.threads);
    config.validate().map_err(err)?;
    Ok(config)
}

/// Polls Python for signals (Ctrl-C) every 50 ms on the calling thread while `work` runs on
/// another with the GIL released; `work` sees `stop` set when a signal handler raised.
fn run_released<T: Send>(py: Python<'_>, work: impl FnOnce(&AtomicBool) -> T + Send) -> (T, Option<PyErr>) {
    let stop = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let mut raised = None;
    let result = py.detach(|| {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                let r = work(&stop);
                done.store(true, Ordering::Release);
                r
            });
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
                if raised.is_none()
                    && let Err(e) = Python::attach(|py| py.check_signals())
                {
                    raised = Some(e);
                    stop.store(true, Ordering::Release);
                }
            }
            handle.join()
        })
    });
    match result {
        Ok(r) => (r, raised),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[pymethods]
impl Net {
    #[new]
    #[pyo3(signature = (hidden=None, act=None, rule=None, seed=None, **options))]
    fn new(
        hidden: Option<&Bound<'_, PyAny>>,
        act: Option<String>,
        rule: Option<String>,
        seed: Option<u64>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = build_config(hidden, act, rule, seed, options)?;
        Ok(Net {
            config,
            state: None,
            history: Vec::new(),
            data_files: Vec::new(),
            n_train: 0,
            n_test: 0,
            notes: Vec::new(),
        })
    }

    /// The configuration, as `config.toml` holds it.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.config)
    }

    /// Every epoch trained so far, as the lines of `metrics.jsonl`.
    #[getter]
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.history)
    }

    /// Epochs trained so far.
    #[getter]
    fn epoch(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.progress.epoch)
    }

    /// Trains on the arrays until the paper's stopping rules or `max_epochs` (epochs of this
    /// call) end it; a second call goes on from where the first stopped. `on_epoch(metrics)` is
    /// called after every epoch with that epoch's line of `metrics.jsonl` as a dict. Training
    /// runs with the GIL released; Ctrl-C stops it after the current mini-batch and returns the
    /// net to the end of its last complete epoch (so that `fit` can go on bit for bit) before
    /// `KeyboardInterrupt` is raised. Returns the metrics of this call's epochs.
    #[pyo3(signature = (x_train, y_train, x_test=None, y_test=None, max_epochs=None, on_epoch=None))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        slf: &Bound<'py, Self>,
        x_train: &Bound<'py, PyAny>,
        y_train: &Bound<'py, PyAny>,
        x_test: Option<&Bound<'py, PyAny>>,
        y_test: Option<&Bound<'py, PyAny>>,
        max_epochs: Option<usize>,
        on_epoch: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let test = match (x_test, y_test) {
            (Some(x), Some(y)) => Some((x, y)),
            (None, None) => None,
            _ => return Err(PyValueError::new_err("x_test and y_test: give both or neither")),
        };
        let data = dataset_from(x_train, y_train, test)?;
        // the net is borrowed only between epochs, never while training or calling back, so
        // that on_epoch (and other threads) may use it: predict, evaluate, angles, save
        let (mut config, state) = {
            let me = slf.borrow();
            (me.config.clone(), me.state.clone())
        };
        if let Some(n) = max_epochs {
            config.max_epochs = n;
        }
        let data = apply_subsets(data, &config);
        let n_classes = state.as_ref().map_or(data.n_classes, |s| s.n_classes);
        let mut trainer = match state {
            None => Trainer::new(config, &data).map_err(err)?,
            Some(state) => {
                if check_shape(data.shape, &state).is_err() || state.n_classes < data.n_classes {
                    return Err(PyValueError::new_err(format!(
                        "x_train: samples of shape {:?} (C, H, W) and {} classes; the net was built for {:?} and {} classes",
                        [data.shape.c, data.shape.h, data.shape.w],
                        data.n_classes,
                        [state.shape.c, state.shape.h, state.shape.w],
                        state.n_classes
                    )));
                }
                let mut progress = state.progress;
                progress.first_epoch = progress.epoch;
                progress.stop = None;
                Trainer::resume(config, &data, state.model, progress).map_err(err)?
            }
        };
        let shape = data.shape;
        let keep = |t: &Trainer| State { model: t.model.clone(), progress: t.progress.clone(), shape, n_classes };
        let first = {
            let mut me = slf.borrow_mut();
            me.data_files = data.files.clone();
            (me.n_train, me.n_test, me.notes) = (trainer.n_train(), trainer.n_test(), data.notes.clone());
            me.state = Some(keep(&trainer));
            me.history.len()
        };
        while trainer.progress.stop.is_none() {
            let (metrics, raised) =
                run_released(py, |stop| trainer.run_epoch_until(&mut |_, _| !stop.load(Ordering::Acquire)));
            // stopped within the epoch: the net is still at the end of the epoch before
            let Some(m) = metrics else {
                return Err(raised.unwrap_or_else(|| PyValueError::new_err("the epoch stopped")));
            };
            let line = to_py(py, &m)?;
            {
                let mut me = slf.borrow_mut();
                me.history.push(m);
                me.state = Some(keep(&trainer));
            }
            if let Some(e) = raised {
                return Err(e);
            }
            if let Some(f) = &on_epoch {
                f.call1((line,))?;
            }
        }
        let me = slf.borrow();
        to_py(py, &me.history[first.min(me.history.len())..])
    }

    /// Class scores `σ(a_L)` of the net for the rows of `x` (float32, samples × classes).
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.trained()?;
        let (x, shape, n) = inputs_f32("x", x)?;
        check_shape(shape, state)?;
        let (net, threads) = (&state.model.net, self.config.threads);
        let scores = py.detach(|| infer::scores(net, &x, threads)).map_err(err)?;
        let classes = state.model.net.n_outputs();
        PyArray1::from_vec(py, scores).reshape([n, classes]).map(Bound::into_any)
    }

    /// `{"error": percent misclassified, "loss": mean loss per sample}` on the arrays.
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = self.trained()?;
        let (x, labels) = self.checked(x, y, state)?;
        let (net, threads) = (&state.model.net, self.config.threads);
        let (error, loss) = py.detach(|| infer::error_and_loss(net, &x, &labels, threads)).map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("error", error)?;
        d.set_item("loss", loss)?;
        Ok(d.into_any())
    }

    /// Per hidden layer, the alignment of the rule's update direction with back-propagation's
    /// on one batch made of the arrays (dense nets): `delta_angle_mean`, `delta_angle_batch`,
    /// `update_angle` (degrees), `criterion_positive`, and for Kolen–Pollack and the sign rules
    /// `feedback_angle` (B against Wᵀ).
    fn angles<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = self.trained()?;
        let (x, labels) = self.checked(x, y, state)?;
        let rules = self.config.rule_set();
        let (model, threads) = (&state.model, self.config.threads);
        let layers = py.detach(|| infer::angles(model, &rules, &x, &labels, threads)).map_err(err)?;
        to_py(py, &layers)
    }

    /// Writes the run folder `path` as `dfa train` writes one: `config.toml`, `meta.json`,
    /// `metrics.jsonl`, `checkpoint.safetensors` (and `summary.json` once training has ended).
    fn save(&self, path: PathBuf) -> PyResult<()> {
        let state = self.trained()?;
        std::fs::create_dir_all(&path).map_err(|e| err(Error::io(&path, e)))?;
        let dir = RunDir::open_new(&path).map_err(err)?;
        let _lock = dir.lock().map_err(err)?;
        dir.write_config(&self.config).map_err(err)?;
        let meta = Meta {
            dfa_version: VERSION.into(),
            git_commit: GIT_COMMIT.into(),
            seed: self.config.seed,
            threads: self.config.threads,
            data_files: self.data_files.clone(),
            n_train: self.n_train,
            n_test: self.n_test,
            parameters: state.model.net.parameter_count(),
            warnings: self.config.warnings().into_iter().chain(self.notes.iter().cloned()).collect(),
            config: Some(self.config.clone()),
            input_shape: Some([state.shape.c, state.shape.h, state.shape.w]),
            n_classes: Some(state.n_classes),
        };
        dir.write_json(META_FILE, &meta).map_err(err)?;
        dir.truncate_metrics(0).map_err(err)?;
        for m in &self.history {
            dir.append_metrics(m).map_err(err)?;
        }
        let bytes = record::checkpoint_bytes(&state.model, &state.progress, &self.config).map_err(err)?;
        dfa::base::io::write_atomically(&dir.file(CHECKPOINT_FILE), &bytes).map_err(err)?;
        let summary = dir.file(SUMMARY_FILE);
        match state.progress.stop {
            Some(stop) => dir.write_json(SUMMARY_FILE, &self.summary(state, stop)).map_err(err)?,
            None if summary.exists() => std::fs::remove_file(&summary).map_err(|e| err(Error::io(&summary, e)))?,
            None => {}
        }
        Ok(())
    }

    /// A net from a run folder written by `Net.save` or by `dfa train` (its configuration,
    /// checkpoint and metrics; no data are read).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        let dir = RunDir::open(&path).map_err(err)?;
        let config = dir.read_config().map_err(err)?;
        let meta: Option<Meta> =
            dir.file(META_FILE).is_file().then(|| dir.read_json(META_FILE)).transpose().map_err(err)?;
        let shape = meta
            .as_ref()
            .and_then(|m| m.input_shape)
            .map(|[c, h, w]| Shape { c, h, w })
            .or_else(|| config.dataset.image_shape())
            .ok_or_else(|| {
                PyValueError::new_err(format!("{}: meta.json does not say the input shape", path.display()))
            })?;
        let n_classes =
            meta.as_ref().and_then(|m| m.n_classes).or_else(|| config.dataset.n_classes()).ok_or_else(|| {
                PyValueError::new_err(format!("{}: meta.json does not say the classes", path.display()))
            })?;
        let (model, progress) = dir.load_checkpoint(&config, shape, n_classes).map_err(err)?;
        let history = dir.read_metrics().map_err(err)?;
        let history = history.into_iter().take(progress.epoch).collect();
        let (data_files, n_train, n_test) = meta.map_or((Vec::new(), 0, 0), |m| (m.data_files, m.n_train, m.n_test));
        Ok(Net {
            config,
            state: Some(State { model, progress, shape, n_classes }),
            history,
            data_files,
            n_train,
            n_test,
            notes: Vec::new(),
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "Net(model='{}', act='{}', rule='{}', seed={}, epochs={})",
            self.config.model,
            self.config.activation.name(),
            self.config.rule_name(),
            self.config.seed,
            self.epoch()
        )
    }
}

impl Net {
    fn trained(&self) -> PyResult<&State> {
        self.state
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the net has no weights yet: call fit() or Net.load() first"))
    }

    fn checked(&self, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>, state: &State) -> PyResult<(Vec<f32>, Vec<u8>)> {
        let xa = input_array("x", x)?;
        let (y_shape, y) = label_array("y", y)?;
        let pair = Pair { inputs: xa.inputs(), labels: Labels { shape: &y_shape, values: &y } };
        let (split, shape) = arrays::split(["x", "y"], pair).map_err(err)?;
        check_shape(shape, state)?;
        if let Some(&l) = split.labels.iter().find(|&&l| l as usize >= state.n_classes) {
            return Err(PyValueError::new_err(format!(
                "y: label {l} is outside the net's {} classes",
                state.n_classes
            )));
        }
        Ok((split.images, split.labels))
    }

    fn summary(&self, state: &State, stop: StopReason) -> Summary {
        record::summary_of(stop, state.progress.epoch, (&self.config, self.config.threads), &self.history)
    }
}

fn check_shape(shape: Shape, state: &State) -> PyResult<()> {
    // a dense net reads flat vectors: only the length matters; conv blocks need the image shape
    if shape.len() != state.shape.len() || (state.model.net.has_blocks() && shape != state.shape) {
        return Err(PyValueError::new_err(format!(
            "x: samples of shape (C, H, W) = {:?}; the net was built for {:?}",
            [shape.c, shape.h, shape.w],
            [state.shape.c, state.shape.h, state.shape.w]
        )));
    }
    Ok(())
}

/// `(x_train, y_train, x_test, y_test)` of a named data set from the data folder (`data_dir`,
/// else `$DFA_DATA`, else `./data`): float32 inputs in `[0, 1]` (MNIST `N×784`, CIFAR
/// `N×3×32×32`), int64 labels.
#[pyfunction]
#[pyo3(signature = (name, data_dir=None))]
fn load_dataset<'py>(py: Python<'py>, name: &str, data_dir: Option<PathBuf>) -> PyResult<Bound<'py, PyAny>> {
    use dfa::base::choice::Choice;
    let kind = DatasetKind::from_name(name).filter(|k| k.is_named()).ok_or_else(|| {
        let names: Vec<&str> = DatasetKind::CHOICES.iter().filter(|c| c.value.is_named()).map(|c| c.name).collect();
        PyValueError::new_err(format!("name: '{name}' is not a data set; expected one of {}", names.join(", ")))
    })?;
    let dir = dfa::data::resolve_data_dir(data_dir.as_deref());
    let data = py.detach(|| dfa::data::load(kind, &dir)).map_err(err)?;
    let shape = data.shape;
    let arrays = PyList::empty(py);
    for split in [data.train, data.test] {
        let split = std::sync::Arc::try_unwrap(split).unwrap_or_else(|s| (*s).clone());
        let n = split.len();
        let x = PyArray1::from_vec(py, split.images);
        let x = if shape.h > 1 && shape.c > 1 {
            x.reshape([n, shape.c, shape.h, shape.w])?.into_any()
        } else {
            x.reshape([n, split.dim])?.into_any()
        };
        arrays.append(x)?;
        arrays.append(PyArray1::from_vec(py, split.labels.iter().map(|&l| l as i64).collect::<Vec<_>>()))?;
    }
    Ok(pyo3::types::PyTuple::new(py, arrays)?.into_any())
}

#[pymodule]
fn _dfa(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Net>()?;
    m.add_function(wrap_pyfunction!(load_dataset, m)?)?;
    m.add("__version__", VERSION)?;
    Ok(())
}
