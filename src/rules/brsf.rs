//! brSF, sign-concordant feedback with batchwise random magnitudes (Liao, Leibo & Poggio 2016):
//! `δa_i = ((M_i^t ⊙ sign(W_{i+1}))ᵀ δa_{i+1}) ⊙ f'(a_i)`, the magnitudes `M_i^t = |U|`, `U`
//! uniform in FA's `±1/√n_i`, drawn afresh after every step from the run's refresh stream (saved
//! in checkpoints, so a resumed run draws the same); the signs those of the forward weights
//! above. See [`crate::rules::sign`].

use crate::base::rng::DfaRng;
use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Place, Source};
use crate::rules::feedback::{Feedback, FeedbackMatrix};
use crate::rules::sign;

pub struct Brsf;

impl LearningRule for Brsf {
    fn name(&self) -> &'static str {
        "brsf"
    }

    fn about(&self) -> &'static str {
        "brSF (sign symmetry, magnitudes redrawn every batch): back through |random| ⊙ sign(W) of the layer above"
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

    fn refresh_feedback(&self, l: usize, layers: &dyn Layers, b: &mut FeedbackMatrix, rng: &mut DfaRng) {
        let bound = sign::bound(l, layers, b);
        sign::follow_signs(l, layers, b, |_| rng.symmetric(bound).abs(), false);
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
