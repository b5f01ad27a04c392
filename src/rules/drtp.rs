//! Direct random target projection (Frenkel, Lefebvre & Bol 2021, "Learning without feedback:
//! fixed random learning signals allow for feedforward training of deep neural networks"):
//! `δa_i = (B_i y*) ⊙ f'(a_i)`, `B_i` fixed random `n_i × n_out` (uniform `±1/√n_i`, as DFA's),
//! with the one-hot target `y*` in place of the output error. No hidden direction depends on the
//! output layer, so every hidden update could start as soon as its layer's forward pass is done.
//! With the batch along the rows the signal is `y*/N` (the `1/N` that `e` carries, so that the
//! step size matches DFA's); the sign of `B_i` is random, so the sign of `y*` against `−e` does
//! not matter.

use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Matrix, Place, Signal, Source};
use crate::rules::feedback::Feedback;

pub struct Drtp;

impl LearningRule for Drtp {
    fn name(&self) -> &'static str {
        "drtp"
    }

    fn about(&self) -> &'static str {
        "Direct random target projection: the one-hot target, not the error, to every hidden layer"
    }

    fn flow(&self) -> Flow {
        Flow::Direct
    }

    fn signal(&self) -> Signal {
        Signal::Target
    }

    fn source<'a>(&self, l: usize, _layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
        let b = feedback.for_layer(l).unwrap_or_else(|| panic!("drtp feedback for hidden layer {l} was not drawn"));
        Source::Output(Matrix::feedback(b))
    }

    fn feedback_shape(&self, p: &Place) -> Option<FeedbackShape> {
        Some(FeedbackShape { rows: p.width, cols: p.n_out, fan: p.width })
    }

    fn shares_feedback(&self) -> bool {
        true
    }

    fn starts_from_zero(&self) -> bool {
        true
    }
}
