//! Authentication: `Authorization: Bearer <token>` (or the original `hypertask <token>`),
//! compared as SHA-256 digests in constant time; a `401` says which part was wrong.

use axum::extract::{Request, State};
use axum::http::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hypertask_core::ContentHash;
use subtle::ConstantTimeEq;

use super::{ApiError, Shared};

/// Accepts `Authorization: Bearer <token>` and the original `Authorization: hypertask <token>`.
pub(super) async fn authenticate(State(st): Shared, req: Request, next: Next) -> Response {
    if let Some(expected) = &st.token_digest {
        match presented_digest(req.headers()) {
            Err(why) => return unauthorized(why),
            Ok(digest) if !same_digest(&digest, expected) => return unauthorized("wrong token"),
            Ok(_) => {}
        }
    }
    next.run(req).await
}

/// The SHA-256 of the token a request presents, or why it presents none (for a `401`).
pub(super) fn presented_digest(headers: &HeaderMap) -> Result<ContentHash, &'static str> {
    let header = headers.get(AUTHORIZATION);
    match header
        .and_then(|v| v.to_str().ok())
        .and_then(presented_token)
    {
        None if header.is_none() => {
            Err("missing `Authorization` header; send `Authorization: Bearer <token>`")
        }
        None => Err("unsupported `Authorization` header; send `Authorization: Bearer <token>`"),
        // A configured empty token matches no request.
        Some("") => Err("wrong token"),
        Some(t) => Ok(digest_of(t)),
    }
}

/// The digest a token is compared by.
pub(super) fn digest_of(token: &str) -> ContentHash {
    ContentHash::of_bytes(token.as_bytes())
}

/// Whether two token digests are equal, in constant time.
pub(super) fn same_digest(a: &ContentHash, b: &ContentHash) -> bool {
    a.as_str().as_bytes().ct_eq(b.as_str().as_bytes()).into()
}

/// A `401` answer.
pub(super) fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"hypertask\""),
    );
    resp
}

/// The token of an `Authorization` value with the `Bearer` or `hypertask` scheme.
fn presented_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("hypertask"))
        .then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_schemes() {
        assert_eq!(presented_token("Bearer abc"), Some("abc"));
        assert_eq!(presented_token("bearer  abc "), Some("abc"));
        assert_eq!(presented_token("hypertask abc"), Some("abc"));
        assert_eq!(presented_token("Basic abc"), None);
        assert_eq!(presented_token("abc"), None);
    }
}
