//! Kolen–Pollack (Kolen & Pollack 1994; Akrout et al. 2019, "Deep learning without weight
//! transport"): FA's directions, `δa_i = (B_i δa_{i+1}) ⊙ f'(a_i)`, through a feedback matrix
//! that learns. After every step `B_i` receives the transposed update of the forward weights
//! `W_{i+1}` it stands for, and both decay (decoupled, `λ`):
//!
//! ```text
//! W_{i+1} ← W_{i+1} − u − lr·λ·W_{i+1}        u: the optimiser's step for ∂J/∂W_{i+1}
//! B_i     ← B_i     − uᵀ − lr·λ·B_i
//! ```
//!
//! so `B_i − W_{i+1}ᵀ ← (1 − lr·λ)(B_i − W_{i+1}ᵀ)`: the two converge whatever the gradients.
//! `uᵀ` is computed by `B_i`'s own optimiser state from `(∂J/∂W_{i+1})ᵀ`, which is `h_i δa_{i+1}ᵀ`
//! (local to `B_i`'s synapses: the circuit of Akrout et al.), not read off `W_{i+1}`. `λ` is the
//! run's `--weight-decay`, 0.01 by default with this rule: at the paper's RMSprop rate 1e-3 that
//! is a decay of 1e-5 per step, the rate·decay of Akrout et al.'s ImageNet runs (SGD 0.1 × 1e-4).
//! `B_i` starts as FA's (uniform `±1/√n_i`), the forward weights as FA's (zero with tanh under
//! the paper's initialisation). Below a block `B_i` has the kernels' layout and receives their
//! update untransposed.

use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Place, Source};
use crate::rules::feedback::Feedback;
use crate::rules::sign;

pub struct Kp;

impl LearningRule for Kp {
    fn name(&self) -> &'static str {
        "kp"
    }

    fn about(&self) -> &'static str {
        "Kolen–Pollack: feedback alignment whose matrices receive the forward weights' transposed updates, both decayed"
    }

    fn flow(&self) -> Flow {
        Flow::Chain
    }

    fn source<'a>(&self, l: usize, layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
        sign::source(self.name(), l, layers, feedback)
    }

    fn feedback_shape(&self, p: &Place) -> Option<FeedbackShape> {
        Some(sign::shape(p))
    }

    fn learns_feedback(&self) -> bool {
        true
    }

    fn weight_decay(&self) -> f32 {
        0.01
    }

    fn starts_from_zero(&self) -> bool {
        true
    }

    fn feedback_mirrors_weights(&self) -> bool {
        true
    }
}
