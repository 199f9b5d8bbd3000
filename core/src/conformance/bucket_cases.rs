//! Bucket cases: [`Driver::buckets`] and [`Driver::hashes_in`] agree with the full listing
//! (every driver has them, by default computed from that listing).

use std::collections::BTreeSet;

use super::*;
use crate::bucket::{bucket_hashes, in_any, in_buckets, Bucket, Depth};
use crate::driver::BucketListing;

/// The whole listing, whatever problems other cases (or a real upstream) left in it.
async fn everything(d: &dyn Driver) -> Hashes {
    d.begin(Access::Read)
        .await
        .or_fail("begin a read-only sync");
    match d.hashes(None).await.or_fail("hashes") {
        Listing::Changed(inv) => inv.hashes,
        Listing::Unchanged => panic!("hashes(None) must list the upstream"),
    }
}

/// Writes `n` tasks named `prefix-NN` in one sync.
async fn write_some(d: &dyn Driver, prefix: &str, n: usize) -> Vec<Task> {
    let tasks: Vec<Task> = (0..n)
        .map(|i| {
            t(
                &format!("{prefix}-{i:02}"),
                json!({"description": format!("{prefix} {i}")}),
            )
        })
        .collect();
    sync(d, batch_of(&tasks)).await;
    tasks
}

/// Bucket hashes are those of the full listing at the depth the driver answers; a driver that
/// declares both `cheap_root` and `buckets` answers a matching root with `Unchanged`.
pub async fn bucket_hashes_agree_with_the_listing(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    write_some(a.as_ref(), "bucket", 40).await;
    let all = everything(a.as_ref()).await;
    let check = |listing: BucketListing, known: bool| match listing {
        BucketListing::Changed(b) => assert_eq!(
            b.hashes,
            bucket_hashes(&all, b.depth),
            "the bucket hashes (depth {}) are not those of the listing",
            b.depth
        ),
        BucketListing::Full(inv) => assert_eq!(inv.hashes, all, "the full answer is the listing"),
        BucketListing::Unchanged => assert!(known, "buckets(None) must answer the buckets"),
    };
    a.begin(Access::Read).await.or_fail("begin");
    check(a.buckets(None).await.or_fail("buckets"), false);
    let caps = a.info().capabilities;
    let root = root_hash(&all);
    let listing = a.buckets(Some(&root)).await.or_fail("buckets");
    if caps.cheap_root && caps.buckets {
        assert!(
            matches!(listing, BucketListing::Unchanged),
            "declares cheap_root and buckets but listed buckets for a matching root"
        );
    }
    check(listing, true);
    Verdict::Passed
}

/// A listing restricted to buckets (of mixed depths) is the full listing filtered, with the
/// unreadable entries of those buckets among its problems.
pub async fn bucket_listing_is_the_listing_filtered(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let tasks = write_some(a.as_ref(), "inbucket", 30).await;
    let bad = id("inbucket-bad");
    let planted = up.plant(&bad, b"{\"id\": \"inbucket-bad\", ").await;
    let all = everything(a.as_ref()).await;
    a.begin(Access::Read).await.or_fail("begin");
    let depth = match a.buckets(None).await.or_fail("buckets") {
        BucketListing::Changed(b) => b.depth,
        _ => Depth::for_tasks(all.len()),
    };
    let asked = BTreeSet::from([
        Bucket::of(tasks[0].id(), depth),
        Bucket::of(tasks[1].id(), depth),
        Bucket::of(tasks[2].id(), Depth::MIN),
        Bucket::of(&bad, Depth::MAX),
    ]);
    let got = a.hashes_in(&asked).await.or_fail("hashes_in");
    assert_eq!(
        got.hashes,
        in_buckets(&all, &asked),
        "the restricted listing is not the listing filtered"
    );
    for p in &got.problems {
        if let Some(pid) = &p.id {
            assert!(in_any(&asked, pid), "a problem outside the buckets: {p:?}");
        }
    }
    if planted {
        assert!(
            got.problems.iter().any(|p| p.id.as_ref() == Some(&bad)),
            "the unreadable entry of an asked bucket is not reported: {:?}",
            got.problems
        );
    }
    let none = a
        .hashes_in(&BTreeSet::new())
        .await
        .or_fail("hashes_in of no bucket");
    assert!(none.hashes.is_empty(), "no bucket lists nothing");
    Verdict::Passed
}
