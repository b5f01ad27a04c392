//! Binary DFA: direct feedback alignment (`δa_i = (B_i e) ⊙ f'(a_i)`) with `B_i` entries in `{−s, +s}`,
//! equal odds, `s = 1/√(3 n_i)` (the variance of DFA's uniform `±1/√n_i`; [`Draw::Binary`]).
//! A feedback weight is one bit: the hardware-friendly DFA of the DFA-in-hardware literature
//! (e.g. Frenkel et al. 2021 compare it; Crafton et al. 2019 measure its data movement).

use crate::rules::api::{Draw, FeedbackShape, Flow, Layers, LearningRule, Matrix, Place, Source};
use crate::rules::feedback::Feedback;

pub struct Bdfa;

impl LearningRule for Bdfa {
    fn name(&self) -> &'static str {
        "bdfa"
    }

    fn about(&self) -> &'static str {
        "Binary DFA: DFA whose fixed feedback entries are ±s (one bit each)"
    }

    fn flow(&self) -> Flow {
        Flow::Direct
    }

    fn source<'a>(&self, l: usize, _layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
        let b = feedback.for_layer(l).unwrap_or_else(|| panic!("bdfa feedback for hidden layer {l} was not drawn"));
        Source::Output(Matrix::feedback(b))
    }

    fn feedback_shape(&self, p: &Place) -> Option<FeedbackShape> {
        Some(FeedbackShape { rows: p.width, cols: p.n_out, fan: p.width })
    }

    fn feedback_draw(&self) -> Draw {
        Draw::Binary
    }

    fn shares_feedback(&self) -> bool {
        true
    }

    fn starts_from_zero(&self) -> bool {
        true
    }
}
