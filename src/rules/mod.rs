//! The learning rules: how each hidden layer's update direction `δa_i` is produced (SPEC §1).
//!
//! | rule | `δa_i` | file |
//! | --- | --- | --- |
//! | BP  | `(W_{i+1}ᵀ δa_{i+1}) ⊙ f'(a_i)`, `δa_L = e` (the true gradient) | [`bp`] |
//! | FA  | `(B_i δa_{i+1}) ⊙ f'(a_i)`, `B_i` fixed random, shape of `W_{i+1}ᵀ` | [`fa`] |
//! | DFA | `(B_i e) ⊙ f'(a_i)`, `B_i` fixed random, `n_i × n_out` | [`dfa`] |
//! | IFA | `δa_1 = (B_1 e) ⊙ f'(a_1)`; `δa_i = (W_i δa_{i-1}) ⊙ f'(a_i)` for `i ≥ 2` | [`ifa`] |
//! | DRTP | `(B_i y*) ⊙ f'(a_i)`, `B_i` as DFA's, the one-hot target in place of `e` | [`drtp`] |
//! | binary DFA | DFA's, `B_i` entries `±s` | [`bdfa`] |
//! | ternary DFA | DFA's, `B_i` entries `−s, 0, +s` | [`tdfa`] |
//! | sparse DFA | DFA's, one non-zero per row of `B_i` | [`sdfa`] |
//! | uSF | `(sign(W_{i+1})ᵀ δa_{i+1}) ⊙ f'(a_i)` | [`usf`] |
//! | frSF | `((M_i ⊙ sign(W_{i+1}))ᵀ δa_{i+1}) ⊙ f'(a_i)`, `M_i` fixed random | [`frsf`] |
//! | brSF | frSF's, `M_i` redrawn after every step | [`brsf`] |
//! | KP | FA's, `B_i` receiving `W_{i+1}`'s transposed updates, both decayed | [`kp`] |
//!
//! A rule is one file implementing [`LearningRule`] ([`api`]), registered in [`ALL`]; the
//! drivers ([`drive`]) compute the directions from what the rule says, and [`feedback`] draws
//! the fixed random matrices the rule asks for. Everything else in the crate holds a [`Rule`]
//! and asks it.

pub mod api;
pub mod bdfa;
pub mod bp;
pub mod brsf;
pub mod dfa;
pub mod draw;
pub mod drive;
pub mod drtp;
pub mod fa;
pub mod feedback;
pub mod frsf;
pub mod ifa;
pub mod kp;
pub mod sdfa;
pub mod set;
pub mod sign;
pub mod tdfa;
pub mod usf;

pub use api::{Flow, Layers, LearningRule, Matrix, Rule, Signal, Source};
pub use draw::FeedbackOptions;
pub use drive::{chain_step, direct_delta, gradients, hidden_deltas, hidden_deltas_per_layer};
pub use feedback::{Feedback, FeedbackMatrix};
pub use set::RuleSet;

/// Every rule, in the order `--help` lists them. Registering a rule is one line here.
pub const ALL: &[Rule] = &[
    Rule::BP,
    Rule::FA,
    Rule::DFA,
    Rule::IFA,
    Rule::DRTP,
    Rule::BDFA,
    Rule::TDFA,
    Rule::SDFA,
    Rule::USF,
    Rule::FRSF,
    Rule::BRSF,
    Rule::KP,
];

impl Rule {
    pub const BP: Rule = Rule(&bp::Bp);
    pub const FA: Rule = Rule(&fa::Fa);
    pub const DFA: Rule = Rule(&dfa::Dfa);
    pub const IFA: Rule = Rule(&ifa::Ifa);
    pub const DRTP: Rule = Rule(&drtp::Drtp);
    pub const BDFA: Rule = Rule(&bdfa::Bdfa);
    pub const TDFA: Rule = Rule(&tdfa::Tdfa);
    pub const SDFA: Rule = Rule(&sdfa::Sdfa);
    pub const USF: Rule = Rule(&usf::Usf);
    pub const FRSF: Rule = Rule(&frsf::Frsf);
    pub const BRSF: Rule = Rule(&brsf::Brsf);
    pub const KP: Rule = Rule(&kp::Kp);

    /// Every registered rule.
    pub fn all() -> &'static [Rule] {
        ALL
    }
}

impl std::str::FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let wanted = s.trim().to_ascii_lowercase();
        ALL.iter().copied().find(|r| r.name() == wanted).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|r| r.name()).collect();
            format!("unknown rule '{s}'; expected one of {}", names.join(", "))
        })
    }
}

impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
