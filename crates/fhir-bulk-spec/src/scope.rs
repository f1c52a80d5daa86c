//! SMART scopes for backend services (§16): parsing v1 and v2 resource scopes, granting the
//! intersection of what a client asks for and what it was registered for, and answering
//! "may this token do that to this type?".
//!
//! - v1 (SC1): `system/(Type|*).(read|write|*)`. The capitalised `.Read`/`.Write` some vendors
//!   use (V6) is accepted as an alias and echoed in canonical lower case.
//! - v2 (SC2): `system/(Type|*).` plus any of `c r u d s`, in `cruds` order (`.rs`, `.cud`).
//!   Out-of-order or repeated letters (`.dus`, SC3) are refused rather than guessed at.
//! - v1 → v2 (SC3): `.read` = `.rs`, `.write` = `.cud`, `.*` = `.cruds`. A grant answers in
//!   the syntax that was requested, so a v1 client gets v1 scopes back.
//! - `user/` and `patient/` scopes parse but are never granted: a backend service has no user
//!   or patient context to narrow them (SC4). Granular v2 scopes (`.rs?category=…`) are not
//!   supported and are refused, never widened to the whole type.
//!
//! Scope strings are case-sensitive (RFC 6749 §3.3) apart from the V6 alias.

use crate::resource_type::is_resource_type;
use std::fmt;

/// The context a scope applies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// `patient/`: data of the patient in context.
    Patient,
    /// `user/`: what the user in context may see.
    User,
    /// `system/`: backend services, no user or patient.
    System,
}

impl Context {
    fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// A set of the five v2 permissions: create, read, update, delete, search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// `c`: create.
    pub const CREATE: Permissions = Permissions(1);
    /// `r`: read by id (and export, K9).
    pub const READ: Permissions = Permissions(2);
    /// `u`: update.
    pub const UPDATE: Permissions = Permissions(4);
    /// `d`: delete.
    pub const DELETE: Permissions = Permissions(8);
    /// `s`: search.
    pub const SEARCH: Permissions = Permissions(16);
    /// None.
    pub const NONE: Permissions = Permissions(0);
    /// v1 `.read` = v2 `.rs`.
    pub const V1_READ: Permissions = Permissions(2 | 16);
    /// v1 `.write` = v2 `.cud`.
    pub const V1_WRITE: Permissions = Permissions(1 | 4 | 8);
    /// v1 `.*` = v2 `.cruds`.
    pub const ALL: Permissions = Permissions(31);

    const LETTERS: [(char, Permissions); 5] = [
        ('c', Permissions::CREATE),
        ('r', Permissions::READ),
        ('u', Permissions::UPDATE),
        ('d', Permissions::DELETE),
        ('s', Permissions::SEARCH),
    ];

    /// True if every permission of `other` is in `self`.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The permissions in both.
    pub fn intersect(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    /// The permissions in either.
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// True if there is none.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses a v2 suffix: letters of `cruds`, in that order, each at most once.
    fn from_v2(suffix: &str) -> Option<Permissions> {
        let mut next = 0;
        let mut out = Permissions::NONE;
        for ch in suffix.chars() {
            let at = Self::LETTERS[next..].iter().position(|(c, _)| *c == ch)? + next;
            out = out.union(Self::LETTERS[at].1);
            next = at + 1;
        }
        (!out.is_empty()).then_some(out)
    }

    /// The v2 suffix (`rs`, `cud`, …).
    pub fn v2_suffix(self) -> String {
        Self::LETTERS
            .iter()
            .filter(|(_, p)| self.contains(*p))
            .map(|(c, _)| *c)
            .collect()
    }

    /// The v1 suffix, when these permissions have one.
    pub fn v1_suffix(self) -> Option<&'static str> {
        match self {
            Permissions::V1_READ => Some("read"),
            Permissions::V1_WRITE => Some("write"),
            Permissions::ALL => Some("*"),
            _ => None,
        }
    }
}

/// Which syntax a scope was written in (a grant answers in the same one, SC3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `.read`, `.write`, `.*`.
    V1,
    /// `.cruds` letters.
    V2,
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `system`, `user` or `patient`.
    pub context: Context,
    /// The resource type; `None` for `*` (every type, also those added later, SC4).
    pub resource_type: Option<String>,
    /// What it allows.
    pub permissions: Permissions,
    /// How it was written.
    pub syntax: Syntax,
}

/// Why a scope string is not a resource scope we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope '{scope}': {reason}")]
pub struct ScopeError {
    /// The scope as given.
    pub scope: String,
    /// Why, in words a user can act on.
    pub reason: String,
}

impl Scope {
    /// Parses one scope (see the module doc for the accepted forms).
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let bad = |reason: &str| ScopeError {
            scope: s.to_string(),
            reason: reason.to_string(),
        };
        let (context, rest) = s
            .split_once('/')
            .ok_or_else(|| bad("not a resource scope (expected system/Type.permissions)"))?;
        let context = match context {
            "system" => Context::System,
            "user" => Context::User,
            "patient" => Context::Patient,
            _ => return Err(bad("the context must be system/, user/ or patient/")),
        };
        if rest.contains('?') {
            return Err(bad(
                "granular scopes with search parameters are not supported",
            ));
        }
        let (ty, suffix) = rest
            .rsplit_once('.')
            .ok_or_else(|| bad("missing the permissions after '.' (e.g. .rs or .read)"))?;
        let resource_type = match ty {
            "*" => None,
            t if is_resource_type(t) => Some(t.to_string()),
            _ => return Err(bad("not an R4 resource type (or *)")),
        };
        // V6: `.Read` and friends are accepted as the v1 words, in any letter case.
        let v1 = |word: &str| suffix.eq_ignore_ascii_case(word);
        let (permissions, syntax) = if suffix == "*" {
            (Permissions::ALL, Syntax::V1)
        } else if v1("read") {
            (Permissions::V1_READ, Syntax::V1)
        } else if v1("write") {
            (Permissions::V1_WRITE, Syntax::V1)
        } else if let Some(p) = Permissions::from_v2(suffix) {
            (p, Syntax::V2)
        } else {
            return Err(bad(
                "the permissions must be read, write or * (v1) or letters of cruds in that order (v2)",
            ));
        };
        Ok(Scope {
            context,
            resource_type,
            permissions,
            syntax,
        })
    }

    /// True if this scope allows all of `permissions` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permissions: Permissions) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|t| t == resource_type)
            && self.permissions.contains(permissions)
    }

    /// What both scopes allow, in `self`'s context and syntax; `None` if nothing.
    pub fn intersect(&self, other: &Scope) -> Option<Scope> {
        if self.context != other.context {
            return None;
        }
        let resource_type = match (&self.resource_type, &other.resource_type) {
            (None, t) | (t, None) => t.clone(),
            (Some(a), Some(b)) if a == b => Some(a.clone()),
            _ => return None,
        };
        let permissions = self.permissions.intersect(other.permissions);
        (!permissions.is_empty()).then_some(Scope {
            context: self.context,
            resource_type,
            permissions,
            syntax: self.syntax,
        })
    }
}

/// The canonical form: v1 words in lower case when written as v1 and expressible in v1,
/// else the v2 letters.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = self.resource_type.as_deref().unwrap_or("*");
        let suffix = match (self.syntax, self.permissions.v1_suffix()) {
            (Syntax::V1, Some(word)) => word.to_string(),
            _ => self.permissions.v2_suffix(),
        };
        write!(f, "{}/{ty}.{suffix}", self.context.as_str())
    }
}

/// The `system/` scopes a client holds: what it was registered for, or what a token grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

impl ScopeSet {
    /// Parses a registration: space-separated `system/` scopes, every one valid (so a typo
    /// is caught when the client is registered, not when it first fails to log in).
    pub fn parse_registered(s: &str) -> Result<ScopeSet, ScopeError> {
        let mut scopes = Vec::new();
        for item in s.split_whitespace() {
            let scope = Scope::parse(item)?;
            if scope.context != Context::System {
                return Err(ScopeError {
                    scope: item.to_string(),
                    reason: "backend service clients are registered for system/ scopes only".into(),
                });
            }
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(ScopeError {
                scope: s.to_string(),
                reason: "no scope given".into(),
            });
        }
        Ok(ScopeSet { scopes })
    }

    /// Reads the scopes of a token (ours or an external issuer's): the `system/` resource
    /// scopes it names; anything else (`openid`, `user/…`, granular scopes) gives no access.
    pub fn from_token(s: &str) -> ScopeSet {
        let scopes = s
            .split_whitespace()
            .filter_map(|item| Scope::parse(item).ok())
            .filter(|sc| sc.context == Context::System)
            .collect();
        ScopeSet { scopes }
    }

    /// The scopes.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// True if no scope is held.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// True if some scope allows all of `permissions` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permissions: Permissions) -> bool {
        self.scopes
            .iter()
            .any(|s| s.allows(resource_type, permissions))
    }

    /// May resources of this type be read (and so exported, K9)?
    pub fn can_read(&self, resource_type: &str) -> bool {
        self.allows(resource_type, Permissions::READ)
    }
}

/// Space-separated, in order.
impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

/// The outcome of a token request's `scope` against a client's registration (TK2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Granted scopes, in request order, each in the syntax it was requested in.
    pub granted: ScopeSet,
    /// Requested scopes that were not granted, with the reason.
    pub refused: Vec<ScopeError>,
}

/// Grants `requested ∩ allowed`: each requested `system/` scope is narrowed to every allowed
/// scope it overlaps (so `system/*.read` against `system/Patient.rs system/Group.rs` grants
/// `system/Patient.read system/Group.read`). An empty `granted` means `invalid_scope`.
pub fn grant(requested: &str, allowed: &ScopeSet) -> Grant {
    let mut out = Grant::default();
    for item in requested.split_whitespace() {
        let scope = match Scope::parse(item) {
            Ok(s) => s,
            Err(e) => {
                out.refused.push(e);
                continue;
            }
        };
        if scope.context != Context::System {
            out.refused.push(ScopeError {
                scope: item.to_string(),
                reason: "user/ and patient/ scopes are not granted to backend services (they have no user or patient context)".into(),
            });
            continue;
        }
        for a in &allowed.scopes {
            if let Some(g) = scope.intersect(a)
                && !out
                    .granted
                    .scopes
                    .iter()
                    .any(|x| x.to_string() == g.to_string())
            {
                out.granted.scopes.push(g);
            }
        }
        if !allowed.scopes.iter().any(|a| scope.intersect(a).is_some()) {
            out.refused.push(ScopeError {
                scope: item.to_string(),
                reason: format!("not within the scopes this client is registered for ({allowed})"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    fn granted(requested: &str, allowed: &str) -> String {
        grant(requested, &ScopeSet::parse_registered(allowed).unwrap())
            .granted
            .to_string()
    }

    #[test]
    fn v1_forms_sc1() {
        assert_eq!(p("system/*.read").permissions, Permissions::V1_READ);
        assert_eq!(p("system/Patient.write").permissions, Permissions::V1_WRITE);
        assert_eq!(p("system/Patient.*").permissions, Permissions::ALL);
        assert_eq!(
            p("system/Patient.read").resource_type.as_deref(),
            Some("Patient")
        );
        assert_eq!(p("system/*.read").resource_type, None);
        assert_eq!(p("system/*.read").syntax, Syntax::V1);
    }

    #[test]
    fn capitalised_v1_is_an_alias_v6() {
        let s = p("system/Patient.Read");
        assert_eq!(s, p("system/Patient.read"));
        assert_eq!(s.to_string(), "system/Patient.read");
        assert_eq!(
            p("system/Observation.Write").to_string(),
            "system/Observation.write"
        );
    }

    #[test]
    fn v2_forms_sc2() {
        assert_eq!(
            p("system/*.rs").permissions,
            Permissions::READ.union(Permissions::SEARCH)
        );
        assert_eq!(p("system/Observation.rs").syntax, Syntax::V2);
        assert_eq!(p("system/Patient.cruds").permissions, Permissions::ALL);
        assert_eq!(p("system/Patient.cud").permissions, Permissions::V1_WRITE);
        assert_eq!(p("system/Patient.r").permissions, Permissions::READ);
        assert_eq!(
            p("system/Patient.cruds").to_string(),
            "system/Patient.cruds"
        );
    }

    #[test]
    fn out_of_order_or_unknown_suffixes_are_refused_sc3() {
        for bad in [
            "system/*.dus",
            "system/*.sr",
            "system/*.rr",
            "system/*.",
            "system/*.x",
            "system/*.READS",
            "system/Patient",
            "system/Nonsense.read",
            "system/patient.read",
            "launch",
            "openid",
            "other/Patient.read",
            "system/Observation.rs?category=laboratory",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn user_and_patient_parse_but_are_not_system() {
        assert_eq!(p("user/*.read").context, Context::User);
        assert_eq!(p("patient/Observation.rs").context, Context::Patient);
        assert!(ScopeSet::parse_registered("user/*.read").is_err());
        assert!(ScopeSet::from_token("patient/*.read user/*.rs").is_empty());
    }

    #[test]
    fn allows_by_type_and_permission() {
        let set = ScopeSet::from_token("system/Patient.rs system/Observation.read system/Group.c");
        assert!(set.can_read("Patient"));
        assert!(set.can_read("Observation"));
        assert!(!set.can_read("Encounter"));
        assert!(!set.can_read("Group"));
        assert!(set.allows("Group", Permissions::CREATE));
        assert!(set.allows("Observation", Permissions::SEARCH));
        assert!(!set.allows("Patient", Permissions::UPDATE));
        let all = ScopeSet::from_token("system/*.rs");
        assert!(all.can_read("Anything") && all.can_read("Patient"));
        assert!(!all.allows("Patient", Permissions::DELETE));
    }

    #[test]
    fn grant_is_the_intersection_tk2() {
        assert_eq!(granted("system/*.rs", "system/*.rs"), "system/*.rs");
        assert_eq!(granted("system/*.cruds", "system/*.rs"), "system/*.rs");
        assert_eq!(
            granted("system/*.rs", "system/Patient.rs system/Group.rs"),
            "system/Patient.rs system/Group.rs"
        );
        assert_eq!(
            granted("system/Patient.rs", "system/*.read"),
            "system/Patient.rs"
        );
        assert_eq!(
            granted(
                "system/Patient.rs system/Observation.rs",
                "system/Patient.rs"
            ),
            "system/Patient.rs"
        );
        assert_eq!(granted("system/*.write", "system/*.rs"), "");
        assert_eq!(granted("system/Encounter.rs", "system/Patient.rs"), "");
    }

    #[test]
    fn grant_echoes_v1_when_v1_was_requested_sc3() {
        assert_eq!(granted("system/*.read", "system/*.rs"), "system/*.read");
        assert_eq!(granted("system/*.*", "system/*.rs"), "system/*.read");
        assert_eq!(
            granted("system/*.read", "system/Patient.rs"),
            "system/Patient.read"
        );
        assert_eq!(
            granted("system/Patient.Read", "system/*.cruds"),
            "system/Patient.read"
        );
        // Not expressible in v1: the v2 letters are the honest answer.
        assert_eq!(granted("system/*.*", "system/*.r"), "system/*.r");
    }

    #[test]
    fn grant_refuses_with_reasons() {
        let allowed = ScopeSet::parse_registered("system/*.rs").unwrap();
        let g = grant(
            "user/*.read launch system/*.rs patient/Patient.read",
            &allowed,
        );
        assert_eq!(g.granted.to_string(), "system/*.rs");
        assert_eq!(g.refused.len(), 3);
        assert!(g.refused[0].reason.contains("backend services"));
        let g = grant("system/Encounter.write", &allowed);
        assert!(g.granted.is_empty());
        assert!(g.refused[0].reason.contains("registered"));
    }

    #[test]
    fn grant_dedupes() {
        assert_eq!(
            granted("system/*.rs system/*.rs", "system/*.rs"),
            "system/*.rs"
        );
        assert_eq!(
            granted("system/Patient.read system/Patient.Read", "system/*.rs"),
            "system/Patient.read"
        );
    }

    #[test]
    fn registration_must_be_valid() {
        assert!(ScopeSet::parse_registered("").is_err());
        assert!(ScopeSet::parse_registered("system/*.rs system/*.dus").is_err());
        let set = ScopeSet::parse_registered("system/*.rs  system/Patient.cud").unwrap();
        assert_eq!(set.to_string(), "system/*.rs system/Patient.cud");
    }
}
