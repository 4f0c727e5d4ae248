//! portcullis: a reverse-proxy auth gateway on pingora. One module per pipeline stage:
//!
//! `path` (canonical target) → `route` → `token::extract` → `token` (verification, with
//! `keys`) → `authz` → `identity` (strip and set identity headers).
//!
//! `engine` runs those stages for one request and returns the decision as a value (deny, or
//! forward with these header edits); `response` is the one table from denial to status and
//! body. `proxy` adapts pingora to the engine; `config` turns the YAML file into a `Policy`;
//! `server` runs it and `reload` swaps in a changed file; `admin` and `metrics` serve operations; `demo` is the built-in issuer and
//! echo upstream of `portcullis demo`; `http1` is the small hyper loop admin and demo share.

pub mod access;
pub mod admin;
pub mod authz;
pub mod claims;
pub mod config;
pub mod decision;
pub mod demo;
pub mod engine;
pub mod forwarding;
pub mod http1;
pub mod identity;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod reload;
pub mod response;
pub mod route;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod tools;
pub mod watch;
