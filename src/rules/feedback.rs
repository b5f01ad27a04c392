//! The fixed random feedback of a network: the matrices `B` and which hidden layer uses which
//! (drawn for the rules in [`crate::rules::draw`]).

/// What a rule sends to the hidden layers through `Source::Output`: the output error
/// `e = (ŷ − y)/N` (DFA, IFA) or the one-hot target `y/N` (DRTP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Error,
    Target,
}

/// A fixed random feedback matrix `B`, stored row-major `rows × cols` in the paper's shape
/// (`rows` = the width `n_i` of the layer that receives the feedback).
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackMatrix {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

/// The feedback of a network: the matrices and, per hidden layer, which matrix it uses
/// (`None`: the rule sends no feedback to that layer).
#[derive(Clone, Debug, PartialEq)]
pub struct Feedback {
    /// Whether one direct rule (DFA) trains the dense network throughout (not a rule per layer,
    /// nor a net with convolutional blocks): its matrices are then also kept stacked.
    pub direct: bool,
    /// What the direct rule projects: the output error, or the target (DRTP).
    pub signal: Signal,
    pub matrices: Vec<FeedbackMatrix>,
    pub layer_matrix: Vec<Option<usize>>,
    /// A direct rule (DFA): every hidden layer's `B_i` stacked along the rows and transposed
    /// (`n_out × Σ n_i`, row-major), so that one pass projects `e` onto every layer (`B_i e` in
    /// the columns of layer `i`). Derived from `matrices` by [`Feedback::restack`].
    pub(crate) stacked: Vec<f32>,
    /// Where each hidden layer's columns start in `stacked`.
    pub(crate) offsets: Vec<usize>,
}

impl Feedback {
    /// Rebuilds the stacked matrix of a direct rule after `matrices` changed (e.g. loaded from a
    /// checkpoint).
    pub fn restack(&mut self) {
        let direct = self.direct;
        let layers: Vec<&FeedbackMatrix> =
            (0..self.layer_matrix.len()).filter(|_| direct).filter_map(|l| self.for_layer(l)).collect();
        let total: usize = layers.iter().map(|b| b.rows).sum();
        let n_out = layers.first().map_or(0, |b| b.cols);
        let mut stacked = vec![0.0; n_out * total];
        let mut offset = 0;
        let mut offsets = Vec::new();
        for b in layers {
            offsets.push(offset);
            for (i, row) in b.values.chunks_exact(b.cols).enumerate() {
                for (k, &v) in row.iter().enumerate() {
                    stacked[k * total + offset + i] = v;
                }
            }
            offset += b.rows;
        }
        self.stacked = stacked;
        self.offsets = offsets;
    }

    /// The feedback matrix of hidden layer `l` (0-based).
    pub fn for_layer(&self, l: usize) -> Option<&FeedbackMatrix> {
        self.layer_matrix.get(l).copied().flatten().map(|k| &self.matrices[k])
    }

    /// The stacked matrix of a direct rule (`n_out × Σ n_i`) and where hidden layer `l`'s
    /// columns start in it (see [`Feedback::restack`]).
    pub fn stacked(&self, l: usize) -> (&[f32], usize) {
        (&self.stacked, *self.offsets.get(l).expect("direct feedback not stacked"))
    }
}
