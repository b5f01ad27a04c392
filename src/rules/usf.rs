//! uSF, sign-concordant feedback with unit magnitudes (Liao, Leibo & Poggio 2016, "How important
//! is weight symmetry in backpropagation?"): `δa_i = (sign(W_{i+1})ᵀ δa_{i+1}) ⊙ f'(a_i)`, the
//! signs of the forward weights above read after every step (the weights' signs travel back, not
//! their values). Below a block: the signs of its kernels. See [`crate::rules::sign`].

use crate::base::rng::DfaRng;
use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Place, Source};
use crate::rules::feedback::{Feedback, FeedbackMatrix};
use crate::rules::sign;

pub struct Usf;

impl LearningRule for Usf {
    fn name(&self) -> &'static str {
        "usf"
    }

    fn about(&self) -> &'static str {
        "uSF (sign symmetry, unit magnitudes): back through sign(W) of the layer above"
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

    fn refreshes_feedback(&self) -> bool {
        true
    }

    fn refresh_feedback(&self, l: usize, layers: &dyn Layers, b: &mut FeedbackMatrix, _rng: &mut DfaRng) {
        sign::follow_signs(l, layers, b, |_| 1.0, false);
    }

    fn starts_from_zero(&self) -> bool {
        false
    }

    fn zero_init_warning(&self, _hidden: usize) -> Option<&'static str> {
        Some("sign symmetry from zero initialisation cannot train the hidden layers: sign(0) = 0 (use --init uniform)")
    }

    fn feedback_mirrors_weights(&self) -> bool {
        true
    }
}
