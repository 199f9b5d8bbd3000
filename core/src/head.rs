//! The cache's head record: the root hash of the task directory as its index lists it, the
//! stamp of the directory when the two matched, and a generation shared with the index.
//!
//! The cache directory is hypertask's own: its writers keep the head up to date, so a sync can
//! answer "what is the cache's root?" with one `stat` of the directory and one small read,
//! instead of listing and stat-ing every task file. The head is trusted only while
//! - the directory's stamp (mtime, ctime, inode, size) is the recorded one: any file created,
//!   renamed or removed by anyone changes it;
//! - the stamp is not *racy*: it was recorded long enough after the directory's last change
//!   that a change by someone else within the same timestamp tick cannot hide behind it;
//! - the index on disk carries the head's generation.
//!
//! An edit made in place inside an existing file (not through hypertask, not by replacing the
//! file) leaves the directory's stamp unchanged: `hypertask sync --rescan` reads everything.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::hash::ContentHash;

/// The stamp of a directory: what changes when an entry is created, renamed or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DirStamp {
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    size: u64,
}

impl DirStamp {
    /// The directory's stamp, and the wall clock read just before it was taken.
    pub(crate) fn now(dir: &Path) -> io::Result<(DirStamp, i128)> {
        let before = nanos(Some(SystemTime::now()));
        Ok((DirStamp::of(dir)?, before))
    }

    /// The directory's stamp now.
    pub(crate) fn of(dir: &Path) -> io::Result<DirStamp> {
        let meta = fs::symlink_metadata(dir)?;
        let (mtime_ns, ctime_ns, ino) = times_of(&meta);
        Ok(DirStamp {
            mtime_ns,
            ctime_ns,
            ino,
            size: meta.len(),
        })
    }

    /// Whether the file system's clock reading `clock_ns` has moved past the directory's
    /// last change: a change from then on is stamped later, so this stamp cannot hide it.
    pub(crate) fn settled_by(&self, clock_ns: i128) -> bool {
        self.mtime_ns >= 0 && self.mtime_ns < clock_ns
    }

    /// Whether a change within the same timestamp tick as the directory's last change could
    /// still follow `recorded_ns` unseen. File systems with whole-second timestamps get a
    /// window of two seconds; others (ext4, xfs, btrfs, tmpfs tick in milliseconds) 50 ms.
    pub(crate) fn racy(&self, recorded_ns: i128) -> bool {
        recorded_ns - self.mtime_ns < self.window_ns()
    }

    /// How long from `now_ns` until a stamp taken would no longer be racy, where that window
    /// is the short one; `None` for whole-second timestamps, too long to wait out.
    pub(crate) fn racy_left(&self, now_ns: i128) -> Option<std::time::Duration> {
        let window = self.window_ns();
        if window > SHORT_WINDOW_NS {
            return None;
        }
        let left = (self.mtime_ns + window - now_ns).clamp(0, window);
        Some(std::time::Duration::from_nanos(u64::try_from(left).ok()?))
    }

    fn window_ns(&self) -> i128 {
        // Entries change the mtime; the ctime alone (a chmod) says nothing about them.
        if self.mtime_ns % 1_000_000_000 == 0 {
            2_000_000_000
        } else {
            SHORT_WINDOW_NS
        }
    }
}

/// The racy window of file systems whose timestamps are finer than a second.
const SHORT_WINDOW_NS: i128 = 50_000_000;

/// The head record, saved next to the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    /// The index generation this head describes.
    pub generation: u64,
    /// The root hash of every task the index lists.
    pub root: ContentHash,
    /// How many tasks that is.
    pub count: usize,
    /// The directory's stamp when the head was recorded.
    pub dir: DirStamp,
    /// When that stamp was taken (wall clock, nanoseconds since the epoch).
    pub recorded_ns: i128,
    /// The file system's own clock, read (as a probe file's mtime) after the directory's
    /// last change and before its entries were confirmed: any later change to the directory
    /// is stamped at or after it. When the directory's mtime is older, the stamp cannot hide
    /// a change, however recently it was taken. Set by a confirmation
    /// ([`crate::files::TaskDir`]); absent in heads written by earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_ns: Option<i128>,
}

impl Head {
    /// A head for `generation`/`root` over a directory whose stamp `(dir, recorded_ns)` was
    /// taken by [`DirStamp::now`].
    pub(crate) fn new(
        generation: u64,
        root: ContentHash,
        count: usize,
        (dir, recorded_ns): (DirStamp, i128),
    ) -> Head {
        Head {
            generation,
            root,
            count,
            dir,
            recorded_ns,
            clock_ns: None,
        }
    }

    /// The same head, confirmed while the file system's clock read `clock_ns`.
    pub(crate) fn confirmed_at(self, clock_ns: i128) -> Head {
        Head {
            clock_ns: Some(clock_ns),
            ..self
        }
    }

    /// Loads the head at `path`; `None` when missing or unreadable.
    pub(crate) fn load(path: &Path) -> Option<Head> {
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Saves the head atomically. It is only a cache: a failure costs a rescan next time.
    pub(crate) fn save(&self, path: &Path) {
        if let Ok(bytes) = serde_json::to_vec(self) {
            let _ = crate::files::write_atomic(path, &bytes, false);
        }
    }

    /// Removes the head at `path`, so the next scan lists the directory.
    pub(crate) fn forget(path: &Path) {
        let _ = fs::remove_file(path);
    }

    /// Whether the head still describes the directory stamped `now`. `own_generation` is the
    /// generation this process wrote last: its racy stamp is accepted, since the process knows
    /// what it wrote (a change by someone else within that tick is found by the next process,
    /// to which the stamp is racy).
    pub(crate) fn trusted(&self, now: &DirStamp, own_generation: Option<u64>) -> bool {
        self.dir == *now && (own_generation == Some(self.generation) || !self.racy())
    }

    /// Whether the head was recorded too soon after the directory's last change for another
    /// process to trust it on its own: within that change's tick by the wall clock, and not
    /// confirmed since by the file system's clock.
    fn racy(&self) -> bool {
        self.dir.racy(self.recorded_ns) && !self.clock_ns.is_some_and(|c| self.dir.settled_by(c))
    }

    /// Whether the head describes the directory stamped `now` but was recorded too soon after
    /// the directory's last change to be trusted by another process on its own.
    pub(crate) fn racy_for(&self, now: &DirStamp) -> bool {
        self.dir == *now && self.racy()
    }
}

/// The mtime and ctime (nanoseconds since the epoch, -1 when unknown) and the inode of an entry:
/// what tells that it changed without reading it. Without a ctime, the mtime stands in.
pub(crate) fn times_of(meta: &fs::Metadata) -> (i128, i128, u64) {
    let mtime_ns = nanos(meta.modified().ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let ctime_ns = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
        (mtime_ns, ctime_ns, meta.ino())
    }
    #[cfg(not(unix))]
    (mtime_ns, mtime_ns, 0)
}

/// The clock of the file system holding `dir`, read now: the mtime of `probe` (a file of
/// hypertask's own next to `dir`, on the same file system) rewritten. `None` when it cannot
/// be written, or lies on another file system.
#[cfg(unix)]
pub(crate) fn fs_clock(dir: &Path, probe: &Path) -> Option<i128> {
    use std::io::Write as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(probe)
        .ok()?;
    file.write_all(b"\n").ok()?;
    let meta = file.metadata().ok()?;
    if meta.dev() != fs::symlink_metadata(dir).ok()?.dev() {
        return None;
    }
    Some(times_of(&meta).0).filter(|&t| t >= 0)
}

#[cfg(not(unix))]
pub(crate) fn fs_clock(_dir: &Path, _probe: &Path) -> Option<i128> {
    None
}

fn nanos(t: Option<SystemTime>) -> i128 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(-1)
}

static TASK_READS: AtomicU64 = AtomicU64::new(0);
static DIR_LISTINGS: AtomicU64 = AtomicU64::new(0);
static FLUSHES: AtomicU64 = AtomicU64::new(0);
static INDEX_READS: AtomicU64 = AtomicU64::new(0);

/// How much file work task directories did in this process, for tests that pin what an
/// operation costs without timing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoCounts {
    /// Task files opened and read (by any [`crate::files::TaskDir`]).
    pub task_reads: u64,
    /// Full listings of a task directory (a `readdir` and a `stat` of every file).
    pub dir_listings: u64,
    /// Flushes of written task files (a `syncfs` on Linux, a round of `fsync`s elsewhere).
    pub flushes: u64,
    /// Stat indexes read and parsed from disk (not answered from the copy kept in memory).
    pub index_reads: u64,
}

/// The counts so far; subtract two readings to count one operation.
pub fn io_counts() -> IoCounts {
    IoCounts {
        task_reads: TASK_READS.load(Ordering::Relaxed),
        dir_listings: DIR_LISTINGS.load(Ordering::Relaxed),
        flushes: FLUSHES.load(Ordering::Relaxed),
        index_reads: INDEX_READS.load(Ordering::Relaxed),
    }
}

pub(crate) fn count_task_read() {
    TASK_READS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_listing() {
    DIR_LISTINGS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_index_read() {
    INDEX_READS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_flush() {
    FLUSHES.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime_ns: i128) -> DirStamp {
        DirStamp {
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 1,
            size: 4096,
        }
    }

    #[test]
    fn a_stamp_recorded_in_the_same_tick_as_a_change_is_racy() {
        let s = stamp(10_000_000_123);
        assert!(s.racy(10_000_000_123 + 1_000_000));
        assert!(!s.racy(10_000_000_123 + 60_000_000));
        // Whole-second timestamps: two seconds.
        let coarse = stamp(10_000_000_000);
        assert!(coarse.racy(11_500_000_000));
        assert!(!coarse.racy(12_000_000_001));
    }

    #[test]
    fn a_head_is_trusted_only_for_its_own_stamp() {
        let h = Head {
            generation: 3,
            root: ContentHash::of_bytes(b"{}"),
            count: 0,
            dir: stamp(10_000_000_123),
            recorded_ns: 10_000_000_124,
            clock_ns: None,
        };
        assert!(!h.trusted(&stamp(10_000_000_123), None), "racy");
        assert!(
            h.trusted(&stamp(10_000_000_123), Some(3)),
            "written by the caller"
        );
        assert!(!h.trusted(&stamp(10_000_000_999), Some(3)), "changed since");
        let old = Head {
            recorded_ns: 20_000_000_000,
            ..h.clone()
        };
        assert!(old.trusted(&stamp(10_000_000_123), None));
        // Racy by the wall clock, but confirmed after the file system's clock moved on.
        let confirmed = h.clone().confirmed_at(10_000_000_124);
        assert!(confirmed.trusted(&stamp(10_000_000_123), None));
        assert!(
            !confirmed.trusted(&stamp(10_000_000_999), None),
            "changed since"
        );
        let same_tick = h.confirmed_at(10_000_000_123);
        assert!(
            !same_tick.trusted(&stamp(10_000_000_123), None),
            "same tick"
        );
    }

    #[test]
    fn the_file_system_clock_is_read_from_a_probe_beside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tasks");
        fs::create_dir(&dir).unwrap();
        let probe = tmp.path().join("head.clock");
        let before = DirStamp::of(&dir).unwrap();
        let clock = fs_clock(&dir, &probe).unwrap();
        assert!(clock >= before.mtime_ns, "{clock} {before:?}");
        assert_eq!(
            DirStamp::of(&dir).unwrap(),
            before,
            "the directory is not touched"
        );
        assert!(fs_clock(&dir, &tmp.path().join("missing/probe")).is_none());
    }
}
