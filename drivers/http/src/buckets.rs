//! The client's bucketed listing (protocol 1.2, docs/http-protocol.md#bucketed-listing):
//! `GET /buckets` for the server's bucket hashes, `GET /hashes?buckets=…` for the entries of
//! the buckets that differ. A server without them (`404` on `/buckets`, or capabilities that
//! do not offer them) is listed whole, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use hypertask_core::{
    Bucket, BucketListing, Buckets, ContentHash, Depth, DriverError, Inventory, Listing,
};
use reqwest::StatusCode;

use crate::driver::{HttpDriver, ENVELOPE_BYTES};
use crate::listing::read_inventory;
use crate::wire::{bucket_list, BucketsDoc, BUCKETS_PARAM, MAX_QUERY_BUCKETS};

/// Bytes one `/buckets` entry may take: a 4-digit prefix, a 64-digit hash, quotes and spacing.
const BUCKET_ENTRY_BYTES: usize = 128;

impl HttpDriver {
    /// Whether to list by bucket: the server said it can, or it has said nothing yet and has
    /// not answered `/buckets` with `404`.
    pub(crate) fn offers_buckets(&self) -> bool {
        !self.no_buckets.load(Ordering::Relaxed) && self.known_caps().is_none_or(|c| c.buckets)
    }

    /// [`hypertask_core::Driver::buckets`]: `GET /buckets`, conditional on `known_root`; the
    /// whole listing from a server without it.
    pub(crate) async fn list_buckets(
        &self,
        known_root: Option<&ContentHash>,
    ) -> Result<BucketListing, DriverError> {
        if !self.offers_buckets() {
            return self.whole(known_root).await;
        }
        let what = "GET /buckets";
        let url = self.t.endpoint("buckets");
        let limit = Depth::MAX
            .buckets()
            .saturating_mul(BUCKET_ENTRY_BYTES)
            .saturating_add(ENVELOPE_BYTES);
        let answer = self.listing_get(what, url, limit, known_root).await?;
        let o = &self.t.origin;
        match answer.status {
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!(driver = %o.name, "the server has no /buckets; listing whole maps");
                self.no_buckets.store(true, Ordering::Relaxed);
                return self.whole(known_root).await;
            }
            StatusCode::NOT_MODIFIED if known_root.is_some() => {
                return Ok(BucketListing::Unchanged)
            }
            StatusCode::OK => {}
            _ => return Err(o.unexpected(what, &answer)),
        }
        let doc: BucketsDoc = serde_json::from_slice(&answer.body).map_err(|e| {
            o.protocol(
                what,
                format_args!("a body that is not {{\"depth\": 1-4, \"buckets\": {{...}}}}: {e}"),
            )
        })?;
        if let Some(other) = doc.buckets.keys().find(|b| b.depth() != doc.depth) {
            return Err(o.protocol(
                what,
                format_args!("bucket '{other}' among the buckets of depth {}", doc.depth),
            ));
        }
        Ok(BucketListing::Changed(Buckets {
            depth: doc.depth,
            hashes: doc.buckets,
        }))
    }

    /// [`hypertask_core::Driver::hashes_in`]: one `GET /hashes?buckets=…` per depth and per
    /// [`MAX_QUERY_BUCKETS`] buckets; the whole listing, filtered, from a server without it.
    pub(crate) async fn list_in(
        &self,
        buckets: &BTreeSet<Bucket>,
    ) -> Result<Inventory, DriverError> {
        if !self.offers_buckets() {
            return Ok(match self.list(None).await? {
                Listing::Changed(all) => all.restricted(buckets),
                Listing::Unchanged => Inventory::default(),
            });
        }
        let mut by_depth: BTreeMap<Depth, Vec<&Bucket>> = BTreeMap::new();
        for b in buckets {
            by_depth.entry(b.depth()).or_default().push(b);
        }
        let what = "GET /hashes?buckets=...";
        let mut inventory = Inventory::default();
        for chunk in by_depth
            .values()
            .flat_map(|group| group.chunks(MAX_QUERY_BUCKETS))
        {
            let mut url = self.t.endpoint("hashes");
            let list = bucket_list(chunk.iter().copied());
            url.set_query(Some(&format!("{BUCKETS_PARAM}={list}")));
            let answer = self
                .listing_get(what, url, self.listing_limit(), None)
                .await?;
            if answer.status != StatusCode::OK {
                return Err(self.t.origin.unexpected(what, &answer));
            }
            let part = read_inventory(&self.t.origin, what, &answer.body, self.max_tasks)?;
            inventory.hashes.extend(part.hashes);
            inventory.problems.extend(part.problems);
        }
        Ok(inventory)
    }

    /// The whole listing, as a bucket listing's answer.
    async fn whole(&self, known_root: Option<&ContentHash>) -> Result<BucketListing, DriverError> {
        Ok(match self.list(known_root).await? {
            Listing::Unchanged => BucketListing::Unchanged,
            Listing::Changed(inventory) => BucketListing::Full(inventory),
        })
    }
}
