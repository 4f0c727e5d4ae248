//! Target `config`: parse and compile arbitrary YAML.
use portcullis::config::{ConfigError, Policy};
use std::path::Path;

/// Does a config name a file outside the (non-existent) base directory? Compile reads
/// `jwks_file`; an absolute path could name /dev/zero or a FIFO and hang the fuzzer. Keys can
/// only be spelled `jwks_file` literally or through a double-quoted escape.
fn names_absolute_file(text: &str) -> bool {
    if !text.contains("jwks_file") && !text.contains('\\') {
        return false;
    }
    fn walk(v: &serde_yaml_ng::Value) -> bool {
        use serde_yaml_ng::Value as Y;
        match v {
            Y::String(s) => s.starts_with('/') || s.starts_with('~'),
            Y::Sequence(items) => items.iter().any(walk),
            Y::Mapping(m) => m.iter().any(|(k, v)| walk(k) || walk(v)),
            Y::Tagged(t) => walk(&t.value),
            _ => false,
        }
    }
    // Unparseable YAML never reaches compile.
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).is_ok_and(|v| walk(&v))
}

/// Input: the YAML text (UTF-8).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_config(text);
    }
}

pub fn check_config(text: &str) {
    if names_absolute_file(text) {
        return;
    }
    // Relative jwks_file paths resolve under a directory that does not exist.
    let base = Path::new("portcullis-fuzz-no-such-dir");
    match portcullis::config::from_str(text, "fuzz.yaml", base) {
        Err(ConfigError::Read { .. }) => panic!("from_str gave a Read error"),
        Err(ConfigError::Invalid {
            file,
            line,
            column,
            path,
            message,
        }) => {
            let at = format!("{file}:{line}:{column}: {path}: {message}");
            assert_eq!(file, "fuzz.yaml", "{at}");
            assert!(line >= 1 && column >= 1, "error position not 1-based: {at}");
            assert!(!path.is_empty(), "error without a key path: {at}");
            assert!(!message.is_empty(), "error without a message: {at}");
            // Every line break YAML knows: LF, CR LF, a lone CR, NEL, LS, PS.
            let lines = 1 + text
                .replace("\r\n", "\n")
                .matches(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
                .count();
            assert!(
                line <= lines + 1,
                "error line past the end ({lines} lines): {at}"
            );
        }
        Ok(policy) => compiled_policy_properties(&policy),
    }
}

/// A config that compiles is a config that works.
fn compiled_policy_properties(policy: &Policy) {
    let routes = policy.routes.routes();
    assert!(!routes.is_empty(), "a policy without routes");
    for r in routes {
        assert!(
            r.upstream < policy.upstreams.len(),
            "route {} upstream out of range",
            r.name
        );
        if let Some(list) = &r.issuers {
            assert!(!list.is_empty() && list.iter().all(|&i| i < policy.issuers.len()));
        }
    }
    assert_eq!(policy.issuers.len(), policy.keys.len());
    assert_eq!(policy.issuer_by_iss.len(), policy.issuers.len());
    for (i, rules) in policy.issuers.iter().enumerate() {
        assert_eq!(policy.issuer_by_iss.get(&rules.issuer), Some(&i));
        assert!(!rules.audiences.is_empty() && !rules.algorithms.is_empty());
        if rules
            .algorithms
            .iter()
            .any(|a| format!("{a:?}").starts_with("HS"))
        {
            assert!(
                rules.hmac.is_some(),
                "issuer {} allows HS* without a secret",
                rules.name
            );
        }
    }
    let store = portcullis::live::key_store(policy);
    for (i, plan) in policy.keys.iter().enumerate() {
        if plan.inline.is_some() {
            assert!(
                store.issuer(i).current().is_some(),
                "inline jwks of issuer {i} compiled but yields no key set"
            );
        }
        if plan.hmac_only {
            assert!(policy.issuers[i].hmac.is_some());
        }
    }
    for (name, _) in &policy.identity.headers {
        assert!(
            !matches!(
                name.as_str(),
                "host" | "authorization" | "cookie" | "x-request-id"
            ),
            "identity header {name} overrides a managed header"
        );
    }
}
