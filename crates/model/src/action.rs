//! The action vocabulary, in French as the regulation writes it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every action registre knows, in the order the documentation lists them.
pub const ACTIONS: &[&str] = &[
    "connexion",
    "deconnexion",
    "consultation",
    "envoi",
    "suppression",
    "deplacement",
    "copie",
    "marquage",
    "depot",
    "creation",
    "modification",
    "recherche",
    "export",
    "purge",
    "politique",
];

/// What was done. Unknown values are refused, except the extension namespace
/// `x-…` (lowercase letters, digits and `-`, at most 40 characters after `x-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Connexion,
    Deconnexion,
    Consultation,
    Envoi,
    Suppression,
    Deplacement,
    Copie,
    Marquage,
    Depot,
    Creation,
    Modification,
    Recherche,
    Export,
    Purge,
    Politique,
    /// An `x-…` extension action.
    Extension(String),
}

impl Action {
    /// Parses an action name; `None` when it is neither in [`ACTIONS`] nor a
    /// well-formed `x-…` extension.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "connexion" => Action::Connexion,
            "deconnexion" => Action::Deconnexion,
            "consultation" => Action::Consultation,
            "envoi" => Action::Envoi,
            "suppression" => Action::Suppression,
            "deplacement" => Action::Deplacement,
            "copie" => Action::Copie,
            "marquage" => Action::Marquage,
            "depot" => Action::Depot,
            "creation" => Action::Creation,
            "modification" => Action::Modification,
            "recherche" => Action::Recherche,
            "export" => Action::Export,
            "purge" => Action::Purge,
            "politique" => Action::Politique,
            other => {
                let rest = other.strip_prefix("x-")?;
                let ok = !rest.is_empty()
                    && rest.len() <= 40
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    return None;
                }
                Action::Extension(other.to_owned())
            }
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Action::Connexion => "connexion",
            Action::Deconnexion => "deconnexion",
            Action::Consultation => "consultation",
            Action::Envoi => "envoi",
            Action::Suppression => "suppression",
            Action::Deplacement => "deplacement",
            Action::Copie => "copie",
            Action::Marquage => "marquage",
            Action::Depot => "depot",
            Action::Creation => "creation",
            Action::Modification => "modification",
            Action::Recherche => "recherche",
            Action::Export => "export",
            Action::Purge => "purge",
            Action::Politique => "politique",
            Action::Extension(s) => s,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Action::parse(&s).ok_or_else(|| serde::de::Error::custom("unknown action"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_action_round_trips() {
        for name in ACTIONS {
            let a = Action::parse(name).expect("listed action parses");
            assert_eq!(a.as_str(), *name);
            assert!(!matches!(a, Action::Extension(_)));
        }
    }

    #[test]
    fn extensions_are_namespaced() {
        assert_eq!(
            Action::parse("x-impression"),
            Some(Action::Extension("x-impression".into()))
        );
        for bad in ["x-", "X-a", "x-A", "x-é", "delete", "", "Envoi", "x-a b"] {
            assert_eq!(Action::parse(bad), None, "{bad:?}");
        }
    }
}
