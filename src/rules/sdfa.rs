//! Sparse DFA (Crafton, Parihar, Gebhardt & Raychowdhury 2019, "Direct feedback alignment with
//! sparse connections for local learning"): direct feedback alignment (`δa_i = (B_i e) ⊙ f'(a_i)`)
//! whose `B_i` has one non-zero per row (`--feedback-density k`: k), so each hidden unit hears
//! one output's error: the single scalar per neuron of the paper. The non-zero sits at a random column, uniform in
//! `±√(n_out/n_i)` (the row's variance of DFA's uniform draw; [`Draw::Sparse`]). The matrix is
//! stored dense for now.

use crate::rules::api::{Draw, FeedbackShape, Flow, Layers, LearningRule, Matrix, Place, Source};
use crate::rules::feedback::Feedback;

pub struct Sdfa;

impl LearningRule for Sdfa {
    fn name(&self) -> &'static str {
        "sdfa"
    }

    fn about(&self) -> &'static str {
        "Sparse DFA: DFA whose feedback gives each hidden unit one output's error"
    }

    fn flow(&self) -> Flow {
        Flow::Direct
    }

    fn source<'a>(&self, l: usize, _layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
        let b = feedback.for_layer(l).unwrap_or_else(|| panic!("sdfa feedback for hidden layer {l} was not drawn"));
        Source::Output(Matrix::feedback(b))
    }

    fn feedback_shape(&self, p: &Place) -> Option<FeedbackShape> {
        Some(FeedbackShape { rows: p.width, cols: p.n_out, fan: p.width })
    }

    fn feedback_draw(&self) -> Draw {
        Draw::Sparse
    }

    fn shares_feedback(&self) -> bool {
        true
    }

    fn starts_from_zero(&self) -> bool {
        true
    }
}
