//! Assertions on the replies the gateway writes itself (docs/behaviour.md, "Responses the gateway writes itself"): one definition of their
//! shape, `check_denied`, that every test file and the adversarial tables use.
use super::Response;

/// The realm of every `WWW-Authenticate` challenge.
pub const REALM: &str = "portcullis";

/// Is `r` the gateway's own refusal with this status and `error` code? Checks, besides those two:
/// a JSON body with a non-empty `error_description`, `Content-Type: application/json`,
/// `Cache-Control: no-store`; for 401 a `WWW-Authenticate: Bearer realm="portcullis"` challenge,
/// bare for `missing_token` and with `error="invalid_token"` otherwise (a `DPoP algs="…"`
/// challenge with the error for `invalid_dpop_proof` and `use_dpop_nonce`); for 403
/// `Bearer realm="portcullis", error="insufficient_scope"…`; no challenge on any other status;
/// and a `Retry-After` of at least one second on a 503. `Err` says what differs (with the
/// request that got `r`, when known).
pub fn check_denied(r: &Response, status: u16, error: &str) -> Result<(), String> {
    let problem = denial_problem(r, status, error);
    match problem {
        None => Ok(()),
        Some(why) if r.request.is_empty() => Err(why),
        Some(why) => Err(format!("{why}\n  request: {}", r.request)),
    }
}

fn denial_problem(r: &Response, status: u16, error: &str) -> Option<String> {
    let body = String::from_utf8_lossy(&r.body);
    if r.status != status {
        return Some(format!(
            "expected {status} {error}, got {}: {body}",
            r.status
        ));
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&r.body) else {
        return Some(format!("not the gateway's JSON reply: {body:?}"));
    };
    if json["error"] != error {
        return Some(format!("error {}, not {error}: {body}", json["error"]));
    }
    if json["error_description"].as_str().is_none_or(str::is_empty) {
        return Some(format!("no error_description: {body}"));
    }
    let header = |name: &str| r.header(name).unwrap_or_default();
    if header("content-type") != "application/json" || header("cache-control") != "no-store" {
        return Some(format!("reply headers: {:?}", r.headers));
    }
    let challenge = r.header("www-authenticate");
    let bare = format!("Bearer realm=\"{REALM}\"");
    let fits = match (status, challenge) {
        (401, Some(c)) if error == "missing_token" => c == bare,
        // RFC 9449 section 7.1: a DPoP challenge naming the accepted algorithms.
        (401, Some(c)) if error == "invalid_dpop_proof" || error == "use_dpop_nonce" => {
            c.starts_with("DPoP algs=\"") && c.contains(&format!("error=\"{error}\""))
        }
        (401, Some(c)) => {
            c.starts_with(&format!("{bare}, ")) && c.contains("error=\"invalid_token\"")
        }
        (403, Some(c)) => c.starts_with(&format!("{bare}, error=\"insufficient_scope\"")),
        (401 | 403, None) => false,
        (_, challenge) => challenge.is_none(),
    };
    if !fits {
        return Some(format!("{status} {error} with challenge {challenge:?}"));
    }
    if status == 503 {
        let retry = r.header("retry-after");
        if !retry.is_some_and(|v| v.parse::<u64>().is_ok_and(|secs| secs >= 1)) {
            return Some(format!("503 with Retry-After {retry:?}"));
        }
    }
    None
}

/// Panics unless `r` is the gateway's own refusal with this status and `error` code, in the
/// shape `check_denied` describes.
#[track_caller]
pub fn assert_denied(r: &Response, status: u16, error: &str) {
    if let Err(why) = check_denied(r, status, error) {
        panic!("{why}");
    }
}

/// A 401 `invalid_token` whose `error_description`, in the body and in the challenge, is exactly
/// `description`.
#[track_caller]
pub fn assert_refused_as(r: &Response, description: &str) {
    assert_denied(r, 401, "invalid_token");
    assert_eq!(
        r.json()["error_description"],
        description,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    let challenge = format!(
        "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
    );
    assert_eq!(r.header("www-authenticate"), Some(challenge.as_str()));
}

/// The reply's `error_description`.
pub fn description(r: &Response) -> String {
    r.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The upstream got the request, for the test issuers' `user-1`.
#[track_caller]
pub fn assert_forwarded(r: &Response) {
    assert_eq!(r.echo().header("x-auth-subject"), Some("user-1"));
}
