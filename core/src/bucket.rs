//! Buckets of task ids (docs/task-format.md#buckets): two sides compare one hash per bucket
//! instead of their whole id → hash maps, and exchange only the entries of the buckets that
//! differ, so a sync costs what changed rather than what is stored.
//!
//! A task id's bucket at depth `d` (1 to 4) is the first `d` lowercase hex digits of SHA-256 of
//! the id's UTF-8 bytes (16^d buckets). A bucket's hash is the [`root_hash`](crate::root_hash)
//! of the sub-map of the ids in it; empty buckets have no hash and are left out.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::hash::{root_of, ContentHash, Hashes};
use crate::id::TaskId;

/// Average tasks per bucket up to which [`Depth::for_tasks`] stays at a depth. A listing of
/// bucket hashes costs about 70 bytes per bucket and each differing bucket about 90 bytes per
/// task in it: for a handful of changed tasks, buckets of a few hundred tasks balance the two
/// (20,000 tasks and 10 changes: about 90 KB at depth 2 against 300 KB at depth 3).
const TASKS_PER_BUCKET: usize = 256;

/// The deepest depth [`Depth::for_tasks`] chooses: 4,096 buckets, about 300 KB of bucket hashes.
const DEEPEST_CHOSEN: u8 = 3;

/// How many hex digits name a bucket: 1 to 4 (16 to 65,536 buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Depth(u8);

impl Depth {
    /// The shallowest depth: 16 buckets.
    pub const MIN: Depth = Depth(1);
    /// The deepest depth: 65,536 buckets.
    pub const MAX: Depth = Depth(4);

    /// The depth `d`, when it is 1 to 4.
    pub fn new(d: u8) -> Option<Depth> {
        (Depth::MIN.0..=Depth::MAX.0)
            .contains(&d)
            .then_some(Depth(d))
    }

    /// The number of hex digits.
    pub fn get(self) -> u8 {
        self.0
    }

    /// How many buckets there are at this depth (16^d).
    pub fn buckets(self) -> usize {
        1 << (4 * u32::from(self.0))
    }

    /// The depth an upstream of `tasks` tasks answers with: the smallest with at most 256 tasks
    /// per bucket on average, at most 3.
    pub fn for_tasks(tasks: usize) -> Depth {
        (Depth::MIN.0..DEEPEST_CHOSEN)
            .map(Depth)
            .find(|d| tasks <= d.buckets() * TASKS_PER_BUCKET)
            .unwrap_or(Depth(DEEPEST_CHOSEN))
    }
}

impl fmt::Display for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Depth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for Depth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u8::deserialize(d)?;
        Depth::new(n).ok_or_else(|| serde::de::Error::custom(format!("not a bucket depth: {n}")))
    }
}

/// A bucket: 1 to 4 lowercase hex digits, the first digits of SHA-256 of the ids in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket(String);

impl Bucket {
    /// The bucket of `id` at `depth`.
    pub fn of(id: &TaskId, depth: Depth) -> Bucket {
        let digits = id_digits(id);
        Bucket(digits.as_str()[..usize::from(depth.0)].to_owned())
    }

    /// Parses 1 to 4 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Bucket> {
        let ok = Depth::new(u8::try_from(s.len()).ok()?).is_some()
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Bucket(s.to_owned()))
    }

    /// Its depth: how many digits it has.
    pub fn depth(&self) -> Depth {
        Depth(self.0.len() as u8)
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `id` falls in this bucket.
    pub fn contains(&self, id: &TaskId) -> bool {
        id_digits(id).as_str().starts_with(&self.0)
    }
}

impl Borrow<str> for Bucket {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Bucket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bucket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Bucket::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a bucket: {s:?}")))
    }
}

/// Every non-empty bucket's hash at one depth, by bucket.
pub type BucketHashes = BTreeMap<Bucket, ContentHash>;

/// The first four hex digits of SHA-256 of `id`: its bucket at every depth. Kept on the
/// stack: listings compute it for every id.
struct Digits {
    prefix: u16,
    hex: [u8; 4],
}

impl Digits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.hex).expect("hex digits")
    }

    /// The bucket's number at `depth` (its digits read as a number).
    fn index(&self, depth: Depth) -> usize {
        usize::from(self.prefix >> (16 - 4 * u32::from(depth.0)))
    }
}

fn id_digits(id: &TaskId) -> Digits {
    let digest = Sha256::digest(id.as_str().as_bytes());
    let prefix = u16::from_be_bytes([digest[0], digest[1]]);
    let mut hex = [0u8; 4];
    for (i, h) in hex.iter_mut().enumerate() {
        *h = b"0123456789abcdef"[usize::from((prefix >> (12 - 4 * i)) & 0xf)];
    }
    Digits { prefix, hex }
}

/// The hash of every non-empty bucket of `hashes` at `depth`: the root hash of the ids in it.
///
/// ```
/// use hypertask_core::{bucket_hashes, root_hash, Bucket, ContentHash, Depth, Hashes, TaskId};
///
/// let id = TaskId::new("a").unwrap();
/// let hashes = Hashes::from([(id.clone(), ContentHash::of_bytes(b"x"))]);
/// let buckets = bucket_hashes(&hashes, Depth::MIN);
/// // SHA-256 of "a" starts with "ca": one bucket, whose hash is the root of the whole map.
/// assert_eq!(Bucket::of(&id, Depth::MIN).as_str(), "c");
/// assert_eq!(buckets.len(), 1);
/// assert_eq!(buckets[&Bucket::parse("c").unwrap()], root_hash(&hashes));
/// ```
pub fn bucket_hashes(hashes: &Hashes, depth: Depth) -> BucketHashes {
    // One group per bucket number (an empty `Vec` allocates nothing).
    let mut groups: Vec<Vec<(&str, &ContentHash)>> = vec![Vec::new(); depth.buckets()];
    // The map is in id order, so each group is too: its root streams straight from it.
    for (id, hash) in hashes {
        groups[id_digits(id).index(depth)].push((id.as_str(), hash));
    }
    let width = usize::from(depth.0);
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, entries)| !entries.is_empty())
        .map(|(n, entries)| {
            let bucket = Bucket(format!("{n:0width$x}"));
            (bucket, root_of(entries.into_iter()))
        })
        .collect()
}

/// Whether `id` falls in one of `buckets` (of any depths).
pub fn in_any(buckets: &BTreeSet<Bucket>, id: &TaskId) -> bool {
    let digits = id_digits(id);
    (1..=usize::from(Depth::MAX.0)).any(|d| buckets.contains(&digits.as_str()[..d]))
}

/// The entries of `hashes` whose id falls in one of `buckets` (of any depths).
pub fn in_buckets(hashes: &Hashes, buckets: &BTreeSet<Bucket>) -> Hashes {
    hashes
        .iter()
        .filter(|(id, _)| in_any(buckets, id))
        .map(|(id, h)| (id.clone(), h.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::root_hash;

    fn id(s: &str) -> TaskId {
        TaskId::new(s).unwrap()
    }

    fn bucket(s: &str) -> Bucket {
        Bucket::parse(s).unwrap()
    }

    /// The example in docs/task-format.md, for another implementation to check itself.
    #[test]
    fn the_documented_example() {
        let hashes = Hashes::from([
            (id("a"), ContentHash::of_bytes(b"1")),
            (id("b"), ContentHash::of_bytes(b"2")),
            (id("e"), ContentHash::of_bytes(b"3")),
        ]);
        assert_eq!(Bucket::of(&id("a"), Depth::MAX).as_str(), "ca97");
        assert_eq!(Bucket::of(&id("b"), Depth::MAX).as_str(), "3e23");
        assert_eq!(Bucket::of(&id("e"), Depth::MAX).as_str(), "3f79");
        let at = |d| -> Vec<(String, String)> {
            bucket_hashes(&hashes, Depth::new(d).unwrap())
                .into_iter()
                .map(|(b, h)| (b.to_string(), h.to_string()))
                .collect()
        };
        let pair = |b: &str, h: &str| (b.to_owned(), h.to_owned());
        assert_eq!(
            at(1),
            [
                pair(
                    "3",
                    "7bca9bfcc7bd01213b7744f017a5c830c9c4bbf446e755e194312b139e02ddf8"
                ),
                pair(
                    "c",
                    "a8bd5d837a9ca07cd623efc1b548824de49cb5c55a4e27f602748e6c73ce54aa"
                ),
            ]
        );
        assert_eq!(
            at(2),
            [
                pair(
                    "3e",
                    "7beff7c35b7645111b6d6ebc2dce292f71874c3a714d93afa846d19e1eb4405f"
                ),
                pair(
                    "3f",
                    "4977c37c492031a466f773e96551fedc7048ff5a16a40e6e139cd450d0efeaaf"
                ),
                pair(
                    "ca",
                    "a8bd5d837a9ca07cd623efc1b548824de49cb5c55a4e27f602748e6c73ce54aa"
                ),
            ]
        );
    }

    #[test]
    fn a_bucket_hash_is_the_root_of_its_ids() {
        let hashes: Hashes = (0..500)
            .map(|i| {
                let s = format!("t{i}");
                (id(&s), ContentHash::of_bytes(s.as_bytes()))
            })
            .collect();
        for d in 1..=4 {
            let depth = Depth::new(d).unwrap();
            let got = bucket_hashes(&hashes, depth);
            let mut total = 0;
            for (b, h) in &got {
                assert_eq!(b.depth(), depth);
                let sub = in_buckets(&hashes, &BTreeSet::from([b.clone()]));
                assert!(!sub.is_empty(), "empty buckets are left out");
                assert!(sub.keys().all(|i| b.contains(i)));
                assert_eq!(h, &root_hash(&sub));
                total += sub.len();
            }
            assert_eq!(total, hashes.len(), "every id is in one bucket");
        }
        assert!(bucket_hashes(&Hashes::new(), Depth::MIN).is_empty());
    }

    #[test]
    fn filtering_takes_any_mix_of_depths() {
        let hashes: Hashes = (0..300)
            .map(|i| (id(&format!("f{i}")), ContentHash::of_bytes(b"x")))
            .collect();
        let a = id("f1");
        let b = id("f2");
        let set = BTreeSet::from([Bucket::of(&a, Depth::MIN), Bucket::of(&b, Depth::MAX)]);
        let got = in_buckets(&hashes, &set);
        assert!(got.contains_key(&a) && got.contains_key(&b));
        for i in hashes.keys() {
            let want = Bucket::of(i, Depth::MIN) == Bucket::of(&a, Depth::MIN)
                || Bucket::of(i, Depth::MAX) == Bucket::of(&b, Depth::MAX);
            assert_eq!(got.contains_key(i), want, "{i}");
        }
        assert!(in_buckets(&hashes, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn depths_and_buckets_parse_strictly() {
        assert_eq!(Depth::new(0), None);
        assert_eq!(Depth::new(5), None);
        assert_eq!(Depth::new(3).map(Depth::buckets), Some(4096));
        for bad in ["", "abcde", "AB", "g", "1 "] {
            assert_eq!(Bucket::parse(bad), None, "{bad:?}");
        }
        assert_eq!(bucket("0f").depth(), Depth::new(2).unwrap());
        let json = serde_json::to_string(&BucketHashes::from([(
            bucket("a"),
            ContentHash::of_bytes(b""),
        )]))
        .unwrap();
        let back: BucketHashes = serde_json::from_str(&json).unwrap();
        assert_eq!(back.keys().next(), Some(&bucket("a")));
        assert!(serde_json::from_str::<BucketHashes>(r#"{"G": "x"}"#).is_err());
        assert!(serde_json::from_str::<Depth>("5").is_err());
    }

    #[test]
    fn the_chosen_depth_keeps_buckets_to_a_few_hundred_tasks() {
        assert_eq!(Depth::for_tasks(0).get(), 1);
        assert_eq!(Depth::for_tasks(4096).get(), 1);
        assert_eq!(Depth::for_tasks(4097).get(), 2);
        assert_eq!(Depth::for_tasks(20_000).get(), 2);
        assert_eq!(Depth::for_tasks(65_536).get(), 2);
        assert_eq!(Depth::for_tasks(100_000).get(), 3);
        assert_eq!(Depth::for_tasks(usize::MAX).get(), 3);
    }
}
