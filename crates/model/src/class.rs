//! Trace classes: each class is one log with its own retention.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of a class (and of its log): 1 to 32 characters of lowercase
/// ASCII letters, digits, `-` and `_`, starting with a letter. The built-in
/// classes are `mss`, `technique` and `applicative`; the configuration may add
/// others.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a class name is 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter")]
pub struct ClassNameError;

impl ClassName {
    pub const MSS: &'static str = "mss";
    pub const TECHNIQUE: &'static str = "technique";
    pub const APPLICATIVE: &'static str = "applicative";

    pub fn new(s: &str) -> Result<ClassName, ClassNameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 32
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_');
        if ok {
            Ok(ClassName(s.to_owned()))
        } else {
            Err(ClassNameError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The built-in class `mss` (mail traces), without a fallible check.
    pub fn mss() -> ClassName {
        ClassName(Self::MSS.to_owned())
    }

    /// The built-in class `technique`.
    pub fn technique() -> ClassName {
        ClassName(Self::TECHNIQUE.to_owned())
    }

    /// The built-in class `applicative`.
    pub fn applicative() -> ClassName {
        ClassName(Self::APPLICATIVE.to_owned())
    }
}

impl fmt::Display for ClassName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ClassName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClassName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ClassName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["mss", "technique", "applicative", "a", "dpi-2", "x_y"] {
            assert!(ClassName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Mss", "1a", "-a", "a b", "é", &"a".repeat(33)] {
            assert!(ClassName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn built_in_classes_are_valid_names() {
        for (built_in, name) in [
            (ClassName::mss(), ClassName::MSS),
            (ClassName::technique(), ClassName::TECHNIQUE),
            (ClassName::applicative(), ClassName::APPLICATIVE),
        ] {
            assert_eq!(Ok(built_in), ClassName::new(name));
        }
    }
}
