//! Feedback alignment (Lillicrap et al. 2016): `δa_i = (B_i δa_{i+1}) ⊙ f'(a_i)`, `B_i` fixed
//! random in the shape of `W_{i+1}ᵀ` (`n_i × n_{i+1}`, uniform `±1/√n_i`). Below a convolutional
//! block, `B_i` is a set of feedback kernels of the block's kernel shape (`C_out × kh·kw·C_in`,
//! uniform `±1/√(kh·kw·C_in)`, as the kernels are drawn), used as BP uses the kernels.

use crate::rules::api::{FeedbackShape, Flow, Layers, LearningRule, Matrix, Place, Source};
use crate::rules::feedback::Feedback;

pub struct Fa;

impl LearningRule for Fa {
    fn name(&self) -> &'static str {
        "fa"
    }

    fn about(&self) -> &'static str {
        "Feedback alignment: back through fixed random matrices of the same shapes"
    }

    fn flow(&self) -> Flow {
        Flow::Chain
    }

    fn source<'a>(&self, l: usize, layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
        let b = feedback.for_layer(l).unwrap_or_else(|| panic!("fa feedback for hidden layer {l} was not drawn"));
        if layers.is_block(l + 1) {
            Source::Above(Matrix::feedback_as_weights(b))
        } else {
            Source::Above(Matrix::feedback(b))
        }
    }

    fn feedback_shape(&self, p: &Place) -> Option<FeedbackShape> {
        Some(match p.above_kernels {
            Some((c_out, k)) => FeedbackShape { rows: c_out, cols: k, fan: k },
            None => FeedbackShape { rows: p.width, cols: p.above, fan: p.width },
        })
    }

    fn starts_from_zero(&self) -> bool {
        true
    }

    fn feedback_mirrors_weights(&self) -> bool {
        true
    }
}
