//! Ternary DFA: direct feedback alignment (`δa_i = (B_i e) ⊙ f'(a_i)`) with `B_i` entries in
//! `{−s, 0, +s}`, equal odds, `s = 1/√(2 n_i)` (the variance of DFA's uniform `±1/√n_i`;
//! [`Draw::Ternary`]).

use crate::rules::api::{Draw, FeedbackShape, Flow, Layers, LearningRule, Matrix, Place, Source};
use crate::rules::feedback::Feedback;

pub struct Tdfa;

impl LearningRule for Tdfa {
    fn name(&self) -> &'static str {
        "tdfa"
    }

    fn about(&self) -> &'static str {
        "Ternary DFA: DFA whose fixed feedback entries are −s, 0 or +s"
    }

    fn flow(&self) -> Flow {
        Flow::Direct
    }

    fn source<'a>(&self, l: usize, _layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
        let b = feedback.for_layer(l).unwrap_or_else(|| panic!("tdfa feedback for hidden layer {l} was not drawn"));
        Source::Output(Matrix::feedback(b))
    }

    fn feedback_shape(&self, p: &Place) -> Option<FeedbackShape> {
        Some(FeedbackShape { rows: p.width, cols: p.n_out, fan: p.width })
    }

    fn feedback_draw(&self) -> Draw {
        Draw::Ternary
    }

    fn shares_feedback(&self) -> bool {
        true
    }

    fn starts_from_zero(&self) -> bool {
        true
    }
}
