//! The one builder of portcullis config files for code outside the library: the black-box tests
//! (`tests/common`), the fuzz fixtures (`fuzz/props`) and the load benchmark's config
//! (`benches/mint.rs config`) all write their YAML through it. Plain `std`, so any crate can
//! include this file with `#[path = …] mod config;`.
//!
//! Values are YAML written verbatim (`"1s"`, `"{ cookie: session }"`, `"[acme, 7]"`); names,
//! URLs, paths and hosts are quoted by the builder.
#![allow(dead_code)]

use std::fmt::Write;

/// A whole config file. `Config::new()` listens on `127.0.0.1:0` with the admin listener on
/// `127.0.0.1:0` and holds nothing else.
#[derive(Debug, Clone)]
pub struct Config {
    listen: String,
    /// `None`: `admin_listen: null`.
    admin_listen: Option<String>,
    /// (name, flow-map body).
    upstreams: Vec<(String, String)>,
    default_upstream: Option<String>,
    /// Other top-level keys (`token_sources`, `trusted_proxies`, `log_subject`, …), in order.
    top: Vec<(String, String)>,
    issuers: Vec<IssuerBlock>,
    /// (header, claim) of `identity.headers`.
    identity_headers: Vec<(String, String)>,
    /// Other `identity` keys (`claims_header`, `forward_token`, `strip_prefix`).
    identity: Vec<(String, String)>,
    routes: Vec<Route>,
    limits: Vec<(String, String)>,
    server: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    pub fn new() -> Config {
        Config {
            listen: "127.0.0.1:0".into(),
            admin_listen: Some("127.0.0.1:0".into()),
            upstreams: Vec::new(),
            default_upstream: None,
            top: Vec::new(),
            issuers: Vec::new(),
            identity_headers: Vec::new(),
            identity: Vec::new(),
            routes: Vec::new(),
            limits: Vec::new(),
            server: Vec::new(),
        }
    }

    pub fn listen(mut self, addr: &str) -> Config {
        self.listen = addr.into();
        self
    }

    pub fn admin_listen(mut self, addr: &str) -> Config {
        self.admin_listen = Some(addr.into());
        self
    }

    /// `admin_listen: null`.
    pub fn no_admin(mut self) -> Config {
        self.admin_listen = None;
        self
    }

    /// `upstreams.<name>: { url: "<url>" }`.
    pub fn upstream(self, name: &str, url: &str) -> Config {
        self.upstream_with(name, url, "")
    }

    /// `upstreams.<name>: { url: "<url>", <options> }`; `options` is flow-map text such as
    /// `"connect_timeout: 1s"`.
    pub fn upstream_with(mut self, name: &str, url: &str, options: &str) -> Config {
        let mut body = format!("url: \"{url}\"");
        if !options.is_empty() {
            body.push_str(", ");
            body.push_str(options);
        }
        self.upstreams.push((name.into(), body));
        self
    }

    /// The top-level `upstream:` (default for routes without one).
    pub fn default_upstream(mut self, name: &str) -> Config {
        self.default_upstream = Some(name.into());
        self
    }

    /// A top-level key with a YAML value written verbatim; replaces an earlier one.
    pub fn set(mut self, key: &str, value: &str) -> Config {
        set(&mut self.top, key, value);
        self
    }

    pub fn issuer(mut self, issuer: IssuerBlock) -> Config {
        self.issuers.push(issuer);
        self
    }

    /// Change the issuer block named `name` (panics if there is none).
    pub fn edit_issuer(
        mut self,
        name: &str,
        edit: impl FnOnce(IssuerBlock) -> IssuerBlock,
    ) -> Config {
        let at = self
            .issuers
            .iter()
            .position(|i| i.name == name)
            .unwrap_or_else(|| panic!("no issuer {name} in the config"));
        let issuer = self.issuers.remove(at);
        self.issuers.insert(at, edit(issuer));
        self
    }

    /// `identity.headers.<header>: <claim>`.
    pub fn identity_header(mut self, header: &str, claim: &str) -> Config {
        set(&mut self.identity_headers, header, claim);
        self
    }

    /// Another `identity` key (`claims_header`, `forward_token`, `strip_prefix`).
    pub fn identity(mut self, key: &str, value: &str) -> Config {
        set(&mut self.identity, key, value);
        self
    }

    /// A route after the ones already there.
    pub fn route(mut self, route: Route) -> Config {
        self.routes.push(route);
        self
    }

    /// A route before all the others (routes are tried in file order).
    pub fn route_first(mut self, route: Route) -> Config {
        self.routes.insert(0, route);
        self
    }

    /// `limits.<key>: <value>`.
    pub fn limit(mut self, key: &str, value: &str) -> Config {
        set(&mut self.limits, key, value);
        self
    }

    /// `server.<key>: <value>`.
    pub fn server(mut self, key: &str, value: &str) -> Config {
        set(&mut self.server, key, value);
        self
    }

    /// The YAML text.
    pub fn yaml(&self) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "listen: {}", self.listen);
        match &self.admin_listen {
            Some(addr) => {
                let _ = writeln!(y, "admin_listen: {addr}");
            }
            None => y.push_str("admin_listen: null\n"),
        }
        if !self.upstreams.is_empty() {
            y.push_str("upstreams:\n");
            for (name, body) in &self.upstreams {
                let _ = writeln!(y, "  {name}: {{ {body} }}");
            }
        }
        if let Some(name) = &self.default_upstream {
            let _ = writeln!(y, "upstream: {name}");
        }
        for (key, value) in &self.top {
            let _ = writeln!(y, "{key}: {value}");
        }
        if !self.issuers.is_empty() {
            y.push_str("issuers:\n");
            for issuer in &self.issuers {
                issuer.write(&mut y);
            }
        }
        if !self.identity_headers.is_empty() || !self.identity.is_empty() {
            y.push_str("identity:\n");
            if !self.identity_headers.is_empty() {
                y.push_str("  headers:\n");
                for (header, claim) in &self.identity_headers {
                    let _ = writeln!(y, "    {header}: {claim}");
                }
            }
            for (key, value) in &self.identity {
                let _ = writeln!(y, "  {key}: {value}");
            }
        }
        if !self.routes.is_empty() {
            y.push_str("routes:\n");
            for route in &self.routes {
                route.write(&mut y);
            }
        }
        for (section, pairs) in [("limits", &self.limits), ("server", &self.server)] {
            if !pairs.is_empty() {
                let _ = writeln!(y, "{section}:");
                for (key, value) in pairs {
                    let _ = writeln!(y, "  {key}: {value}");
                }
            }
        }
        y
    }
}

/// One block under `issuers:`.
#[derive(Debug, Clone)]
pub struct IssuerBlock {
    name: String,
    iss: String,
    /// The key source line (`discovery: true`, `jwks_uri: …`, …); HMAC-only issuers have none.
    source: Option<(String, String)>,
    /// Every other key, in order.
    settings: Vec<(String, String)>,
}

impl IssuerBlock {
    /// Issuer block `name` accepting tokens whose `iss` is exactly `iss`.
    pub fn new(name: &str, iss: &str) -> IssuerBlock {
        IssuerBlock {
            name: name.into(),
            iss: iss.into(),
            source: None,
            settings: Vec::new(),
        }
    }

    /// `discovery: true` (replaces any other key source).
    pub fn discovery(mut self) -> IssuerBlock {
        self.source = Some(("discovery".into(), "true".into()));
        self
    }

    /// `jwks_uri: "<url>"` (replaces any other key source).
    pub fn jwks_uri(mut self, url: &str) -> IssuerBlock {
        self.source = Some(("jwks_uri".into(), format!("\"{url}\"")));
        self
    }

    /// `jwks_file: <path>` (replaces any other key source).
    pub fn jwks_file(mut self, path: &str) -> IssuerBlock {
        self.source = Some(("jwks_file".into(), path.into()));
        self
    }

    /// Inline `jwks: <JSON>` (replaces any other key source).
    pub fn jwks(mut self, set: impl std::fmt::Display) -> IssuerBlock {
        self.source = Some(("jwks".into(), set.to_string()));
        self
    }

    /// `allow_http: true`.
    pub fn allow_http(self) -> IssuerBlock {
        self.set("allow_http", "true")
    }

    /// `audiences: ["a", "b"]`.
    pub fn audiences(self, audiences: &[&str]) -> IssuerBlock {
        let list = quoted_list(audiences);
        self.set("audiences", &list)
    }

    /// `algorithms: [RS256, …]`.
    pub fn algorithms(self, algorithms: &[&str]) -> IssuerBlock {
        let list = format!("[{}]", algorithms.join(", "));
        self.set("algorithms", &list)
    }

    /// `hmac_secret_env: <VAR>`.
    pub fn hmac_secret_env(self, var: &str) -> IssuerBlock {
        self.set("hmac_secret_env", var)
    }

    /// Any other key (`leeway`, `refetch_cooldown`, `max_stale`, `required_typ`, …), its YAML
    /// value verbatim; replaces an earlier one.
    pub fn set(mut self, key: &str, value: &str) -> IssuerBlock {
        set(&mut self.settings, key, value);
        self
    }

    fn write(&self, y: &mut String) {
        let _ = writeln!(y, "  {}:\n    issuer: \"{}\"", self.name, self.iss);
        for (key, value) in self.source.iter().chain(&self.settings) {
            let _ = writeln!(y, "    {key}: {value}");
        }
    }
}

/// One entry of `routes:`.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    /// Inside `match: { … }`.
    matching: Vec<(String, String)>,
    settings: Vec<(String, String)>,
}

impl Route {
    /// Route `name` matching `path` (any method, any host, `auth: required`).
    pub fn new(name: &str, path: &str) -> Route {
        Route {
            name: name.into(),
            matching: vec![("path".into(), format!("\"{path}\""))],
            settings: Vec::new(),
        }
    }

    /// `match.methods: [GET, …]`.
    pub fn methods(mut self, methods: &[&str]) -> Route {
        set(
            &mut self.matching,
            "methods",
            &format!("[{}]", methods.join(", ")),
        );
        self
    }

    /// `match.host: "<host>"`.
    pub fn host(mut self, host: &str) -> Route {
        set(&mut self.matching, "host", &format!("\"{host}\""));
        self
    }

    /// `auth: required | optional | none`.
    pub fn auth(self, auth: &str) -> Route {
        self.set("auth", auth)
    }

    /// `scopes: <YAML>` (`"[read:orders]"`, `"{ any_of: [a, b] }"`).
    pub fn scopes(self, scopes: &str) -> Route {
        self.set("scopes", scopes)
    }

    /// `claims: <YAML>` (`"{ /org_id: [acme, globex] }"`).
    pub fn claims(self, claims: &str) -> Route {
        self.set("claims", claims)
    }

    /// Any other key (`issuers`, `upstream`, `mode`), its YAML value verbatim.
    pub fn set(mut self, key: &str, value: &str) -> Route {
        set(&mut self.settings, key, value);
        self
    }

    fn write(&self, y: &mut String) {
        let matching: Vec<String> = self
            .matching
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            y,
            "  - name: {}\n    match: {{ {} }}",
            self.name,
            matching.join(", ")
        );
        for (key, value) in &self.settings {
            let _ = writeln!(y, "    {key}: {value}");
        }
    }
}

/// `["a", "b"]`.
fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Set `key` in an ordered list of pairs: replace its value where it is, or append it.
fn set(pairs: &mut Vec<(String, String)>, key: &str, value: &str) {
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(pair) => pair.1 = value.into(),
        None => pairs.push((key.into(), value.into())),
    }
}
