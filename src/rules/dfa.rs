//! Direct feedback alignment (Nøkland 2016): `δa_i = (B_i e) ⊙ f'(a_i)`, `B_i` fixed random
//! `n_i × n_out` (uniform `±1/√n_i`): every hidden layer hears the output error directly. On a
//! conv net the error is injected after each block's pooling and goes back locally inside the
//! block. Layers of equal width may share one `B` (`--shared-feedback`).

use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Matrix, Place, Source};
use crate::rules::feedback::Feedback;

pub struct Dfa;

impl LearningRule for Dfa {
    fn name(&self) -> &'static str {
        "dfa"
    }

    fn about(&self) -> &'static str {
        "Direct feedback alignment: the output error straight to every hidden layer"
    }

    fn flow(&self) -> Flow {
        Flow::Direct
    }

    fn source<'a>(&self, l: usize, _layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
        let b = feedback.for_layer(l).unwrap_or_else(|| panic!("dfa feedback for hidden layer {l} was not drawn"));
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
