//! What a run shows: curves and alignment figures, hidden features and their t-SNE maps.

pub mod features;
pub mod plots;
