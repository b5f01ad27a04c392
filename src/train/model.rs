//! The model of a run: what learns or stays fixed, drawn from the configuration's seed.

use crate::base::error::{Error, Result};
use crate::base::memory::check_fits;
use crate::base::rng::{DfaRng, Stream};
use crate::base::shape::Shape;
use crate::layers::Network;
use crate::layers::spec::{LayerSpec, parse_layers, parse_model};
use crate::layers::winograd::Winograd;
use crate::optim::Optimiser;
use crate::rules::{Feedback, RuleSet};
use crate::train::config::{TrainConfig, resolve_threads};
use crate::train::parallel::Learner;

/// The memory a dense net of layer widths `sizes` needs to train, as an upper estimate: its
/// parameters five times over (weights; optimiser state; the gradients of the training and of
/// the evaluation workspace; feedback matrices, at most as large as the weights) and, for the
/// rows of a training batch and of an evaluation chunk, activations, derivatives, directions and
/// masks.
pub fn dense_bytes(sizes: &[usize], config: &TrainConfig) -> u64 {
    let sizes: Vec<u64> = sizes.iter().map(|&n| n as u64).collect();
    let parameters: u64 = sizes.windows(2).map(|w| (w[0] + 1).saturating_mul(w[1])).fold(0, u64::saturating_add);
    let units: u64 = sizes.iter().sum();
    parameters.saturating_mul(5).saturating_add(units.saturating_mul(rows(config)).saturating_mul(4)).saturating_mul(4)
}

/// The rows a run's buffers hold: a training batch and an evaluation chunk.
fn rows(config: &TrainConfig) -> u64 {
    (config.batch_size.max(1) + EVAL_ROWS) as u64
}

/// The same estimate for a net with convolutional blocks (`specs`, on `input` images): each
/// block's kernels five times over; per row, the buffers of its convolution — im2col: the
/// patches twice (forward, and the signal sent below); Winograd: four transformed batches (`V`
/// kept, `M`, and two in the signal sent below) — its activations and directions before pooling
/// and three buffers of its pooled output; for Winograd also its transformed kernels twice and
/// each thread's weight-gradient scratch; the dense layers above as [`dense_bytes`] counts them.
pub fn conv_bytes(input: crate::base::shape::Shape, specs: &[LayerSpec], n_out: usize, config: &TrainConfig) -> u64 {
    use crate::layers::conv::{Conv2d, out_size};
    let threads = resolve_threads(config.threads) as u64;
    let (mut shape, mut parameters, mut per_sample, mut fixed) = ((input.c, input.h, input.w), 0u64, 0u64, 0u64);
    let mut widths = vec![];
    for (i, spec) in specs.iter().enumerate() {
        match *spec {
            LayerSpec::Conv { filters, size, stride, pad } => {
                let (c, h, w) = shape;
                let (oh, ow) =
                    (out_size(h, size, stride, pad).unwrap_or(0), out_size(w, size, stride, pad).unwrap_or(0));
                let k = (size * size * c) as u64;
                parameters = parameters.saturating_add((k + 1).saturating_mul(filters as u64));
                let positions = (oh * ow) as u64;
                let conv = Conv2d {
                    input: Shape { h, w, c },
                    out_channels: filters,
                    kh: size,
                    kw: size,
                    stride,
                    pad,
                    chw_input: false,
                };
                let products = match config.conv_algo.tile_for(&conv).filter(|_| oh > 0 && ow > 0) {
                    Some(m) => {
                        let wg = Winograd { m, r: size };
                        let tiles = wg.tile_len(&conv, config.batch_size) + wg.hat_len(&conv);
                        fixed = fixed
                            .saturating_add(2 * wg.kernel_len(&conv) as u64)
                            .saturating_add((tiles as u64).saturating_mul(threads));
                        4 * wg.tile_len(&conv, 1) as u64
                    }
                    None => positions.saturating_mul(k).saturating_mul(2),
                };
                per_sample = per_sample
                    .saturating_add(products)
                    .saturating_add(positions.saturating_mul(filters as u64).saturating_mul(2));
                shape = (filters, oh, ow);
                if let Some(&LayerSpec::Pool { size, stride }) = specs.get(i + 1) {
                    shape = (
                        filters,
                        out_size(oh, size, stride, 0).unwrap_or(0),
                        out_size(ow, size, stride, 0).unwrap_or(0),
                    );
                }
                per_sample = per_sample.saturating_add(3 * (shape.0 * shape.1 * shape.2) as u64);
            }
            LayerSpec::Pool { .. } => {}
            LayerSpec::Dense(width) => widths.push(width),
        }
    }
    let mut sizes = vec![shape.0 * shape.1 * shape.2];
    sizes.extend(widths);
    sizes.push(n_out);
    parameters
        .saturating_mul(5)
        .saturating_add(per_sample.saturating_mul(rows(config)))
        .saturating_add(fixed)
        .saturating_mul(4)
        .saturating_add(dense_bytes(&sizes, config))
}

/// Samples per chunk in the evaluation passes (larger products run closer to the GEMM peak); the
/// evaluation workspace holds this many rows.
pub const EVAL_ROWS: usize = 500;

/// Everything that learns or stays fixed: forward weights, feedback, optimiser state.
#[derive(Clone, Debug)]
pub struct Model {
    pub net: Network,
    pub feedback: Feedback,
    pub optimiser: Optimiser,
}

impl Model {
    /// A fresh model for `config` with inputs of shape `input` (a flat vector, [`Shape::flat`],
    /// serves a dense net) and `n_out` classes, drawn from the seed.
    pub fn new(config: &TrainConfig, input: Shape, n_out: usize) -> Result<Self> {
        let n_in = input.len();
        let mut weights_rng = DfaRng::new(config.seed, Stream::Weights);
        let mut feedback_rng = DfaRng::new(config.seed, Stream::Feedback);
        let optimiser = |net: &Network, feedback: &Feedback| {
            Optimiser::new(config.optimiser, config.rms_decay, config.rms_epsilon, net)
                .with_weight_decay(config.resolved_weight_decay())
                .with_feedback_states(&config.rule_set().learning_feedback(feedback))
        };
        if config.is_conv() {
            let shape = input;
            if shape.h < 2 || shape.w < 2 {
                return Err(Error::config(
                    "model",
                    format!(
                        "a convolutional net needs images (C×H×W), the data are flat vectors of {n_in} values; \
                         give the inputs as N×H×W or N×C×H×W arrays"
                    ),
                ));
            }
            let specs = parse_layers(&config.model)?;
            check_fits(conv_bytes(shape, &specs, n_out, config), "model", &format!("the net {}", config.model))?;
            let uniform = config.uniform_init();
            let mut net =
                Network::from_specs(shape, &specs, n_out, config.activation, uniform, config.bias, &mut weights_rng);
            for layer in &mut net.layers {
                if let Some(block) = &mut layer.block {
                    block.fast = config.conv_algo.tile_for(&block.conv).map(|m| Winograd { m, r: block.conv.kh });
                }
            }
            for &k in &config.freeze {
                net.layers[k - 1].frozen = true;
            }
            let feedback =
                Feedback::for_network(&config.hidden_rules(), &net, config.feedback_options(), &mut feedback_rng);
            let optimiser = optimiser(&net, &feedback);
            let mut model = Model { net, feedback, optimiser };
            // the construction's refresh continues the feedback stream
            config.rule_set().refresh_feedback(&model.net, &mut model.feedback, &mut feedback_rng);
            return Ok(model);
        }
        let mut sizes = vec![n_in];
        sizes.extend(parse_model(&config.model)?);
        sizes.push(n_out);
        check_fits(dense_bytes(&sizes, config), "model", &format!("the net {}", config.model))?;
        let mut net = Network::new(&sizes, config.activation, config.uniform_init(), config.bias, &mut weights_rng);
        for &k in &config.freeze {
            net.layers[k - 1].frozen = true;
        }
        let (share, bound) = (config.shared_feedback, config.feedback_options());
        let feedback = if config.layer_rules.is_empty() {
            Feedback::new(config.rule, &sizes, share, bound, &mut feedback_rng)
        } else {
            Feedback::per_layer(&config.layer_rules, &sizes, share, bound, &mut feedback_rng)
        };
        let optimiser = optimiser(&net, &feedback);
        let mut model = Model { net, feedback, optimiser };
        // the construction's refresh continues the feedback stream
        config.rule_set().refresh_feedback(&model.net, &mut model.feedback, &mut feedback_rng);
        Ok(model)
    }

    /// The model as the engine updates it: under `rules`, at `learning_rate`.
    pub fn learner<'a>(&'a mut self, rules: &'a RuleSet, learning_rate: f32) -> Learner<'a> {
        Learner { net: &mut self.net, optimiser: &mut self.optimiser, feedback: &self.feedback, rules, learning_rate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Workspace;
    use crate::train::config::ConvAlgo;

    /// The estimate covers the buffers the blocks really get, on either algorithm: a 32 → 512
    /// channel layer, where Winograd's transformed batches outgrow im2col's patches.
    #[test]
    fn the_conv_estimate_covers_the_block_buffers_of_either_algorithm() {
        let input = Shape { h: 12, w: 12, c: 3 };
        for algo in [ConvAlgo::Im2col, ConvAlgo::Winograd2, ConvAlgo::Winograd4] {
            let config = TrainConfig {
                model: "c32k3p1,c512k3p1,p2s2,16".into(),
                conv_algo: algo,
                threads: 2,
                ..Default::default()
            };
            let model = Model::new(&config, input, 10).unwrap();
            assert_eq!(model.net.layers[1].block.unwrap().fast.is_some(), algo != ConvAlgo::Im2col);
            let estimate = conv_bytes(input, &parse_layers(&config.model).unwrap(), 10, &config);
            let blocks = |rows: usize| -> usize {
                let ws = Workspace::new(&model.net, rows);
                let lens = ws.blocks.iter().flatten().map(|s| {
                    s.patches.len() + s.act.len() + s.argmax.len() + s.signal.len() + s.cols.len() + s.fast.len()
                });
                lens.sum::<usize>() * 4
            };
            let scratch: usize =
                model.net.layers.iter().filter_map(|l| l.block.map(|b| b.weight_scratch_len(config.batch_size))).sum();
            let real = blocks(config.batch_size) + blocks(EVAL_ROWS) + scratch * 4 * config.threads;
            assert!(estimate as usize >= real, "{algo:?}: estimate {estimate} < {real} bytes of block buffers");
        }
    }
}
