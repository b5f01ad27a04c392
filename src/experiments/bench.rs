//! `dfa bench`: training throughput of named networks beside this machine's GEMM throughput.
//!
//! FLOPs per training sample (a multiply-add is 2 FLOPs; element-wise work and the optimiser are
//! not counted), for `sizes = [n_0, …, n_L]` and `P = Σ_i n_{i-1} n_i`:
//!
//! | part | FLOPs |
//! | --- | --- |
//! | forward | `2P` |
//! | weight gradients `δa_i h_{i-1}ᵀ` | `2P` |
//! | BP, FA: `W_{i+1}ᵀ δa_{i+1}` / `B_i δa_{i+1}` | `2 Σ_{i≥2} n_{i-1} n_i` |
//! | DFA: `B_i e` | `2 n_L Σ_hidden n_i` |
//! | IFA: `B_1 e`, then `W_i δa_{i-1}` | `2 n_L n_1 + 2 Σ_{i=2}^{L-1} n_{i-1} n_i` |
//!
//! (the same count as `../shared/tools/ref_bench.py`, so the GFLOP/s figures compare). For nets
//! with convolutional blocks ([`network_flops`]) a block's products count
//! `2·C_out·(kh·kw·C_in)·H_out·W_out` each (forward, weight gradient, and for BP/FA the signal
//! sent below it); pooling and im2col are not counted.

use crate::base::linalg::{gemm_nn, gemm_nt, gemm_tn};
use crate::base::rng::{DfaRng, Stream};
use crate::data::{Dataset, DatasetKind, Split};
use crate::layers::activation::Activation;
use crate::rules::Rule;
use crate::train::Trainer;
use crate::train::config::{ConvAlgo, TrainConfig};
use serde::Serialize;
use std::time::Instant;

/// A named network of the benchmark.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub model: String,
    pub inputs: usize,
    /// Training samples of one epoch of the data set this net is for.
    pub epoch_samples: usize,
    /// The data set whose images the net takes (the conv nets need the image shape).
    pub dataset: DatasetKind,
    /// Samples per measurement unless `--samples` says otherwise (an epoch for the dense nets).
    pub default_samples: usize,
}

pub fn cases() -> Vec<Case> {
    let mnist = |name, model: &str| Case {
        name,
        model: model.into(),
        inputs: 784,
        epoch_samples: 60_000,
        dataset: DatasetKind::Mnist,
        default_samples: 60_000,
    };
    let cifar = |name, model: &str, default_samples| Case {
        name,
        model: model.into(),
        inputs: 3072,
        epoch_samples: 50_000,
        dataset: DatasetKind::Cifar10,
        default_samples,
    };
    vec![
        mnist("2x800", "2x800"),
        mnist("7x240", "7x240"),
        mnist("100x240", "100x240"),
        cifar("3x1000-cifar", "3x1000", 50_000),
        cifar("conv-small-cifar", "conv-small", 4096),
        cifar("conv-tanh-cifar", "conv-tanh", 640),
    ]
}

/// The network of a case (the paper's initialisation for `rule`).
pub fn case_network(case: &Case, rule: Rule) -> crate::Result<crate::layers::Network> {
    let config = TrainConfig { rule, model: case.model.clone(), dataset: case.dataset, ..Default::default() };
    Ok(crate::train::Model::new(&config, image_shape(case.inputs), 10)?.net)
}

/// The images of `inputs` values that the benchmarks feed: MNIST's or CIFAR's, else flat.
fn image_shape(inputs: usize) -> crate::base::shape::Shape {
    [DatasetKind::Mnist, DatasetKind::Cifar10]
        .into_iter()
        .filter_map(DatasetKind::image_shape)
        .find(|s| s.len() == inputs)
        .unwrap_or(crate::base::shape::Shape::flat(inputs))
}

/// FLOPs per training sample of any network (dense layers and convolutional blocks; see the
/// module doc). Equals [`flops_per_sample`] on dense nets.
pub fn network_flops(net: &crate::layers::Network, rule: Rule) -> f64 {
    let work: Vec<usize> = net.layers.iter().map(|l| l.work()).collect();
    let widths: Vec<usize> = net.layers.iter().map(|l| l.fan_out).collect();
    (4 * work.iter().sum::<usize>() + 2 * rule.signal_macs(&work, &widths)) as f64
}

/// The GEMMs one training step of `net` runs (`M×K×N`): per layer the forward product and the
/// weight gradient (for a block: over all `batch·H_out·W_out` positions).
pub fn network_step_shapes(net: &crate::layers::Network, batch: usize) -> Vec<(Layout, usize, usize, usize)> {
    let mut v = Vec::new();
    for layer in &net.layers {
        let (rows, width, k) = layer.gemm_dims(batch);
        for shape in [(Layout::Nt, rows, k, width), (Layout::Tn, width, rows, k)] {
            if !v.contains(&shape) {
                v.push(shape);
            }
        }
    }
    v
}

/// FLOPs per training sample (see the module doc).
pub fn flops_per_sample(sizes: &[usize], rule: Rule) -> f64 {
    let work: Vec<usize> = sizes.windows(2).map(|w| w[0] * w[1]).collect();
    (4 * work.iter().sum::<usize>() + 2 * rule.signal_macs(&work, &sizes[1..])) as f64
}

/// Random MNIST-like inputs (80 % zeros, the rest uniform), random labels.
pub fn synthetic(samples: usize, inputs: usize, seed: u64) -> Dataset {
    let mut rng = DfaRng::new(seed, Stream::Shuffle);
    let images = (0..samples * inputs).map(|_| if rng.unit() < 0.8 { 0.0 } else { rng.unit() }).collect();
    let labels = (0..samples).map(|_| rng.below(10) as u8).collect();
    let train = Split { images, labels, dim: inputs };
    let test = Split { images: vec![0.0; inputs], labels: vec![0], dim: inputs };
    Dataset {
        kind: DatasetKind::Mnist,
        train: train.into(),
        test: test.into(),
        n_classes: 10,
        shape: image_shape(inputs),
        files: Vec::new(),
        notes: Vec::new(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainResult {
    pub case: String,
    pub rule: Rule,
    pub threads: usize,
    pub samples: usize,
    pub seconds: f64,
    pub samples_per_s: f64,
    pub flops_per_sample: f64,
    pub gflops: f64,
}

/// Trains `case` with `rule` on synthetic data for `samples` samples (mini-batch 64, RMSprop,
/// tanh, the paper's initialisation) after a short warm-up; reports the throughput.
pub fn train_throughput(
    case: &Case,
    rule: Rule,
    threads: usize,
    samples: usize,
    conv_algo: ConvAlgo,
) -> crate::Result<TrainResult> {
    let pool_samples = samples.clamp(64, 64 * 200);
    let data = synthetic(pool_samples, case.inputs, 1);
    let config = TrainConfig {
        rule,
        model: case.model.clone(),
        dataset: case.dataset,
        activation: Activation::Tanh,
        threads,
        conv_algo,
        ..Default::default()
    };
    let mut trainer = Trainer::new(config, &data)?;
    let batches: Vec<Vec<u32>> =
        (0..pool_samples / 64).map(|b| (b as u32 * 64..b as u32 * 64 + 64).collect()).collect();
    let steps = samples.div_ceil(64);
    let seconds = trainer.in_pool(|t| {
        t.train_batches(batches.iter().take(5).map(|b| b.as_slice()), &mut |_, _, _, _| true);
        let start = Instant::now();
        t.train_batches((0..steps).map(|s| batches[s % batches.len()].as_slice()), &mut |_, _, _, _| true);
        start.elapsed().as_secs_f64()
    });
    let done = steps * 64;
    let flops = network_flops(&trainer.model.net, rule);
    Ok(TrainResult {
        case: case.name.into(),
        rule,
        threads,
        samples: done,
        seconds,
        samples_per_s: done as f64 / seconds,
        flops_per_sample: flops,
        gflops: flops * done as f64 / seconds / 1e9,
    })
}

/// The operand layouts of the trainer's products (`C` is `m×n`, `k` the summed dimension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `C = A·B`, both row-major as written (BP's `D W`; the square reference).
    Nn,
    /// `C = A·Bᵀ`, `B` stored `n×k`: the forward `H Wᵀ`, DFA's `E Bᵀ`.
    Nt,
    /// `C = Aᵀ·B`, `A` stored `k×m`: the weight gradient `Dᵀ H`.
    Tn,
}

/// The GEMMs one training step of a net with `sizes` runs, in `M×K×N` (gemm_peak.py's
/// convention): per layer the forward product and the weight gradient.
pub fn step_shapes(sizes: &[usize], batch: usize) -> Vec<(Layout, usize, usize, usize)> {
    let mut v = Vec::new();
    for w in sizes.windows(2) {
        for shape in [(Layout::Nt, batch, w[0], w[1]), (Layout::Tn, w[1], batch, w[0])] {
            if !v.contains(&shape) {
                v.push(shape);
            }
        }
    }
    v
}

#[derive(Clone, Debug, Serialize)]
pub struct GemmResult {
    pub layout: Layout,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub threads: usize,
    pub gflops: f64,
}

/// GFLOP/s of the trainer's GEMM (faer, split over threads as in training), median of 9 timed
/// samples of at least 20 ms each.
pub fn gemm_throughput(layout: Layout, m: usize, k: usize, n: usize, threads: usize) -> GemmResult {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    let mut rng = DfaRng::new(2, Stream::Weights);
    let a: Vec<f32> = (0..m * k).map(|_| rng.symmetric(1.0)).collect();
    let b: Vec<f32> = (0..n * k).map(|_| rng.symmetric(1.0)).collect();
    let mut c = vec![0.0f32; m * n];
    let mut run = || match layout {
        Layout::Nn => gemm_nn(&mut c, &a, &b, (m, k, n), false, threads),
        Layout::Nt => gemm_nt(&mut c, &a, &b, (m, k, n), false, threads),
        Layout::Tn => gemm_tn(&mut c, &a, &b, (m, k, n), false, threads),
    };
    pool.broadcast(|_| crate::base::linalg::warm_up_thread());
    // measured as the trainer runs its products: the other workers polling for the halves
    let gflops = pool.install(|| {
        crate::train::parallel::pool::keep_workers_awake(|| {
            let mut reps = 1;
            loop {
                let t = Instant::now();
                for _ in 0..reps {
                    run();
                }
                if t.elapsed().as_secs_f64() > 0.02 {
                    break;
                }
                reps *= 2;
            }
            let mut samples: Vec<f64> = (0..9)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..reps {
                        run();
                    }
                    2.0 * (m * k * n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9
                })
                .collect();
            samples.sort_by(f64::total_cmp);
            samples[4]
        })
    });
    GemmResult { layout, m, k, n, threads, gflops }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2x800 on MNIST, counted by hand: P = 784·800 + 800·800 + 800·10 = 1 275 200.
    #[test]
    fn flop_counts_of_the_2x800_net() {
        let sizes = [784, 800, 800, 10];
        assert_eq!(flops_per_sample(&sizes, Rule::DFA), (4 * 1_275_200 + 2 * 10 * 1600) as f64);
        assert_eq!(flops_per_sample(&sizes, Rule::BP), (4 * 1_275_200 + 2 * (640_000 + 8000)) as f64);
        assert_eq!(flops_per_sample(&sizes, Rule::FA), flops_per_sample(&sizes, Rule::BP));
        assert_eq!(flops_per_sample(&sizes, Rule::IFA), (4 * 1_275_200 + 2 * 10 * 800 + 2 * 640_000) as f64);
    }

    #[test]
    fn network_counts_equal_the_dense_formula_and_count_blocks() {
        let case = |model: &str| Case {
            name: "x",
            model: model.into(),
            inputs: 784,
            epoch_samples: 1,
            dataset: DatasetKind::Mnist,
            default_samples: 1,
        };
        for rule in [Rule::BP, Rule::FA, Rule::DFA, Rule::IFA] {
            let net = case_network(&case("2x800"), rule).unwrap();
            assert_eq!(network_flops(&net, rule), flops_per_sample(&[784, 800, 800, 10], rule));
            assert_eq!(network_step_shapes(&net, 64), step_shapes(&[784, 800, 800, 10], 64));
        }
        // one block: 28×28×1 → c4k3p1 → 28×28×4 (work 4·9·784), pool 3/2 → 13×13×4 = 676, then 10
        let net = case_network(&case("c4k3p1,p3s2"), Rule::DFA).unwrap();
        let (conv, dense) = (4 * 9 * 784, 676 * 10);
        assert_eq!(network_flops(&net, Rule::DFA), (4 * (conv + dense) + 2 * 10 * 676) as f64);
        assert_eq!(network_flops(&net, Rule::BP), (4 * (conv + dense) + 2 * dense) as f64);
    }

    #[test]
    fn step_shapes_are_forward_and_weight_gradient_per_layer() {
        let s = step_shapes(&[784, 800, 10], 64);
        assert_eq!(
            s,
            vec![
                (Layout::Nt, 64, 784, 800),
                (Layout::Tn, 800, 64, 784),
                (Layout::Nt, 64, 800, 10),
                (Layout::Tn, 10, 64, 800)
            ]
        );
    }
}

/// What `dfa bench` measures: named cases under rules, on thread counts.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Names from [`cases`].
    pub cases: Vec<String>,
    pub rules: Vec<Rule>,
    pub threads: Vec<usize>,
    /// Samples per training measurement (default: each case's own).
    pub samples: Option<usize>,
    /// Only the GEMMs.
    pub gemm_only: bool,
    /// How the conv nets' convolutions are computed.
    pub conv_algo: ConvAlgo,
}

/// The GEMMs and the training throughputs of one benchmark, with the peak GEMM rate per thread
/// count that the training rates are compared with.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub threads: Vec<usize>,
    pub shapes: Vec<(Layout, usize, usize, usize)>,
    pub gemm: Vec<GemmResult>,
    pub train: Vec<TrainResult>,
}

impl BenchOptions {
    /// The cases named, in order.
    pub fn selected_cases(&self) -> crate::Result<Vec<Case>> {
        self.cases
            .iter()
            .map(|name| {
                cases().into_iter().find(|c| c.name == name).ok_or_else(|| {
                    let known: Vec<&str> = cases().iter().map(|c| c.name).collect();
                    crate::Error::Usage(format!("--cases: unknown case '{name}', expected one of {}", known.join(", ")))
                })
            })
            .collect()
    }

    /// Measurements the benchmark will make (for a progress bar).
    pub fn measurements(&self) -> crate::Result<usize> {
        let rules = if self.gemm_only { 0 } else { self.rules.len() };
        Ok(self.threads.len() * (self.shapes()?.len() + self.selected_cases()?.len() * rules))
    }

    /// The GEMMs of the cases' training steps (batch 64), and the square 1024³ for reference.
    pub fn shapes(&self) -> crate::Result<Vec<(Layout, usize, usize, usize)>> {
        let mut shapes = vec![(Layout::Nn, 1024, 1024, 1024)];
        for c in &self.selected_cases()? {
            for shape in network_step_shapes(&case_network(c, Rule::BP)?, 64) {
                if !shapes.contains(&shape) {
                    shapes.push(shape);
                }
            }
        }
        Ok(shapes)
    }
}

/// Runs the benchmark; `progress(what)` is called before each measurement.
pub fn run_bench(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> crate::Result<BenchReport> {
    let cases = options.selected_cases()?;
    if let Some(&t) = options.threads.iter().find(|&&t| t == 0 || t > 1024) {
        return Err(crate::Error::Usage(format!("--threads: {t} is not a thread count from 1 to 1024")));
    }
    let shapes = options.shapes()?;
    let rules = if options.gemm_only { Vec::new() } else { options.rules.clone() };
    let (mut gemm, mut train) = (Vec::new(), Vec::new());
    for &threads in &options.threads {
        for &(layout, m, k, n) in &shapes {
            progress(&format!("GEMM {m}x{k}x{n}, {threads} threads"));
            gemm.push(gemm_throughput(layout, m, k, n, threads));
        }
        for case in &cases {
            for &rule in &rules {
                progress(&format!("{} {}, {threads} threads", case.name, rule.name()));
                let samples = options.samples.unwrap_or(case.default_samples);
                train.push(train_throughput(case, rule, threads, samples, options.conv_algo)?);
            }
        }
    }
    Ok(BenchReport { threads: options.threads.clone(), shapes, gemm, train })
}

impl BenchReport {
    /// The best GEMM rate (GFLOP/s) measured on `threads` threads.
    pub fn peak(&self, threads: usize) -> f64 {
        self.gemm.iter().filter(|g| g.threads == threads).map(|g| g.gflops).fold(0.0, f64::max)
    }

    /// The GEMM table, then (when measured) the training table, as `dfa bench` prints them.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let threads = &self.threads;
        let _ = writeln!(
            s,
            "GEMM (faer, split over threads as in training), GFLOP/s; M×K×N as C (M×N) = A (M×K) · B (K×N):"
        );
        let head: String = threads.iter().map(|t| format!("{:>10}", format!("{t} thr"))).collect();
        let _ = writeln!(s, "{:>16} {:>6} {head}", "M×K×N", "layout");
        for &(layout, m, k, n) in &self.shapes {
            let row: String = threads
                .iter()
                .map(|&t| {
                    let g = self.gemm.iter().find(|g| g.threads == t && (g.layout, g.m, g.k, g.n) == (layout, m, k, n));
                    format!("{:>10.1}", g.map_or(0.0, |g| g.gflops))
                })
                .collect();
            let name = match layout {
                Layout::Nn => "A·B",
                Layout::Nt => "A·Bᵀ",
                Layout::Tn => "Aᵀ·B",
            };
            let _ = writeln!(s, "{:>16} {name:>6} {row}", format!("{m}x{k}x{n}"));
        }
        if self.train.is_empty() {
            return s;
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Training (batch 64, tanh, RMSprop; FLOPs as in src/experiments/bench.rs), peak = best GEMM above at that thread count:"
        );
        let _ = writeln!(
            s,
            "{:<14} {:<9} {:>7} {:>12} {:>9} {:>8}",
            "net", "rule", "threads", "samples/s", "GFLOP/s", "of peak"
        );
        for r in &self.train {
            let _ = writeln!(
                s,
                "{:<14} {:<9} {:>7} {:>12.0} {:>9.1} {:>7.0}%",
                r.case,
                r.rule.name(),
                r.threads,
                r.samples_per_s,
                r.gflops,
                100.0 * r.gflops / self.peak(r.threads)
            );
        }
        s
    }

    /// The report as JSON (with the version, commit and CPU), written atomically to `path`.
    pub fn write_json(&self, path: &std::path::Path) -> crate::Result<()> {
        use crate::train::record::{GIT_COMMIT, VERSION};
        let peaks: Vec<(usize, f64)> = self.threads.iter().map(|&t| (t, self.peak(t))).collect();
        let report = serde_json::json!({
            "dfa_version": VERSION,
            "git_commit": GIT_COMMIT,
            "cpu": cpu_name(),
            "gemm": self.gemm,
            "gemm_peak": peaks,
            "train": self.train,
        });
        let text = serde_json::to_string_pretty(&report).map_err(|e| crate::Error::format(path, e.to_string()))?;
        crate::base::io::write_atomically(path, text.as_bytes())
    }
}

/// The CPU's model name (Linux), for benchmark records.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
