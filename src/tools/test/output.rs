//! What `portcullis test` prints: the summary line, the human report and the JSON form.

use super::*;

/// `N passed, M failed`.
pub fn summary(outcomes: &[Outcome]) -> String {
    let failed = outcomes
        .iter()
        .filter(|o| !o.differences.is_empty())
        .count();
    format!("{} passed, {failed} failed", outcomes.len() - failed)
}

/// One line per case, then the summary line.
pub fn human(outcomes: &[Outcome]) -> String {
    let mut o = String::new();
    for case in outcomes {
        if case.differences.is_empty() {
            o.push_str(&format!("ok   {}\n", case.name));
        } else {
            o.push_str(&format!(
                "FAIL {}: {}\n",
                case.name,
                case.differences.join("; ")
            ));
        }
    }
    o.push_str(&summary(outcomes));
    o.push('\n');
    o
}

/// `{"cases": [{"name", "passed", "differences", "status", "route", "reason"}], "passed",
/// "failed"}`.
pub fn json(outcomes: &[Outcome]) -> Value {
    let failed = outcomes
        .iter()
        .filter(|o| !o.differences.is_empty())
        .count();
    let cases: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let e = o.explanation.as_ref();
            json!({
                "name": o.name,
                "passed": o.differences.is_empty(),
                "differences": o.differences,
                "status": e.map(|e| e.status),
                "route": e.and_then(|e| e.route.clone()),
                "reason": e.map(|e| e.reason.clone()),
            })
        })
        .collect();
    json!({"cases": cases, "passed": outcomes.len() - failed, "failed": failed})
}
