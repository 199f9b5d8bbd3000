//! The bucketed listing (protocol 1.2, docs/http-protocol.md#bucketed-listing): `GET /buckets`
//! answers the hash of every non-empty bucket, `GET /hashes?buckets=…` the entries of some
//! buckets, both from the kept snapshot of the store's map (`hashes`), with its root as `ETag`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hypertask_core::{in_buckets, ContentHash, TaskId};

use super::hashes::{fresh, hashes_answer, known_root};
use super::{ApiError, AppState, Shared};
use crate::wire::{parse_bucket_list, BucketsDoc, BUCKETS_PARAM};

/// `GET /buckets`: `{"depth": d, "buckets": {"<prefix>": "<hash>", …}}` with `ETag: "<root>"`;
/// `304` to a matching `If-None-Match`.
pub(super) async fn buckets(State(st): Shared, headers: HeaderMap) -> Response {
    let snapshot = match fresh(&st, &headers, known_root(&headers).as_ref()).await {
        Ok(snapshot) => snapshot,
        Err(answer) => return answer,
    };
    let grouped = snapshot.grouped().await;
    let doc = BucketsDoc {
        depth: grouped.depth,
        buckets: grouped.hashes.clone(),
    };
    hashes_answer(&st, Json(doc).into_response(), snapshot.root())
}

/// `GET /hashes?buckets=<prefix>,…`: the entries of those buckets (one depth, at most
/// [`crate::wire::MAX_QUERY_BUCKETS`]; else `400`).
pub(super) async fn filtered(st: &AppState, headers: &HeaderMap, list: &str) -> Response {
    let asked = match parse_bucket_list(list) {
        Ok(asked) => asked,
        Err(message) => return ApiError::bad_request(message).into_response(),
    };
    let snapshot = match fresh(st, headers, known_root(headers).as_ref()).await {
        Ok(snapshot) => snapshot,
        Err(answer) => return answer,
    };
    let grouped = snapshot.grouped().await;
    if asked.first().is_some_and(|b| b.depth() == grouped.depth) {
        let hashes: BTreeMap<&TaskId, &ContentHash> = asked
            .iter()
            .filter_map(|b| grouped.members.get(b))
            .flatten()
            .filter_map(|id| snapshot.hashes.get_key_value(id))
            .collect();
        return hashes_answer(st, Json(hashes).into_response(), snapshot.root());
    }
    // A client that learnt another depth from an earlier answer: filter the whole map, off
    // the reactor (a SHA-256 per id).
    let all = snapshot.clone();
    match tokio::task::spawn_blocking(move || in_buckets(&all.hashes, &asked)).await {
        Ok(hashes) => hashes_answer(st, Json(hashes).into_response(), snapshot.root()),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("filtering the listing failed: {e}"),
        )
        .into_response(),
    }
}

/// The value of the `buckets` parameter of a query string, when it has one.
pub(super) fn param(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(BUCKETS_PARAM)?.strip_prefix('='))
}
