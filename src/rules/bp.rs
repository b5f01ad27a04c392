//! Back-propagation: `δa_i = (W_{i+1}ᵀ δa_{i+1}) ⊙ f'(a_i)`, `δa_L = e` — the true gradient.
//! Below a convolutional block, `W_{i+1}ᵀ δa_{i+1}` is `col2im(δa_{i+1} · K)` with `K` its kernels.

use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Matrix, Place, Source};
use crate::rules::feedback::Feedback;

pub struct Bp;

impl LearningRule for Bp {
    fn name(&self) -> &'static str {
        "bp"
    }

    fn about(&self) -> &'static str {
        "Back-propagation: the error travels back through the transposed forward weights"
    }

    fn flow(&self) -> Flow {
        Flow::Chain
    }

    fn source<'a>(&self, l: usize, layers: &'a dyn Layers, _feedback: &'a Feedback) -> Source<'a> {
        Source::Above(Matrix::weights(layers.layer(l + 1)))
    }

    fn feedback_shape(&self, _place: &Place) -> Option<FeedbackShape> {
        None
    }

    fn transports_weights(&self) -> bool {
        true
    }

    fn starts_from_zero(&self) -> bool {
        false
    }

    fn zero_init_warning(&self, _hidden: usize) -> Option<&'static str> {
        Some(
            "BP from zero initialisation cannot train the hidden layers: W_{i+1}ᵀ δa_{i+1} = 0 while the weights above are zero (use --init uniform)",
        )
    }
}
