//! Closed sets of named values (the enumerations of a configuration), described once for every
//! front end: the command line builds its choices from [`Choice::CHOICES`], TOML reads the same
//! names through serde.

/// One value of a [`Choice`]: its name as written in TOML and on the command line, and a line
/// of help (empty when the name says it all).
pub struct Named<T: 'static> {
    pub value: T,
    pub name: &'static str,
    pub help: &'static str,
}

/// An enumeration that front ends offer by name.
pub trait Choice: Copy + PartialEq + Sized + 'static {
    /// Every value, in the order `--help` lists them.
    const CHOICES: &'static [Named<Self>];

    /// The value called `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::CHOICES.iter().find(|c| c.name == name).map(|c| c.value)
    }

    /// The name of this value.
    fn choice_name(self) -> &'static str {
        Self::CHOICES.iter().find(|c| c.value == self).map_or("?", |c| c.name)
    }
}

/// `const CHOICES` of a [`Choice`] from `(Variant, "name", "help")` triples.
#[macro_export]
macro_rules! choices {
    ($t:ty { $($v:ident => $name:literal $(: $help:literal)?),* $(,)? }) => {
        impl $crate::base::choice::Choice for $t {
            const CHOICES: &'static [$crate::base::choice::Named<Self>] = &[
                $($crate::base::choice::Named { value: <$t>::$v, name: $name, help: $crate::choices!(@help $($help)?) }),*
            ];
        }
    };
    (@help) => { "" };
    (@help $h:literal) => { $h };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Colour {
        Red,
        DarkBlue,
    }
    crate::choices!(Colour { Red => "red", DarkBlue => "dark-blue": "the dark one" });

    #[test]
    fn names_round_trip_and_match_serde() {
        for c in Colour::CHOICES {
            assert_eq!(Colour::from_name(c.name), Some(c.value));
            assert_eq!(c.value.choice_name(), c.name);
            let via_serde: Colour = serde_json::from_str(&format!("\"{}\"", c.name)).unwrap();
            assert_eq!(via_serde, c.value);
        }
        assert_eq!(Colour::from_name("green"), None);
        assert_eq!(Colour::CHOICES[1].help, "the dark one");
    }
}
