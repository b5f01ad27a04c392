//! What the engine needs to know of a run to pick its schedules.

use crate::rules::RuleSet;

/// What the engine needs to know of a run to pick its schedules.
pub struct Plan {
    pub rules: RuleSet,
    pub dropout: bool,
    pub adversarial: bool,
    /// Alignment measured on some batches (those need every direction before any update).
    pub measures_alignment: bool,
}
