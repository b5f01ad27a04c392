//! `--shard i/n`: a deterministic share of an experiment's runs, so that `n` processes (the
//! tasks of a Slurm job array, a `for` loop, GNU parallel) together run every run exactly once.
//!
//! The unit handed out is a *group*: a (cell, seed) run together with the runs that continue it
//! or follow its schedule (cells with `after` or `schedule_of`, same seed), which must run in
//! order on one shard. Each group's expected
//! cost is its runs' training multiply-adds: three passes (forward, the rule's signal, the
//! gradients) of the net's forward multiply-adds per sample × the training samples × the
//! expected epochs (a cell's `expected_epochs`, else the experiment's, else its `max_epochs`).
//! Groups go largest first to the shard with the least cost so far (ties: the lower shard, then
//! the earlier group in the file), the longest-processing-time rule: no shard gets more than 4/3
//! of the best possible maximum. The partition depends only on the experiment file, the selected
//! cells and the seeds, so every shard computes the same one; a run's folder is the same
//! whichever shard trains it, so the shards' run folders together are the unsharded ones.

use crate::base::error::{Error, Result};
use crate::experiments::{Experiment, Task};
use crate::layers::conv::out_size;
use crate::layers::spec::{LayerSpec, parse_layers};
use crate::train::config::TrainConfig;

/// Shard `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}'; expected i/n with 1 ≤ i ≤ n, e.g. 3/16");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Forward multiply-adds per sample of the net of `config` (dense layers and convolutions; the
/// output layer included). Own data (`--data`) are costed as MNIST-sized images with 10 classes:
/// the cost model reads no data.
pub fn forward_macs(config: &TrainConfig) -> Result<u64> {
    let shape = config.dataset.image_shape().unwrap_or(crate::base::shape::Shape { h: 28, w: 28, c: 1 });
    let specs = parse_layers(&config.model)?;
    let (mut c, mut h, mut w) = (shape.c, shape.h, shape.w);
    let mut width: Option<usize> = None;
    let mut macs = 0u64;
    for spec in specs {
        match spec {
            LayerSpec::Conv { filters, size, stride, pad } => {
                let (oh, ow) =
                    (out_size(h, size, stride, pad).unwrap_or(0), out_size(w, size, stride, pad).unwrap_or(0));
                macs += (filters * size * size * c * oh * ow) as u64;
                (c, h, w) = (filters, oh, ow);
            }
            LayerSpec::Pool { size, stride } => {
                (h, w) = (out_size(h, size, stride, 0).unwrap_or(0), out_size(w, size, stride, 0).unwrap_or(0));
            }
            LayerSpec::Dense(n) => {
                macs += (width.unwrap_or(c * h * w) * n) as u64;
                width = Some(n);
            }
        }
    }
    Ok(macs + (width.unwrap_or(c * h * w) * config.dataset.n_classes().unwrap_or(10)) as u64)
}

/// The training samples of a run of `config`.
fn training_samples(config: &TrainConfig) -> u64 {
    let full: usize = if config.dataset.is_cifar() { 50_000 } else { 60_000 };
    (config.train_subset.map_or(full, |n| n.min(full)).saturating_sub(config.validation)) as u64
}

/// The epochs a run of `task` is expected to train: its cell's `expected_epochs`, else the
/// experiment's, else its `max_epochs` (never more than that).
pub fn expected_epochs(exp: &Experiment, task: &Task) -> usize {
    let cell = exp.cells.iter().find(|c| c.id == task.cell).expect("a task of the experiment");
    cell.expected_epochs.or(exp.expected_epochs).unwrap_or(task.config.max_epochs).min(task.config.max_epochs)
}

/// The training multiply-adds of one epoch of a run of `config`: three passes of the forward
/// multiply-adds per sample over the training samples.
pub fn epoch_cost(config: &TrainConfig) -> Result<u64> {
    Ok(3 * forward_macs(config)? * training_samples(config))
}

/// The expected cost of a run of `cell` (see the module's note).
pub fn run_cost(exp: &Experiment, task: &Task) -> Result<u64> {
    Ok(epoch_cost(&task.config)? * expected_epochs(exp, task) as u64)
}

/// The root of the chain of `after`s (and `schedule_of`s) a cell is in.
fn root<'a>(exp: &'a Experiment, id: &'a str) -> &'a str {
    match exp.cells.iter().find(|c| c.id == id).and_then(|c| c.source()) {
        Some(source) => root(exp, source),
        None => id,
    }
}

/// A group of runs: the root cell of its chain of `after`s, and the seed.
pub type Group = (String, u64);

/// The partition of an experiment's runs over the shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Every group with its shard (1-based), largest group first.
    pub groups: Vec<(Group, usize)>,
    /// Each shard's expected cost.
    pub loads: Vec<u64>,
}

/// The shard of every group and each shard's cost; `stages` are the selected runs as
/// [`Experiment::tasks`] gives them.
pub fn assign(exp: &Experiment, stages: &[Vec<Task>], count: usize) -> Result<Assignment> {
    // the groups, in file order, with their summed cost
    let mut groups: Vec<(Group, u64)> = Vec::new();
    for task in stages.iter().flatten() {
        let key = (root(exp, &task.cell).to_string(), task.seed);
        let cost = run_cost(exp, task)?;
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += cost,
            None => groups.push((key, cost)),
        }
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    // largest first; a stable sort keeps the file order among equals
    order.sort_by(|&a, &b| groups[b].1.cmp(&groups[a].1));
    let mut loads = vec![0u64; count];
    let mut assigned = Vec::with_capacity(groups.len());
    for g in order {
        let least = (0..count).min_by_key(|&s| (loads[s], s)).expect("at least one shard");
        loads[least] += groups[g].1;
        assigned.push((groups[g].0.clone(), least + 1));
    }
    Ok(Assignment { groups: assigned, loads })
}

/// The runs of `stages` that shard `shard` trains, stage by stage.
pub fn select(exp: &Experiment, stages: Vec<Vec<Task>>, shard: Shard) -> Result<Vec<Vec<Task>>> {
    if shard.count == 0 {
        return Err(Error::config("--shard", "0 shards; expected i/n with n ≥ 1"));
    }
    let assigned = assign(exp, &stages, shard.count)?.groups;
    let mine = |t: &Task| {
        let key = (root(exp, &t.cell).to_string(), t.seed);
        assigned.iter().any(|(k, s)| *k == key && *s == shard.index)
    };
    Ok(stages
        .into_iter()
        .map(|s| s.into_iter().filter(|t| mine(t)).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse_and_refuse() {
        assert_eq!("3/16".parse::<Shard>(), Ok(Shard { index: 3, count: 16 }));
        for bad in ["0/4", "5/4", "3", "a/b", "1/0", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forward_macs_count_dense_and_conv_layers() {
        let dense = TrainConfig { model: "2x800".into(), ..Default::default() };
        assert_eq!(forward_macs(&dense).unwrap(), (784 * 800 + 800 * 800 + 800 * 10) as u64);
        let conv = TrainConfig {
            model: "c16k5p2,p3s2,128".into(),
            dataset: crate::data::DatasetKind::Cifar10,
            ..Default::default()
        };
        // 32×32×3 → 16 maps of 32×32 (5×5×3 each) → pool 3, stride 2 → 15×15 → 128 → 10
        assert_eq!(forward_macs(&conv).unwrap(), (16 * 75 * 1024 + 16 * 225 * 128 + 128 * 10) as u64);
    }
}
