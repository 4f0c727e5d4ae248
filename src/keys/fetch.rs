//! Outbound HTTP for key sets: OIDC discovery and JWKS documents, with timeouts, a body cap,
//! `Cache-Control: max-age` and `ETag` revalidation. The only outbound HTTP of the gateway.

use super::set::{KeySet, KeySetError};
use super::KeySource;
use std::time::Duration;

/// Limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_keys: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            connect_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_keys: 100,
        }
    }
}

/// What a failed fetch was; also the `result` label of the refresh metric.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP error: {0}")]
    Http(String),
    #[error("timed out")]
    Timeout,
    #[error("invalid document: {0}")]
    Invalid(String),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

impl FetchError {
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Http(_) => "http_error",
            FetchError::Timeout => "timeout",
            FetchError::Invalid(_) => "invalid",
            FetchError::TooLarge(_) => "too_large",
        }
    }
}

impl From<KeySetError> for FetchError {
    fn from(e: KeySetError) -> Self {
        FetchError::Invalid(e.to_string())
    }
}

/// A successful fetch.
pub enum Fetched {
    /// A new set, with the warnings of skipped keys and the response's `max-age`.
    Keys {
        set: KeySet,
        warnings: Vec<String>,
        max_age: Option<Duration>,
        etag: Option<String>,
    },
    /// `304 Not Modified`: the set held is still current.
    NotModified { max_age: Option<Duration> },
}

/// Fetches one issuer's keys.
pub struct Fetcher {
    client: reqwest::Client,
    limits: FetchLimits,
    allow_http: bool,
}

impl Fetcher {
    pub fn new(limits: FetchLimits, allow_http: bool) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.total_timeout)
            .https_only(!allow_http)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Http(e.to_string()))?;
        Ok(Fetcher {
            client,
            limits,
            allow_http,
        })
    }

    /// Fetch the source's current key set. `etag` is the one of the set held, if any.
    pub async fn fetch(
        &self,
        source: &KeySource,
        etag: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        match source {
            KeySource::File(path) => {
                let body = tokio::fs::read(path).await.map_err(|e| {
                    FetchError::Invalid(format!("cannot read {}: {}", path.display(), e.kind()))
                })?;
                if body.len() > self.limits.max_body_bytes {
                    return Err(FetchError::TooLarge(self.limits.max_body_bytes));
                }
                let (set, warnings) = KeySet::parse(&body, self.limits.max_keys)?;
                Ok(Fetched::Keys {
                    set,
                    warnings,
                    max_age: None,
                    etag: None,
                })
            }
            KeySource::JwksUri(uri) => self.fetch_jwks(uri, etag).await,
            KeySource::Discovery { issuer } => {
                let uri = self.discover(issuer).await?;
                self.fetch_jwks(&uri, etag).await
            }
        }
    }

    /// OIDC discovery: the document's `issuer` must equal ours exactly, and its `jwks_uri` must
    /// obey the same https rule as a configured one.
    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (body, _, _) = self.get(&url, None).await?;
        let body = body.ok_or_else(|| FetchError::Invalid("discovery answered 304".into()))?;
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| FetchError::Invalid("discovery document is not JSON".into()))?;
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(FetchError::Invalid(
                "discovery document names another issuer".into(),
            ));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| FetchError::Invalid("discovery document has no jwks_uri".into()))?;
        if !(uri.starts_with("https://") || self.allow_http && uri.starts_with("http://")) {
            return Err(FetchError::Invalid(
                "discovery jwks_uri is not https".into(),
            ));
        }
        Ok(uri.to_string())
    }

    async fn fetch_jwks(&self, uri: &str, etag: Option<&str>) -> Result<Fetched, FetchError> {
        let (body, max_age, new_etag) = self.get(uri, etag).await?;
        let Some(body) = body else {
            return Ok(Fetched::NotModified { max_age });
        };
        let (set, warnings) = KeySet::parse(&body, self.limits.max_keys)?;
        Ok(Fetched::Keys {
            set,
            warnings,
            max_age,
            etag: new_etag,
        })
    }

    /// GET with the body cap. `Ok((None, …))` on 304.
    async fn get(
        &self,
        url: &str,
        etag: Option<&str>,
    ) -> Result<(Option<Vec<u8>>, Option<Duration>, Option<String>), FetchError> {
        let mut req = self.client.get(url).header("accept", "application/json");
        if let Some(tag) = etag {
            req = req.header("if-none-match", tag);
        }
        let mut resp = req.send().await.map_err(classify)?;
        let status = resp.status();
        let headers = resp.headers();
        let max_age = headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        let new_etag = headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok((None, max_age, None));
        }
        if !status.is_success() {
            return Err(FetchError::Http(format!("status {}", status.as_u16())));
        }
        let cap = self.limits.max_body_bytes;
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(FetchError::TooLarge(cap));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > cap {
                return Err(FetchError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((Some(body), max_age, new_etag))
    }
}

fn classify(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Http(e.without_url().to_string())
    }
}

/// `max-age=N` of a `Cache-Control` value; `no-store`/`no-cache` count as 0.
pub fn parse_max_age(value: &str) -> Option<Duration> {
    let mut out = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            out = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_max_age;
    use std::time::Duration;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            parse_max_age("public, max-age=3600"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
    }
}
