//! portcullis: a reverse-proxy auth gateway on pingora. Each request goes through the
//! pipeline of SPEC section 1, one module per stage:
//!
//! `path` (canonical path) → `identity` (strip) → `route` → `token::extract` →
//! `token::verify` with `keys` → `authz` → `identity` (set) → forward (`proxy`).
//!
//! `config` turns the YAML file into a `Policy`; `server` runs it; `admin` and `metrics` serve
//! operations; `demo` is the built-in issuer and echo upstream of `portcullis demo`.

pub mod admin;
pub mod authz;
pub mod config;
pub mod demo;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod response;
pub mod route;
pub mod server;
pub mod token;
