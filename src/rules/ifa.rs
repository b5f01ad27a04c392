//! Indirect feedback alignment (Nøkland 2016): `δa_1 = (B_1 e) ⊙ f'(a_1)`, then
//! `δa_i = (W_i δa_{i-1}) ⊙ f'(a_i)` for `i ≥ 2`: the error enters the first hidden layer and
//! travels up through the forward weights. A whole-network rule: not mixed with others per layer,
//! not on conv nets.

use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Matrix, Place, Source};
use crate::rules::feedback::Feedback;

pub struct Ifa;

impl LearningRule for Ifa {
    fn name(&self) -> &'static str {
        "ifa"
    }

    fn about(&self) -> &'static str {
        "Indirect feedback alignment: the output error into the first hidden layer, then forward"
    }

    fn flow(&self) -> Flow {
        Flow::Upward
    }

    fn source<'a>(&self, l: usize, layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
        if l == 0 {
            let b = feedback.for_layer(0).unwrap_or_else(|| panic!("ifa feedback for hidden layer 0 was not drawn"));
            Source::Output(Matrix::feedback(b))
        } else {
            Source::Below(Matrix::weights_transposed(layers.layer(l)))
        }
    }

    fn feedback_shape(&self, p: &Place) -> Option<FeedbackShape> {
        (p.l == 0).then_some(FeedbackShape { rows: p.width, cols: p.n_out, fan: p.width })
    }

    fn per_layer(&self) -> bool {
        false
    }

    fn starts_from_zero(&self) -> bool {
        false
    }

    fn zero_init_warning(&self, hidden: usize) -> Option<&'static str> {
        (hidden >= 2).then_some(
            "IFA from zero initialisation never trains hidden layers 2 and above: δa_i = (W_i δa_{i-1}) ⊙ f' stays 0 while W_i = 0 (use --init uniform)",
        )
    }
}
