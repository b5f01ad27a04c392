//! frSF, sign-concordant feedback with fixed random magnitudes (Liao, Leibo & Poggio 2016):
//! `δa_i = ((M_i ⊙ sign(W_{i+1}))ᵀ δa_{i+1}) ⊙ f'(a_i)`, `M_i` the magnitudes of FA's uniform
//! draw (`|u|`, `u` uniform in `±1/√n_i`), fixed; the signs those of the forward weights above
//! after every step. See [`crate::rules::sign`].

use crate::base::rng::DfaRng;
use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Place, Source};
use crate::rules::feedback::{Feedback, FeedbackMatrix};
use crate::rules::sign;

pub struct Frsf;

impl LearningRule for Frsf {
    fn name(&self) -> &'static str {
        "frsf"
    }

    fn about(&self) -> &'static str {
        "frSF (sign symmetry, fixed random magnitudes): back through |B| ⊙ sign(W) of the layer above"
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
        sign::follow_signs(l, layers, b, |v: f32| v.abs(), true);
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
