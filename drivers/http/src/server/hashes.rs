//! `GET /hashes` (docs/http-protocol.md): the store's id → hash map with its root as `ETag`,
//! `304` to a matching `If-None-Match`, held when it is a long poll; with `?buckets=…`, the
//! entries of those buckets only (`buckets`).
//!
//! Answers come from the last listing of the store, a [`Snapshot`] kept while the store's
//! root stays the same: a store that keeps its root tells that in O(1), so neither the map nor
//! its bucket hashes are rebuilt for each request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Extension, RawQuery, State};
use axum::http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hypertask_core::{
    bucket_hashes, root_hash, Bucket, BucketHashes, ContentHash, Depth, Hashes, Listing, TaskId,
};

use super::long_poll::{self, Hold};
use super::{buckets, ApiError, AppState, Shared};
use crate::wire::{
    tag_root, BUCKETS_HEADER, LONG_POLL_HEADER, MAX_BATCH_HEADER, MAX_BODY_HEADER, PROTOCOL_HEADER,
    PROTOCOL_VERSIONS_HEADER,
};

/// The store's map as last listed, and its root.
pub(super) struct Snapshot {
    pub(super) root: ContentHash,
    pub(super) hashes: Hashes,
    /// The map by bucket, computed on first use.
    grouped: OnceLock<Grouped>,
}

/// A snapshot's map by bucket, at the depth chosen for its size.
pub(super) struct Grouped {
    pub(super) depth: Depth,
    /// Each non-empty bucket's hash.
    pub(super) hashes: BucketHashes,
    /// The ids in each non-empty bucket.
    pub(super) members: BTreeMap<Bucket, Vec<TaskId>>,
}

impl Snapshot {
    fn new(hashes: Hashes) -> Snapshot {
        Snapshot {
            root: root_hash(&hashes),
            hashes,
            grouped: OnceLock::new(),
        }
    }

    /// The map by bucket, grouped off the reactor the first time (a SHA-256 per id).
    pub(super) async fn grouped(self: &Arc<Self>) -> &Grouped {
        if self.grouped.get().is_none() {
            let me = self.clone();
            // A failed task leaves the work to the line below.
            let _ = tokio::task::spawn_blocking(move || {
                me.grouped.get_or_init(|| Grouped::of(&me.hashes));
            })
            .await;
        }
        self.grouped.get_or_init(|| Grouped::of(&self.hashes))
    }
}

impl Grouped {
    fn of(hashes: &Hashes) -> Grouped {
        let depth = Depth::for_tasks(hashes.len());
        let mut members: BTreeMap<Bucket, Vec<TaskId>> = BTreeMap::new();
        for id in hashes.keys() {
            members
                .entry(Bucket::of(id, depth))
                .or_default()
                .push(id.clone());
        }
        Grouped {
            depth,
            hashes: bucket_hashes(hashes, depth),
            members,
        }
    }
}

/// The last snapshot this server took.
#[derive(Default)]
pub(super) struct Snapshots(Mutex<Option<Arc<Snapshot>>>);

impl Snapshots {
    fn kept(&self) -> Option<Arc<Snapshot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn keep(&self, snapshot: Arc<Snapshot>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    }
}

/// What the store holds now.
enum Current {
    /// Its root is the client's, and no snapshot was needed to tell.
    Unchanged(ContentHash),
    /// A snapshot of its map.
    Listed(Arc<Snapshot>),
}

/// The store's current map: the kept snapshot when the store's root is still its root, else a
/// new listing (kept for the next request). Without a snapshot, a store that keeps its root
/// answers the client's `known` root without listing.
async fn current(st: &AppState, known: Option<&ContentHash>) -> Result<Current, ApiError> {
    let kept = st.snapshots.kept();
    let ask = kept.as_ref().map(|s| &s.root).or(known);
    match st.store.hashes(ask).await {
        Ok(Listing::Unchanged) => match (kept, known) {
            (Some(snapshot), _) => Ok(Current::Listed(snapshot)),
            (None, Some(root)) => Ok(Current::Unchanged(root.clone())),
            (None, None) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store did not list its tasks",
            )),
        },
        Ok(Listing::Changed(inventory)) => {
            for p in &inventory.problems {
                tracing::warn!(error = %p.error, "stored entry is not a valid task; left out of /hashes");
            }
            let snapshot = Arc::new(Snapshot::new(inventory.hashes));
            st.snapshots.keep(snapshot.clone());
            Ok(Current::Listed(snapshot))
        }
        Err(e) => Err(ApiError::store(&e)),
    }
}

/// `GET /hashes`: `{id: hash}` with `ETag: "<root>"`; `304` to a matching `If-None-Match`,
/// after holding it when it is a long poll; `?buckets=…` restricts it to those buckets.
pub(super) async fn hashes(
    State(st): Shared,
    hold: Option<Extension<Hold>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(list) = query.as_deref().and_then(buckets::param) {
        return buckets::filtered(&st, &headers, list).await;
    }
    let known = known_root(&headers);
    match (hold, known) {
        (Some(Extension(hold)), Some(known)) => long_poll::hold(&st, hold, known, &headers).await,
        (_, known) => listing(&st, &headers, known).await,
    }
}

/// The `/hashes` answer as of now: `304` when `known` (the client's root) is the store's.
pub(super) async fn listing(
    st: &AppState,
    headers: &HeaderMap,
    known: Option<ContentHash>,
) -> Response {
    match fresh(st, headers, known.as_ref()).await {
        Ok(snapshot) => hashes_answer(st, Json(&snapshot.hashes).into_response(), &snapshot.root),
        Err(answer) => answer,
    }
}

/// The store's current snapshot, or the answer to give instead: `304` when the client's
/// root (`known`, from `If-None-Match`) is the store's, or the store's error.
pub(super) async fn fresh(
    st: &AppState,
    headers: &HeaderMap,
    known: Option<&ContentHash>,
) -> Result<Arc<Snapshot>, Response> {
    match current(st, known).await {
        Err(e) => Err(e.into_response()),
        Ok(Current::Unchanged(root)) => Err(hashes_answer(
            st,
            StatusCode::NOT_MODIFIED.into_response(),
            &root,
        )),
        Ok(Current::Listed(snapshot)) if matches_etag(headers, snapshot.root.as_str()) => Err(
            hashes_answer(st, StatusCode::NOT_MODIFIED.into_response(), &snapshot.root),
        ),
        Ok(Current::Listed(snapshot)) => Ok(snapshot),
    }
}

/// The first entity tag of `If-None-Match` that is a root hash.
pub(super) fn known_root(headers: &HeaderMap) -> Option<ContentHash> {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(tag_root)
}

/// A listing's headers (`/hashes`, `/buckets`): the root as its entity tag, and the
/// capabilities.
pub(super) fn hashes_answer(st: &AppState, mut resp: Response, root: &ContentHash) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{root}\"")).expect("hex digits are a header");
    let h = resp.headers_mut();
    h.insert(ETAG, etag);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static(PROTOCOL_HEADER),
        HeaderValue::from_static(PROTOCOL_VERSIONS_HEADER),
    );
    h.insert(
        HeaderName::from_static(BUCKETS_HEADER),
        HeaderValue::from_static("true"),
    );
    h.insert(
        HeaderName::from_static(MAX_BATCH_HEADER),
        HeaderValue::from(st.opts.max_batch),
    );
    h.insert(
        HeaderName::from_static(MAX_BODY_HEADER),
        HeaderValue::from(st.opts.max_body_bytes),
    );
    if st.opts.max_long_polls > 0 {
        h.insert(
            HeaderName::from_static(LONG_POLL_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    resp
}

/// Whether `If-None-Match` names the entity tag `"<root>"` (weak or strong) or is `*`.
pub(super) fn matches_etag(headers: &HeaderMap, root: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || tag_root(tag).is_some_and(|r| r.as_str() == root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matching() {
        let root = "ab".repeat(32);
        let mut h = HeaderMap::new();
        assert!(!matches_etag(&h, &root));
        h.insert(
            IF_NONE_MATCH,
            format!("\"x\", W/\"{root}\"").parse().unwrap(),
        );
        assert!(matches_etag(&h, &root));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!matches_etag(&h, &root));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(matches_etag(&h, &root));
    }
}
