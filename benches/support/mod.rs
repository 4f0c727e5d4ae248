//! Route sets shared by the route and config benchmarks: `n` routes shaped like a gateway's
//! (ten per service: health, read and write trees, `*` segments, a host-bound admin tree, a
//! wildcard-host tree, an exact path), and requests that hit the first, the last, or no route.
#![allow(dead_code)]

/// One route: (host, methods, path pattern, auth).
pub struct Spec {
    pub host: Option<String>,
    pub methods: Option<&'static [&'static str]>,
    pub path: String,
    pub auth: &'static str,
}

pub fn routes(n: usize) -> Vec<Spec> {
    (0..n)
        .map(|i| {
            let s = i / 10;
            let (host, methods, path, auth): (
                Option<String>,
                Option<&'static [&'static str]>,
                String,
                _,
            ) = match i % 10 {
                0 => (None, Some(&["GET"]), format!("/api/svc{s}/health"), "none"),
                1 => (
                    None,
                    Some(&["GET", "HEAD"]),
                    format!("/api/svc{s}/orders/**"),
                    "required",
                ),
                2 => (
                    None,
                    Some(&["POST", "PUT", "DELETE"]),
                    format!("/api/svc{s}/orders/**"),
                    "required",
                ),
                3 => (
                    None,
                    Some(&["GET"]),
                    format!("/api/svc{s}/users/*/profile"),
                    "required",
                ),
                4 => (None, None, format!("/api/svc{s}/users/*"), "required"),
                5 => (
                    Some("admin.example.com".into()),
                    None,
                    format!("/api/svc{s}/admin/**"),
                    "required",
                ),
                6 => (
                    None,
                    Some(&["GET"]),
                    format!("/api/svc{s}/items/*/parts/*"),
                    "optional",
                ),
                7 => (
                    Some(format!("*.svc{s}.example.com")),
                    None,
                    format!("/v2/svc{s}/**"),
                    "required",
                ),
                8 => (None, Some(&["GET"]), format!("/static/svc{s}/**"), "none"),
                _ => (None, None, format!("/api/svc{s}"), "required"),
            };
            Spec {
                host,
                methods,
                path,
                auth,
            }
        })
        .collect()
}

/// (label, host, method, path) of requests: the first route, the last service's item route
/// (the worst case of a linear scan), a wildcard-host route, and a path no route matches.
pub fn requests(n: usize) -> Vec<(&'static str, Option<String>, &'static str, String)> {
    let last = (n - 1) / 10;
    vec![
        (
            "first",
            Some("api.example.com".into()),
            "GET",
            "/api/svc0/health".into(),
        ),
        (
            "last",
            Some("api.example.com".into()),
            "GET",
            format!("/api/svc{last}/items/42/parts/7"),
        ),
        (
            "wildcard_host",
            Some(format!("eu.svc{last}.example.com")),
            "POST",
            format!("/v2/svc{last}/a/b/c"),
        ),
        (
            "none",
            Some("api.example.com".into()),
            "GET",
            "/api/nosuch/thing/7".into(),
        ),
    ]
}

/// A whole config file with these routes and one inline-JWKS issuer.
pub fn config_yaml(n: usize, jwks: &str) -> String {
    let mut y = String::from(
        "listen: 127.0.0.1:0\nupstreams:\n  app: { url: \"http://127.0.0.1:1\" }\nupstream: app\n\
         issuers:\n  main:\n    issuer: \"https://issuer.example/\"\n    audiences: [api://bench]\n    algorithms: [RS256]\n",
    );
    y.push_str(&format!("    jwks: {jwks}\nroutes:\n"));
    for (i, r) in routes(n).iter().enumerate() {
        y.push_str(&format!(
            "  - name: r{i}\n    match: {{ path: \"{}\"",
            r.path
        ));
        if let Some(m) = r.methods {
            y.push_str(&format!(", methods: [{}]", m.join(", ")));
        }
        if let Some(h) = &r.host {
            y.push_str(&format!(", host: \"{h}\""));
        }
        y.push_str(&format!(" }}\n    auth: {}\n", r.auth));
        if r.auth == "required" && i % 3 == 0 {
            y.push_str("    scopes: [read:orders]\n");
        }
    }
    y
}
