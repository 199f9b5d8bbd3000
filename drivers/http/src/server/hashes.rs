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

/// The store's map as last listed (or as this server's own writes left it), and its root.
pub(super) struct Snapshot {
    /// The root of `hashes`, computed on first use.
    root: OnceLock<ContentHash>,
    pub(super) hashes: Hashes,
    /// The map by bucket, computed on first use.
    grouped: OnceLock<Grouped>,
}

/// A snapshot's map by bucket, at the depth chosen for its size.
#[derive(Clone)]
pub(super) struct Grouped {
    pub(super) depth: Depth,
    /// Each non-empty bucket's hash.
    pub(super) hashes: BucketHashes,
    /// The ids in each non-empty bucket, in id order.
    pub(super) members: BTreeMap<Bucket, Vec<TaskId>>,
}

impl Snapshot {
    fn new(hashes: Hashes) -> Snapshot {
        Snapshot {
            root: OnceLock::new(),
            hashes,
            grouped: OnceLock::new(),
        }
    }

    /// The root of the map: one SHA-256 over it the first time.
    pub(super) fn root(&self) -> &ContentHash {
        self.root.get_or_init(|| root_hash(&self.hashes))
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

    /// Sets each id's hash to what was stored (`None`: nothing is stored for it). The root is
    /// computed again when next asked; the grouping, when it was made, is mended in the
    /// buckets of the changed ids only (or dropped when the map's size calls for another
    /// depth).
    fn change(&mut self, stored: Vec<(TaskId, Option<ContentHash>)>) {
        let mut changed = Vec::new();
        for (id, hash) in stored {
            let before = match &hash {
                Some(h) => self.hashes.insert(id.clone(), h.clone()),
                None => self.hashes.remove(&id),
            };
            if before != hash {
                changed.push(id);
            }
        }
        if changed.is_empty() {
            return;
        }
        self.root = OnceLock::new();
        let Some(grouped) = self.grouped.get_mut() else {
            return;
        };
        if Depth::for_tasks(self.hashes.len()) != grouped.depth {
            self.grouped = OnceLock::new();
            return;
        }
        grouped.mend(&self.hashes, &changed);
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

    /// Brings the buckets of `changed` up to date with `hashes` (the map after the change).
    fn mend(&mut self, hashes: &Hashes, changed: &[TaskId]) {
        let mut buckets = std::collections::BTreeSet::new();
        for id in changed {
            let bucket = Bucket::of(id, self.depth);
            let ids = self.members.entry(bucket.clone()).or_default();
            match (ids.binary_search(id), hashes.contains_key(id)) {
                (Err(at), true) => ids.insert(at, id.clone()),
                (Ok(at), false) => {
                    ids.remove(at);
                }
                _ => {}
            }
            buckets.insert(bucket);
        }
        for bucket in buckets {
            let ids = self
                .members
                .get(&bucket)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if ids.is_empty() {
                self.members.remove(&bucket);
                self.hashes.remove(&bucket);
                continue;
            }
            let entries: Hashes = ids
                .iter()
                .filter_map(|id| Some((id.clone(), hashes.get(id)?.clone())))
                .collect();
            self.hashes.insert(bucket, root_hash(&entries));
        }
    }
}

/// The last snapshot this server took.
#[derive(Default)]
pub(super) struct Snapshots(Mutex<Option<Arc<Snapshot>>>);

impl Snapshots {
    fn kept(&self) -> Option<Arc<Snapshot>> {
        self.lock().clone()
    }

    fn keep(&self, snapshot: Arc<Snapshot>) {
        *self.lock() = Some(snapshot);
    }

    /// Brings the kept snapshot up to what one of this server's resolves stored (each id's
    /// hash, or `None` for nothing stored), so the next listing does not list the whole store
    /// again: it asks the store whether its root is still the snapshot's, which holds unless
    /// someone else wrote meanwhile (then the store is listed, as before). Costs what changed,
    /// plus a copy of the map when a request is still reading the snapshot.
    pub(super) fn apply(&self, stored: Vec<(TaskId, Option<ContentHash>)>) {
        if stored.is_empty() {
            return;
        }
        let mut kept = self.lock();
        let Some(snapshot) = kept.take() else {
            return;
        };
        let mut snapshot = Arc::try_unwrap(snapshot).unwrap_or_else(|shared| Snapshot {
            root: shared.root.clone(),
            hashes: shared.hashes.clone(),
            grouped: shared.grouped.clone(),
        });
        snapshot.change(stored);
        *kept = Some(Arc::new(snapshot));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Snapshot>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
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
    let ask = kept.as_ref().map(|s| s.root()).or(known);
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
        Ok(snapshot) => hashes_answer(st, Json(&snapshot.hashes).into_response(), snapshot.root()),
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
        Ok(Current::Listed(snapshot)) if matches_etag(headers, snapshot.root().as_str()) => {
            Err(hashes_answer(
                st,
                StatusCode::NOT_MODIFIED.into_response(),
                snapshot.root(),
            ))
        }
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

    fn map(ids: impl Iterator<Item = usize>, version: &str) -> Hashes {
        ids.map(|i| {
            let id = TaskId::new(format!("t{i}")).unwrap();
            let hash = ContentHash::of_bytes(format!("{i} {version}").as_bytes());
            (id, hash)
        })
        .collect()
    }

    /// What a snapshot answers after `stored`, against one listed afresh.
    fn mended(before: &Hashes, stored: Vec<(TaskId, Option<ContentHash>)>) -> Snapshot {
        let mut snapshot = Snapshot::new(before.clone());
        let _ = snapshot.root();
        snapshot
            .grouped
            .get_or_init(|| Grouped::of(&snapshot.hashes));
        snapshot.change(stored);
        snapshot
    }

    fn assert_listed_afresh(snapshot: &Snapshot) {
        let fresh = Snapshot::new(snapshot.hashes.clone());
        assert_eq!(snapshot.root(), fresh.root());
        let fresh = Grouped::of(&fresh.hashes);
        let grouped = snapshot
            .grouped
            .get()
            .cloned()
            .unwrap_or_else(|| Grouped::of(&snapshot.hashes));
        assert_eq!(grouped.depth, fresh.depth);
        assert_eq!(grouped.hashes, fresh.hashes);
        assert_eq!(grouped.members, fresh.members);
    }

    #[test]
    fn a_snapshot_mended_by_the_servers_own_writes_answers_as_a_fresh_listing() {
        let before = map(0..1_000, "a");
        let id = |i: usize| TaskId::new(format!("t{i}")).unwrap();
        let hash = |i: usize, v: &str| ContentHash::of_bytes(format!("{i} {v}").as_bytes());
        // Changed, added, removed, and written as it was.
        let stored = vec![
            (id(3), Some(hash(3, "b"))),
            (id(5_000), Some(hash(5_000, "a"))),
            (id(7), None),
            (id(9), Some(hash(9, "a"))),
            (id(8_000), None),
        ];
        let snapshot = mended(&before, stored);
        assert!(snapshot.grouped.get().is_some(), "mended, not dropped");
        assert_eq!(snapshot.hashes.len(), 1_000);
        assert_eq!(snapshot.hashes[&id(3)], hash(3, "b"));
        assert!(!snapshot.hashes.contains_key(&id(7)));
        assert_listed_afresh(&snapshot);

        // Nothing changed: the root is kept as it was.
        let same = mended(&before, vec![(id(1), Some(hash(1, "a")))]);
        assert!(same.root.get().is_some());
        assert_listed_afresh(&same);

        // A size that calls for another depth: the grouping is made again.
        let grown: Vec<_> = (1_000..20_000)
            .map(|i| (id(i), Some(hash(i, "a"))))
            .collect();
        let grown = mended(&before, grown);
        assert!(grown.grouped.get().is_none());
        assert_listed_afresh(&grown);
    }
}
