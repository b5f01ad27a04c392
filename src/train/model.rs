//! The model of a run: what learns or stays fixed, drawn from the configuration's seed.

use crate::base::error::{Error, Result};
use crate::base::memory::check_fits;
use crate::base::rng::{DfaRng, Stream};
use crate::layers::Network;
use crate::layers::spec::{parse_layers, parse_model};
use crate::optim::Optimiser;
use crate::rules::{Feedback, RuleSet};
use crate::train::config::TrainConfig;
use crate::train::parallel::Learner;

/// The memory a dense net of layer widths `sizes` needs to train, as an upper estimate: its
/// parameters four times over (weights; optimiser state; gradients; feedback matrices, at most
/// as large as the weights) and a batch's activations, derivatives, directions and masks.
pub fn dense_bytes(sizes: &[usize], config: &TrainConfig) -> u64 {
    let sizes: Vec<u64> = sizes.iter().map(|&n| n as u64).collect();
    let parameters: u64 = sizes.windows(2).map(|w| (w[0] + 1).saturating_mul(w[1])).fold(0, u64::saturating_add);
    let units: u64 = sizes.iter().sum();
    let batch = config.batch_size.max(1) as u64;
    parameters.saturating_mul(4).saturating_add(units.saturating_mul(batch).saturating_mul(4)).saturating_mul(4)
}

/// Everything that learns or stays fixed: forward weights, feedback, optimiser state.
#[derive(Clone, Debug)]
pub struct Model {
    pub net: Network,
    pub feedback: Feedback,
    pub optimiser: Optimiser,
}

impl Model {
    /// A fresh model for `config` with `n_in` inputs and `n_out` classes, drawn from the seed.
    pub fn new(config: &TrainConfig, n_in: usize, n_out: usize) -> Result<Self> {
        let mut weights_rng = DfaRng::new(config.seed, Stream::Weights);
        let mut feedback_rng = DfaRng::new(config.seed, Stream::Feedback);
        let optimiser = |net: &Network| Optimiser::new(config.optimiser, config.rms_decay, config.rms_epsilon, net);
        if config.is_conv() {
            let shape = config.dataset.image_shape();
            if shape.len() != n_in {
                return Err(Error::config(
                    "model",
                    format!(
                        "a convolutional net needs {}×{}×{} images, the data have {n_in} values",
                        shape.h, shape.w, shape.c
                    ),
                ));
            }
            let specs = parse_layers(&config.model)?;
            let uniform = config.uniform_init();
            let mut net =
                Network::from_specs(shape, &specs, n_out, config.activation, uniform, config.bias, &mut weights_rng);
            for &k in &config.freeze {
                net.layers[k - 1].frozen = true;
            }
            let feedback =
                Feedback::for_network(&config.hidden_rules(), &net, config.feedback_bound, &mut feedback_rng);
            let optimiser = optimiser(&net);
            return Ok(Model { net, feedback, optimiser });
        }
        let mut sizes = vec![n_in];
        sizes.extend(parse_model(&config.model)?);
        sizes.push(n_out);
        check_fits(dense_bytes(&sizes, config), "model", &format!("the net {}", config.model))?;
        let mut net = Network::new(&sizes, config.activation, config.uniform_init(), config.bias, &mut weights_rng);
        for &k in &config.freeze {
            net.layers[k - 1].frozen = true;
        }
        let (share, bound) = (config.shared_feedback, config.feedback_bound);
        let feedback = if config.layer_rules.is_empty() {
            Feedback::new(config.rule, &sizes, share, bound, &mut feedback_rng)
        } else {
            Feedback::per_layer(&config.layer_rules, &sizes, share, bound, &mut feedback_rng)
        };
        let optimiser = optimiser(&net);
        Ok(Model { net, feedback, optimiser })
    }

    /// The model as the engine updates it: under `rules`, at `learning_rate`.
    pub fn learner<'a>(&'a mut self, rules: &'a RuleSet, learning_rate: f32) -> Learner<'a> {
        Learner { net: &mut self.net, optimiser: &mut self.optimiser, feedback: &self.feedback, rules, learning_rate }
    }
}
