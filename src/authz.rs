//! Authorisation: a route's `scopes` and `claims` rules against verified claims. Pure.

use crate::claims::{ClaimRef, ScopeSet};
use serde_json::Value;

/// A route's `scopes:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRule {
    /// No scope needed.
    Nothing,
    /// Every scope listed (`scopes: [a, b]` or `{ all_of: [a, b] }`).
    AllOf(Vec<String>),
    /// At least one of them (`{ any_of: [a, b] }`).
    AnyOf(Vec<String>),
}

impl ScopeRule {
    pub fn allows(&self, scopes: &ScopeSet) -> bool {
        match self {
            ScopeRule::Nothing => true,
            ScopeRule::AllOf(want) => want.iter().all(|s| scopes.contains(s)),
            ScopeRule::AnyOf(want) => want.iter().any(|s| scopes.contains(s)),
        }
    }

    /// The `scope="…"` value of a 403's `WWW-Authenticate`; `None` when the rule needs none.
    pub fn challenge(&self) -> Option<String> {
        match self {
            ScopeRule::Nothing => None,
            ScopeRule::AllOf(s) | ScopeRule::AnyOf(s) => Some(s.join(" ")),
        }
    }
}

/// What a claim must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Exactly this boolean.
    Bool(bool),
    /// One of these values; for an array claim, any element equal to one of them.
    OneOf(Vec<Value>),
}

/// A route's `claims:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRule {
    pub claim: ClaimRef,
    pub expect: Expect,
}

impl ClaimRule {
    pub fn allows(&self, claims: &Value) -> bool {
        let Some(value) = self.claim.lookup(claims) else {
            return false;
        };
        match &self.expect {
            Expect::Bool(b) => value.as_bool() == Some(*b),
            Expect::OneOf(allowed) => match value {
                Value::Array(items) => items.iter().any(|v| allowed.contains(v)),
                v => allowed.contains(v),
            },
        }
    }
}

/// Which of a route's rules a token does not meet. Both carry the route's scopes for the
/// 403 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The `scopes:` rule.
    Scopes(Option<String>),
    /// One of the `claims:` rules.
    Claim(Option<String>),
}

/// Every rule of a route holds for these claims and scopes; the scope rule is judged first.
pub fn authorise(
    scopes: &ScopeRule,
    claim_rules: &[ClaimRule],
    claims: &Value,
    set: &ScopeSet,
) -> Result<(), Unmet> {
    if !scopes.allows(set) {
        return Err(Unmet::Scopes(scopes.challenge()));
    }
    if !claim_rules.iter().all(|r| r.allows(claims)) {
        return Err(Unmet::Claim(scopes.challenge()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(names: &[&str]) -> Vec<ClaimRef> {
        names.iter().map(|n| ClaimRef::parse(n).unwrap()).collect()
    }

    #[test]
    fn scope_set_is_the_union_of_scope_scp_and_permissions() {
        let claims = json!({"scope": "a b", "scp": ["c"], "permissions": ["d", "a"]});
        let set = ScopeSet::from_claims(&claims, &refs(&["scope", "scp", "permissions"]));
        assert_eq!(set.joined(), "a b c d");
        let only_scope = ScopeSet::from_claims(&claims, &refs(&["scope"]));
        assert!(!only_scope.contains("c"));
    }

    #[test]
    fn any_of_and_all_of() {
        let set = ScopeSet::from_claims(&json!({"scope": "a b"}), &refs(&["scope"]));
        assert!(ScopeRule::AllOf(vec!["a".into(), "b".into()]).allows(&set));
        assert!(!ScopeRule::AllOf(vec!["a".into(), "c".into()]).allows(&set));
        assert!(ScopeRule::AnyOf(vec!["c".into(), "b".into()]).allows(&set));
        assert!(!ScopeRule::AnyOf(vec!["c".into()]).allows(&set));
    }

    #[test]
    fn claim_rules_use_names_pointers_and_array_elements() {
        let claims = json!({"org_id": "acme", "https://example.com/roles": ["x", "admin"], "email_verified": true});
        let rule = |name: &str, expect: Expect| ClaimRule {
            claim: ClaimRef::parse(name).unwrap(),
            expect,
        };
        assert!(rule("org_id", Expect::OneOf(vec![json!("acme")])).allows(&claims));
        assert!(!rule("/org_id", Expect::OneOf(vec![json!("globex")])).allows(&claims));
        assert!(rule(
            "/https:~1~1example.com~1roles",
            Expect::OneOf(vec![json!("admin")])
        )
        .allows(&claims));
        assert!(rule("email_verified", Expect::Bool(true)).allows(&claims));
        assert!(!rule("email_verified", Expect::Bool(false)).allows(&claims));
        assert!(!rule("missing", Expect::Bool(false)).allows(&claims));
    }

    #[test]
    fn authorise_names_the_rule_that_failed() {
        let set = ScopeSet::from_claims(&json!({"scope": "a"}), &refs(&["scope"]));
        let claims = json!({"org": "acme"});
        let need_b = ScopeRule::AllOf(vec!["b".into()]);
        let org = |v: &str| ClaimRule {
            claim: ClaimRef::parse("org").unwrap(),
            expect: Expect::OneOf(vec![json!(v)]),
        };
        assert_eq!(
            authorise(&need_b, &[org("acme")], &claims, &set),
            Err(Unmet::Scopes(Some("b".into())))
        );
        assert_eq!(
            authorise(&ScopeRule::Nothing, &[org("globex")], &claims, &set),
            Err(Unmet::Claim(None))
        );
        assert_eq!(
            authorise(&ScopeRule::Nothing, &[org("acme")], &claims, &set),
            Ok(())
        );
    }
}
