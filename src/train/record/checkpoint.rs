//! The checkpoint: every tensor of a model (safetensors, loadable from PyTorch) with the
//! progress and configuration in its metadata.

use crate::base::error::{Error, Result};
use crate::base::io::{f32_bytes, write_atomically};
use crate::layers::Gradients;
use crate::optim::OptimiserKind;
use crate::train::config::TrainConfig;
use crate::train::model::Model;
use crate::train::protocol::{Progress, Trainer};
use crate::train::record::run_dir::{CHECKPOINT_FILE, GIT_COMMIT, RunDir, VERSION};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::path::Path;

const CHECKPOINT_FORMAT: &str = "dfa-checkpoint/1";

/// A layer's weight tensor shape: `[out, in]` (as `torch.nn.Linear`), or for a convolutional
/// block `[C_out, kh, kw, C_in]` (PyTorch's `Conv2d` layout is its `permute(0, 3, 1, 2)`).
pub fn weight_shape(layer: &crate::layers::Dense) -> Vec<usize> {
    match &layer.block {
        Some(b) => vec![b.conv.out_channels, b.conv.kh, b.conv.kw, b.conv.input.c],
        None => vec![layer.fan_out, layer.fan_in],
    }
}

/// The tensors of a checkpoint: name, shape, values.
fn tensors(model: &Model) -> Vec<(String, Vec<usize>, &[f32])> {
    let mut t: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for (l, layer) in model.net.layers.iter().enumerate() {
        t.push((format!("layers.{l}.weight"), weight_shape(layer), &layer.weight));
        t.push((format!("layers.{l}.bias"), vec![layer.bias.len()], &layer.bias));
    }
    for (k, b) in model.feedback.matrices.iter().enumerate() {
        // a sparse matrix: its rows × k non-zeros (their columns in `feedback.{k}.columns`)
        t.push((format!("feedback.{k}"), vec![b.rows, b.per_row()], &b.values));
    }
    // SGD keeps no state: its empty buffers are not written
    let rmsprop = model.optimiser.kind == OptimiserKind::Rmsprop;
    for (l, (ms, layer)) in model.optimiser.mean_square.iter().zip(&model.net.layers).enumerate().filter(|_| rmsprop) {
        t.push((format!("optimiser.layers.{l}.weight.mean_square"), weight_shape(layer), &ms.weight));
        t.push((format!("optimiser.layers.{l}.bias.mean_square"), vec![layer.bias.len()], &ms.bias));
    }
    // the states of feedback matrices that learn (Kolen–Pollack under RMSprop)
    for (k, ms) in model.optimiser.feedback_mean_square.iter().enumerate().filter(|(_, ms)| !ms.is_empty()) {
        let b = &model.feedback.matrices[k];
        t.push((format!("optimiser.feedback.{k}.mean_square"), vec![b.rows, b.cols], ms));
    }
    t
}

pub fn checkpoint_bytes(model: &Model, progress: &Progress, config: &TrainConfig) -> Result<Vec<u8>> {
    let list = tensors(model);
    let mut data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
        list.into_iter().map(|(name, shape, v)| (name, Dtype::F32, shape, f32_bytes(v))).collect();
    for (k, b) in model.feedback.matrices.iter().enumerate().filter(|(_, b)| b.is_sparse()) {
        let bytes = b.columns.iter().flat_map(|c| c.to_le_bytes()).collect();
        data.push((format!("feedback.{k}.columns"), Dtype::U32, vec![b.rows, b.per_row()], bytes));
    }
    let views = data
        .iter()
        .map(|(name, dtype, shape, bytes)| TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::checkpoint("(memory)", e.to_string()))?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
    meta.insert("dfa_version".to_string(), VERSION.to_string());
    meta.insert("git_commit".to_string(), GIT_COMMIT.to_string());
    meta.insert("progress".to_string(), serde_json::to_string(progress).expect("progress serialises"));
    meta.insert("config".to_string(), config.to_toml());
    meta.insert(
        "feedback_layers".to_string(),
        serde_json::to_string(&model.feedback.layer_matrix).expect("serialises"),
    );
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::checkpoint("(memory)", e.to_string()))
}

pub fn load_checkpoint_bytes(
    bytes: &[u8],
    path: &Path,
    config: &TrainConfig,
    input: crate::base::shape::Shape,
    n_out: usize,
) -> Result<(Model, Progress)> {
    let bad = |m: String| Error::checkpoint(path, m);
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(bad(format!("metadata 'format' is not {CHECKPOINT_FORMAT}")));
    }
    let progress: Progress =
        serde_json::from_str(meta.get("progress").ok_or_else(|| bad("no 'progress' metadata".into()))?)
            .map_err(|e| bad(format!("metadata 'progress': {e}")))?;
    let mut model = Model::new(config, input, n_out)?;
    let fill = |name: &str, shape: &[usize], out: &mut [f32]| -> Result<()> {
        let t = st.tensor(name).map_err(|_| bad(format!("tensor '{name}' is missing")))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(bad(format!("tensor '{name}' is {:?} {:?}, expected F32 {shape:?}", t.dtype(), t.shape())));
        }
        for (o, c) in out.iter_mut().zip(t.data().chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    };
    for (l, layer) in model.net.layers.iter_mut().enumerate() {
        let shape = weight_shape(layer);
        fill(&format!("layers.{l}.weight"), &shape, &mut layer.weight)?;
        fill(&format!("layers.{l}.bias"), &[layer.bias.len()], &mut layer.bias)?;
    }
    for (k, b) in model.feedback.matrices.iter_mut().enumerate() {
        let shape = [b.rows, b.per_row()];
        fill(&format!("feedback.{k}"), &shape, &mut b.values)?;
        if b.is_sparse() {
            let name = format!("feedback.{k}.columns");
            let t = st.tensor(&name).map_err(|_| bad(format!("tensor '{name}' is missing")))?;
            if t.dtype() != Dtype::U32 || t.shape() != shape {
                return Err(bad(format!("tensor '{name}' is {:?} {:?}, expected U32 {shape:?}", t.dtype(), t.shape())));
            }
            for (o, c) in b.columns.iter_mut().zip(t.data().chunks_exact(4)) {
                *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            if let Some(&c) = b.columns.iter().find(|&&c| c as usize >= b.cols) {
                return Err(bad(format!("tensor '{name}' holds column {c}, expected < {}", b.cols)));
            }
        }
    }
    let layers = model.net.layers.iter().map(|l| (weight_shape(l), l.bias.len()));
    let rmsprop = model.optimiser.kind == OptimiserKind::Rmsprop;
    for (l, (Gradients { weight, bias }, (shape, n_bias))) in
        model.optimiser.mean_square.iter_mut().zip(layers).enumerate().filter(|_| rmsprop)
    {
        fill(&format!("optimiser.layers.{l}.weight.mean_square"), &shape, weight)?;
        fill(&format!("optimiser.layers.{l}.bias.mean_square"), &[n_bias], bias)?;
    }
    for (k, ms) in model.optimiser.feedback_mean_square.iter_mut().enumerate().filter(|(_, ms)| !ms.is_empty()) {
        let b = &model.feedback.matrices[k];
        fill(&format!("optimiser.feedback.{k}.mean_square"), &[b.rows, b.cols], ms)?;
    }
    model.feedback.restack();
    Ok((model, progress))
}

/// Copies the forward weights, biases and optimiser state of the checkpoint in run folder
/// `source` into `model` (a run that continues another: `init_from`). The shapes must match;
/// the feedback stays `model`'s own. Returns the source's completed epochs.
pub fn continue_from(
    source: &Path,
    model: &mut Model,
    input: crate::base::shape::Shape,
    n_out: usize,
) -> Result<usize> {
    let named = |e: Error| Error::config("init_from", format!("{}: {e}", source.display()));
    let dir = RunDir::open(source).map_err(named)?;
    if !dir.file(CHECKPOINT_FILE).is_file() {
        return Err(Error::config("init_from", format!("{}: no {CHECKPOINT_FILE} to start from", source.display())));
    }
    let (from, progress) = dir.load_checkpoint(&dir.read_config().map_err(named)?, input, n_out).map_err(named)?;
    let shapes = |m: &Model| m.net.layers.iter().map(|l| (l.fan_in, l.fan_out)).collect::<Vec<_>>();
    if shapes(&from) != shapes(model) {
        return Err(Error::config(
            "init_from",
            format!(
                "{} holds layers (in, out) {:?}, this run's are {:?}",
                source.display(),
                shapes(&from),
                shapes(model)
            ),
        ));
    }
    for (to, from) in model.net.layers.iter_mut().zip(from.net.layers) {
        to.weight = from.weight;
        to.bias = from.bias;
    }
    if from.optimiser.kind == model.optimiser.kind {
        model.optimiser.mean_square = from.optimiser.mean_square;
    }
    Ok(progress.epoch)
}

impl RunDir {
    /// Saves the model, the feedback, the optimiser state and the progress (RNG included).
    pub fn save_checkpoint(&self, trainer: &Trainer) -> Result<()> {
        let bytes = checkpoint_bytes(&trainer.model, &trainer.progress, &trainer.config)?;
        write_atomically(&self.file(CHECKPOINT_FILE), &bytes)
    }

    /// The configuration recorded in the checkpoint's metadata (none in a checkpoint without one).
    pub fn checkpoint_config(&self) -> Result<Option<TrainConfig>> {
        let path = self.file(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::checkpoint(&path, format!("not a safetensors file: {e}")))?;
        match header.metadata().as_ref().and_then(|m| m.get("config")) {
            Some(text) => Ok(Some(TrainConfig::from_toml(text, &format!("{} (metadata 'config')", path.display()))?)),
            None => Ok(None),
        }
    }

    /// Loads a checkpoint into a model built for `config` (shapes are checked).
    pub fn load_checkpoint(
        &self,
        config: &TrainConfig,
        input: crate::base::shape::Shape,
        n_out: usize,
    ) -> Result<(Model, Progress)> {
        let path = self.file(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        load_checkpoint_bytes(&bytes, &path, config, input, n_out)
    }
}
