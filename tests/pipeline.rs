//! Smoke of the whole pipeline: a real token goes through, none is refused.
mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_is_forwarded_with_identity_headers_and_none_is_refused() {
    let s = setup().await;
    let token = s
        .issuer
        .token(json!({"scope": "read:orders", "email": "a@example.com"}));
    let echo = s.gw.get_bearer("/api/orders/7", &token).await.echo();
    assert_eq!(echo.target, "/api/orders/7");
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    assert_eq!(echo.header("x-auth-email"), Some("a@example.com"));
    assert!(!echo.has("authorization"));

    let refused = s.gw.get("/api/orders/7", &[]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
}
