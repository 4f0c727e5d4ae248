//! A certificate's subject as an RFC 4514 string (`CN=client,O=Example`): the most specific
//! name first, special characters escaped, and anything outside printable ASCII as `\XX`
//! escapes, so that it is always a valid header value.

use x509_parser::der_parser::asn1_rs::{Oid, ToDer};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The RFC 4514 short names; other attribute types are written as dotted OIDs.
fn short_name(oid: &Oid) -> Option<&'static str> {
    use x509_parser::oid_registry::*;
    Some(match oid {
        o if *o == OID_X509_COMMON_NAME => "CN",
        o if *o == OID_X509_LOCALITY_NAME => "L",
        o if *o == OID_X509_STATE_OR_PROVINCE_NAME => "ST",
        o if *o == OID_X509_ORGANIZATION_NAME => "O",
        o if *o == OID_X509_ORGANIZATIONAL_UNIT => "OU",
        o if *o == OID_X509_COUNTRY_NAME => "C",
        o if *o == OID_X509_STREET_ADDRESS => "STREET",
        o if *o == OID_DOMAIN_COMPONENT => "DC",
        o if o.to_id_string() == "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The subject of a DER certificate; `None` if it does not parse.
pub fn of_certificate(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(rfc4514(cert.subject()))
}

/// RFC 4514 string of a distinguished name.
pub fn rfc4514(name: &X509Name) -> String {
    let rdns: Vec<&_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match (short_name(attr.attr_type()), attr.as_str()) {
                (Some(short), Ok(value)) => {
                    out.push_str(short);
                    out.push('=');
                    escape(value, &mut out);
                }
                _ => {
                    // The attribute's whole BER encoding, in hex (RFC 4514 2.4).
                    out.push_str(&attr.attr_type().to_id_string());
                    out.push_str("=#");
                    let ber = attr.attr_value().to_der_vec().unwrap_or_default();
                    for b in ber {
                        out.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    out
}

/// RFC 4514 2.4: `"+,;<>\` and NUL escaped everywhere, a leading `#` or space and a trailing
/// space escaped; every byte outside printable ASCII as `\XX`.
fn escape(value: &str, out: &mut String) {
    let last = value.len().saturating_sub(1);
    for (i, b) in value.bytes().enumerate() {
        match b {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            b'#' if i == 0 => out.push_str("\\#"),
            b' ' if i == 0 || i == last => out.push_str("\\ "),
            0x21..=0x7e | b' ' => out.push(b as char),
            _ => out.push_str(&format!("\\{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(v: &str) -> String {
        let mut out = String::new();
        escape(v, &mut out);
        out
    }

    #[test]
    fn specials_and_non_ascii_are_escaped_into_a_header_safe_string() {
        assert_eq!(escaped("a,b+c"), "a\\,b\\+c");
        assert_eq!(escaped("#x "), "\\#x\\ ");
        assert_eq!(escaped("é\n"), "\\C3\\A9\\0A");
        assert_eq!(escaped("plain name"), "plain name");
    }
}
