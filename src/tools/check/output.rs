//! What `portcullis check` prints: the human form (stdout and stderr) and the JSON form of a
//! `Report`.

use super::*;

impl Report {
    /// The human form: (stdout, stderr).
    pub fn human(&self) -> (String, String) {
        let mut out = String::new();
        let mut err = String::new();
        if let Some(e) = &self.error {
            err.push_str(&format!("error: {}\n", e.error));
        }
        if let Some((routes, issuers, upstreams)) = self.counts {
            let failing = self.warnings.iter().filter(|w| w.fails).count();
            let mut tally = String::new();
            if failing > 0 {
                tally.push_str(&format!(", {}", count(failing, "error")));
            }
            if self.warnings.len() > failing {
                tally.push_str(&format!(
                    ", {}",
                    count(self.warnings.len() - failing, "warning")
                ));
            }
            let verdict = if failing > 0 {
                "loads, but check refuses it"
            } else {
                "ok"
            };
            out.push_str(&format!(
                "{}: {verdict} ({}, {}, {}){tally}\n",
                self.file,
                count(routes, "route"),
                count(issuers, "issuer"),
                count(upstreams, "upstream"),
            ));
        }
        for w in &self.warnings {
            let subject = match &w.route {
                Some(name) => format!("route {name:?}"),
                None => w.path.clone(),
            };
            let label = if w.fails { "error" } else { "warning" };
            out.push_str(&format!(
                "{label}: {}:{}: {subject}: {}\n",
                self.file, w.line, w.message
            ));
        }
        for s in &self.skipped {
            out.push_str(&format!(
                "skipped: {}:{}: {}: {}\n",
                self.file, s.line, s.path, s.message
            ));
        }
        (out, err)
    }

    /// `{"errors": [...], "warnings": [{"route", "line", "message", "path"}], "skipped": [...]}`.
    pub fn json(&self) -> Value {
        let mut errors: Vec<Value> = self
            .error
            .iter()
            .map(|e| match &e.error {
                ConfigError::Invalid {
                    file,
                    line,
                    column,
                    path,
                    message,
                } => json!({
                    "route": e.route, "file": file, "line": line, "column": column,
                    "path": path, "message": message,
                }),
                read @ ConfigError::Read { file, .. } => json!({
                    "route": null, "file": file, "line": null, "column": null, "path": null,
                    "message": read.to_string(),
                }),
            })
            .collect();
        // Findings that fail `check` are errors of a config that loads: no column.
        errors.extend(self.warnings.iter().filter(|w| w.fails).map(|w| {
            json!({
                "route": w.route, "file": self.file, "line": w.line, "column": null,
                "path": w.path, "message": w.message,
            })
        }));
        let warnings: Vec<Value> = self
            .warnings
            .iter()
            .filter(|w| !w.fails)
            .map(
                |w| json!({"route": w.route, "line": w.line, "message": w.message, "path": w.path}),
            )
            .collect();
        let skipped: Vec<Value> = self
            .skipped
            .iter()
            .map(|s| json!({"path": s.path, "line": s.line, "message": s.message}))
            .collect();
        json!({"file": self.file, "errors": errors, "warnings": warnings, "skipped": skipped})
    }
}
