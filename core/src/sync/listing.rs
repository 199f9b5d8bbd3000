//! The listing step: the upstream's id → hash map. With a driver that declares `buckets`, the
//! engine compares bucket hashes with the cache's, fetches only the entries of the buckets that
//! differ, and takes every other entry from the cache, where it is the same: plan, guard and
//! apply then see the upstream's whole map, at the cost of what changed.

use std::collections::BTreeSet;

use super::{Engine, Stop};
use crate::bucket::{bucket_hashes, in_any, Bucket};
use crate::checked::Checked;
use crate::driver::{BucketListing, Driver, Inventory, Listing};
use crate::hash::{ContentHash, Hashes};

impl Engine {
    /// The pass's first request, carrying the cache's `root`: `None` when the upstream's root
    /// is the same. A driver without `buckets` answers its whole inventory
    /// ([`BucketListing::Full`]).
    pub(super) async fn list(
        &self,
        driver: &Checked,
        root: &ContentHash,
    ) -> Result<Option<BucketListing>, Stop> {
        if driver.info().capabilities.buckets {
            return Ok(match driver.buckets(Some(root)).await? {
                BucketListing::Unchanged => None,
                other => Some(other),
            });
        }
        Ok(match driver.hashes(Some(root)).await? {
            Listing::Unchanged => None,
            Listing::Changed(inventory) => Some(BucketListing::Full(inventory)),
        })
    }

    /// The upstream's whole inventory from the pass's first answer and the cache's map `local`
    /// (whose root is `root`): `None` when the two maps turn out equal.
    ///
    /// Only the differing buckets the upstream holds are fetched (one it lacks is empty
    /// there); when they are more than half of its buckets, one whole listing is cheaper.
    pub(super) async fn upstream(
        &self,
        driver: &Checked,
        first: BucketListing,
        local: &Hashes,
        root: &ContentHash,
    ) -> Result<Option<Inventory>, Stop> {
        let remote = match first {
            BucketListing::Unchanged => return Ok(None),
            BucketListing::Full(inventory) => return Ok(Some(inventory)),
            BucketListing::Changed(remote) => remote,
        };
        let mine = bucket_hashes(local, remote.depth);
        let fetch: BTreeSet<Bucket> = remote
            .hashes
            .iter()
            .filter(|(b, h)| mine.get(*b) != Some(*h))
            .map(|(b, _)| b.clone())
            .collect();
        let differ: BTreeSet<Bucket> = mine
            .keys()
            .filter(|b| !remote.hashes.contains_key(*b))
            .chain(&fetch)
            .cloned()
            .collect();
        if differ.is_empty() {
            return Ok(None);
        }
        if fetch.len() * 2 > remote.hashes.len() {
            return Ok(match driver.hashes(Some(root)).await? {
                Listing::Unchanged => None,
                Listing::Changed(inventory) => Some(inventory),
            });
        }
        let fetched = if fetch.is_empty() {
            Inventory::default()
        } else {
            driver.hashes_in(&fetch).await?
        };
        let mut hashes: Hashes = local
            .iter()
            .filter(|(id, _)| !in_any(&differ, id))
            .map(|(id, h)| (id.clone(), h.clone()))
            .collect();
        hashes.extend(fetched.hashes);
        Ok(Some(Inventory {
            hashes,
            problems: fetched.problems,
        }))
    }
}
