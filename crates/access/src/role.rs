//! The three roles (DESIGN §7).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Appends traces (applications, the proxy). Cannot read.
    Producteur,
    /// Searches, proofs, exports.
    Auditeur,
    /// Policy, holds, purge, keys — and everything an auditor does.
    Admin,
}

pub const ROLES: [Role; 3] = [Role::Producteur, Role::Auditeur, Role::Admin];

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "producteur" => Some(Role::Producteur),
            "auditeur" => Some(Role::Auditeur),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producteur => "producteur",
            Role::Auditeur => "auditeur",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
