//! `tls:`: the listener's certificate pair and client CAs, read and checked now (a config that
//! loads is one whose files serve), and the client subject header.

use super::{err, identity, CompileError};
use crate::config::raw::{RawClientAuth, RawTls};
use crate::tls::{pem, ListenerTls};
use std::path::Path;
use std::sync::Arc;

pub(super) fn compile(
    raw: &Option<RawTls>,
    base: &Path,
) -> Result<Option<ListenerTls>, CompileError> {
    let Some(t) = raw else { return Ok(None) };
    let file = |key: &str, value: &str| {
        if value.trim().is_empty() {
            return err(format!("tls.{key}"), "must not be empty");
        }
        Ok(base.join(value))
    };
    let cert_file = file("cert_file", &t.cert_file)?;
    let key_file = file("key_file", &t.key_file)?;
    let pair = pem::load_pair(&cert_file, &key_file).map_err(|e| CompileError {
        path: if e.in_key_file {
            "tls.key_file"
        } else {
            "tls.cert_file"
        }
        .into(),
        message: e.message,
    })?;
    let (client_ca_file, client_cas) = match &t.client_ca_file {
        Some(path) => {
            let path = file("client_ca_file", path)?;
            let roots = pem::load_roots(&path).map_err(|message| CompileError {
                path: "tls.client_ca_file".into(),
                message,
            })?;
            pem::client_verifier(&roots, false).map_err(|message| CompileError {
                path: "tls.client_ca_file".into(),
                message,
            })?;
            (Some(path), Some(Arc::new(roots)))
        }
        None => (None, None),
    };
    let client_auth_optional =
        match t.client_auth {
            Some(RawClientAuth::Optional) if client_cas.is_none() => return err(
                "tls.client_auth",
                "optional needs tls.client_ca_file: without client CAs no certificate is asked for",
            ),
            Some(RawClientAuth::Optional) => true,
            Some(RawClientAuth::Required) | None => false,
        };
    let client_subject_header =
        match &t.client_subject_header {
            Some(_) if client_cas.is_none() => return err(
                "tls.client_subject_header",
                "needs tls.client_ca_file: without client certificates there is no subject to send",
            ),
            Some(name) => Some(identity::header_name("tls.client_subject_header", name)?),
            None => None,
        };
    Ok(Some(ListenerTls {
        cert_file,
        key_file,
        client_ca_file,
        pair: Arc::new(pair),
        client_cas,
        client_auth_optional,
        client_subject_header,
    }))
}
