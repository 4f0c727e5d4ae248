//! What `portcullis explain` prints: the human and JSON forms of an `Explanation`.

use super::*;

impl Explanation {
    /// The JSON form: `route`, `status`, `reason`, `upstream`, `upstream_headers`, and the
    /// steps.
    pub fn json(&self) -> Value {
        json!({
            "route": self.route,
            "status": self.status,
            "reason": self.reason,
            "upstream": self.upstream,
            "upstream_headers": self.upstream_headers,
            "description": self.description,
            "shadow_denial": self.shadow.as_ref().map(|(status, reason)| json!({"status": status, "reason": reason})),
            "request": {"method": self.method, "target": self.target, "host": self.host},
            "path": self.path.as_ref().ok(),
            "refused": self.path.as_ref().err(),
            "routes_tried": self.routes.iter().map(|t| json!({
                "route": t.name, "line": t.line, "matched": t.miss.is_none(), "miss": t.miss,
            })).collect::<Vec<_>>(),
            "token": self.token,
            "rules": self.rules.iter().map(|r| json!({"rule": r.rule, "pass": r.pass})).collect::<Vec<_>>(),
        })
    }

    /// The human form, one step per paragraph.
    pub fn human(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!(
            "request: {} {}{}\n",
            self.method,
            self.target,
            self.host
                .as_ref()
                .map_or(String::new(), |h| format!(" (Host: {h})"))
        ));
        match &self.path {
            Ok(p) => o.push_str(&format!(
                "1. path: {p} (canonical: matched and forwarded)\n"
            )),
            Err(e) => o.push_str(&format!("1. path: {e}\n")),
        }
        if self.routes.is_empty() && self.path.is_err() {
            o.push_str("2. routes: not tried\n");
        } else {
            o.push_str("2. routes, in file order (the first match wins):\n");
            for t in &self.routes {
                match t.miss {
                    Some(m) => o.push_str(&format!(
                        "   - {} (line {}): no, {m} does not match\n",
                        t.name, t.line
                    )),
                    None => o.push_str(&format!("   - {} (line {}): matches\n", t.name, t.line)),
                }
            }
            if self.route.is_none() {
                o.push_str("   no route matches\n");
            }
        }
        if !self.token.is_empty() {
            o.push_str("3. token:\n");
            for line in &self.token {
                o.push_str(&format!("   - {line}\n"));
            }
        }
        if !self.rules.is_empty() {
            o.push_str("4. rules:\n");
            for r in &self.rules {
                let verdict = if r.pass { "pass" } else { "FAIL" };
                o.push_str(&format!("   - {}: {verdict}\n", r.rule));
            }
        }
        if let Some(upstream) = &self.upstream {
            o.push_str(&format!("5. headers to upstream {upstream:?}:\n"));
            for (name, value) in &self.upstream_headers {
                o.push_str(&format!("   {name}: {value}\n"));
            }
        }
        let route = self
            .route
            .as_ref()
            .map_or(String::new(), |r| format!(" on route {r:?}"));
        match &self.upstream {
            Some(u) => {
                o.push_str(&format!(
                    "decision: forwarded to {u:?}{route} ({})\n",
                    self.reason
                ));
                if let Some((status, reason)) = &self.shadow {
                    o.push_str(&format!(
                        "          mode: shadow: under mode: enforce it would be {status} {reason}\n"
                    ));
                }
            }
            None => o.push_str(&format!(
                "decision: {} {}{route} ({})\n",
                self.status,
                self.reason,
                self.description.as_deref().unwrap_or_default()
            )),
        }
        o
    }
}
