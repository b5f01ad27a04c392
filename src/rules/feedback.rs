//! The fixed random feedback of a network: the matrices `B` and which hidden layer uses which
//! (drawn for the rules in [`crate::rules::draw`]).

/// What a rule sends to the hidden layers through `Source::Output`: the output error
/// `e = (ŷ − y)/N` (DFA, IFA) or the one-hot target `y/N` (DRTP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Error,
    Target,
}

/// A fixed random feedback matrix `B` in the paper's shape `rows × cols` (`rows` = the width
/// `n_i` of the layer that receives the feedback): dense and row-major, or — sparse DFA —
/// only its non-zeros, `k` per row, with their columns, so that its memory scales with them.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackMatrix {
    pub rows: usize,
    pub cols: usize,
    /// Dense: `rows × cols` values. Sparse: `rows × k`, row `i`'s non-zeros at `i·k..(i+1)·k`.
    pub values: Vec<f32>,
    /// Sparse: the column of each value (`rows × k`); empty for a dense matrix.
    pub columns: Vec<u32>,
}

impl FeedbackMatrix {
    /// A dense matrix (`values`: `rows × cols`, row-major).
    pub fn dense(rows: usize, cols: usize, values: Vec<f32>) -> Self {
        assert_eq!(values.len(), rows * cols, "a dense feedback matrix has rows × cols values");
        FeedbackMatrix { rows, cols, values, columns: Vec::new() }
    }

    /// Whether only the non-zeros are stored.
    pub fn is_sparse(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Stored values per row (`cols` for a dense matrix, `k` for a sparse one).
    pub fn per_row(&self) -> usize {
        self.values.len() / self.rows.max(1)
    }

    /// The matrix written out densely (`rows × cols`, row-major).
    pub fn to_dense(&self) -> Vec<f32> {
        if !self.is_sparse() {
            return self.values.clone();
        }
        let mut dense = vec![0.0; self.rows * self.cols];
        let k = self.per_row();
        for (i, (values, columns)) in self.values.chunks_exact(k).zip(self.columns.chunks_exact(k)).enumerate() {
            for (&v, &c) in values.iter().zip(columns) {
                dense[i * self.cols + c as usize] = v;
            }
        }
        dense
    }

    /// The bytes it occupies (values and columns).
    pub fn bytes(&self) -> usize {
        4 * (self.values.len() + self.columns.len())
    }
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
    /// the columns of layer `i`). Derived from `matrices` by [`Feedback::restack`]; empty when
    /// the matrices are sparse (each layer's projection then reads its own non-zeros).
    pub(crate) stacked: Vec<f32>,
    /// Where each hidden layer's columns start in `stacked`.
    pub(crate) offsets: Vec<usize>,
}

impl Feedback {
    /// Rebuilds the stacked matrix of a direct rule after `matrices` changed (e.g. loaded from a
    /// checkpoint).
    pub fn restack(&mut self) {
        let direct = self.direct && !self.matrices.iter().any(FeedbackMatrix::is_sparse);
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
