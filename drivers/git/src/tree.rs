//! Trees as the driver sees them: the task files of `tasks/`, and raw tree objects read and
//! written entry by entry.
//!
//! A remote's trees may hold entries no honest git writes (`..`, `.git`, names with `/`).
//! libgit2's tree builder and index refuse such names, which would make one hostile commit
//! stop every later sync; so trees are written here byte for byte, keeping whatever the
//! remote put in them, and only [`task_id_of_name`] decides what is ever a task file.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository, Tree};
use hypertask_core::TaskId;

/// The directory of task files inside the repository.
pub(crate) const TASKS_DIR: &str = "tasks";
/// The mode of a tree entry that is a directory.
pub(crate) const MODE_TREE: i32 = 0o040000;
/// The mode of a regular, non-executable file: the only mode the driver writes.
pub(crate) const MODE_BLOB: i32 = 0o100644;
/// The mode of an executable file (read as a task file, never written as one).
pub(crate) const MODE_EXECUTABLE: i32 = 0o100755;

/// `tasks/<id>.json`.
pub(crate) fn task_rel_path(id: &TaskId) -> String {
    format!("{TASKS_DIR}/{id}.json")
}

/// The task id of a repository path `tasks/<id>.json`.
pub(crate) fn task_id_of_path(path: &str) -> Option<TaskId> {
    let name = path.strip_prefix(TASKS_DIR)?.strip_prefix('/')?;
    task_id_of_name(name.as_bytes())
}

/// The task id of a file name `<id>.json` (ids are ASCII letters, digits, `_` and `-`, so a
/// name that passes can never be `..`, `.git` or hold a separator).
pub(crate) fn task_id_of_name(name: &[u8]) -> Option<TaskId> {
    TaskId::new(task_stem(name)?).ok()
}

/// Whether `name` is a task file's name, `<id>.json` (as [`task_id_of_name`], without
/// making the id).
pub(crate) fn is_task_name(name: &[u8]) -> bool {
    task_stem(name).is_some_and(TaskId::is_valid)
}

fn task_stem(name: &[u8]) -> Option<&str> {
    std::str::from_utf8(name.strip_suffix(b".json")?).ok()
}

/// One entry of a tree object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub(crate) mode: i32,
    pub(crate) id: Oid,
}

/// A tree's entries by name (raw bytes, exactly as stored).
pub(crate) type RawTree = BTreeMap<Vec<u8>, RawEntry>;

/// The entries of `tree`.
pub(crate) fn entries(tree: &Tree<'_>) -> RawTree {
    tree.iter()
        .map(|e| {
            (
                e.name_bytes().to_vec(),
                RawEntry {
                    mode: e.filemode(),
                    id: e.id(),
                },
            )
        })
        .collect()
}

/// Writes a tree object holding `entries`, in git's order (a directory sorts as if its
/// name ended in `/`), without judging the names.
pub(crate) fn write(repo: &Repository, entries: &RawTree) -> Result<Oid, git2::Error> {
    let mut sorted: Vec<(&Vec<u8>, &RawEntry)> = entries.iter().collect();
    sorted.sort_by(|a, b| git_order(a.0, a.1.mode, b.0, b.1.mode));
    let mut bytes = Vec::with_capacity(entries.len() * 64);
    for (name, e) in sorted {
        bytes.extend_from_slice(format!("{:o} ", e.mode).as_bytes());
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(e.id.as_bytes());
    }
    repo.odb()?.write(ObjectType::Tree, &bytes)
}

fn git_order(a: &[u8], a_mode: i32, b: &[u8], b_mode: i32) -> Ordering {
    let key = |name: &[u8], mode: i32, i: usize| -> Option<u8> {
        match name.get(i) {
            Some(&c) => Some(c),
            None if mode == MODE_TREE && i == name.len() => Some(b'/'),
            None => None,
        }
    };
    let mut i = 0;
    loop {
        match (key(a, a_mode, i), key(b, b_mode, i)) {
            (None, None) => return Ordering::Equal,
            (x, y) if x != y => return x.cmp(&y),
            _ => i += 1,
        }
    }
}

/// The `tasks/` subtree of `tree`, when it is a directory.
pub(crate) fn tasks_subtree<'r>(repo: &'r Repository, tree: &Tree<'_>) -> Option<Tree<'r>> {
    let e = tree.get_name_bytes(TASKS_DIR.as_bytes())?;
    if e.filemode() != MODE_TREE {
        return None;
    }
    repo.find_tree(e.id()).ok()
}

/// The task files of a tree: `tasks/<id>.json` entries that are regular files (executable or
/// not). Symlinks, submodules and anything else named like a task are not task files.
pub(crate) fn task_files(repo: &Repository, tree: &Tree<'_>) -> BTreeMap<TaskId, Oid> {
    let Some(sub) = tasks_subtree(repo, tree) else {
        return BTreeMap::new();
    };
    sub.iter()
        .filter(|e| matches!(e.filemode(), MODE_BLOB | MODE_EXECUTABLE))
        .filter_map(|e| Some((task_id_of_name(e.name_bytes())?, e.id())))
        .collect()
}

/// `tree` with its task files changed: `Some(blob)` sets `tasks/<id>.json` (as a regular,
/// non-executable file), `None` removes it. Every other entry is kept as it is.
pub(crate) fn with_task_files(
    repo: &Repository,
    tree: Option<&Tree<'_>>,
    changes: &BTreeMap<TaskId, Option<Oid>>,
) -> Result<Oid, git2::Error> {
    let mut root = tree.map(entries).unwrap_or_default();
    let mut tasks = tree
        .and_then(|t| tasks_subtree(repo, t))
        .map(|t| entries(&t))
        .unwrap_or_default();
    for (id, blob) in changes {
        let name = format!("{id}.json").into_bytes();
        match blob {
            Some(id) => {
                tasks.insert(
                    name,
                    RawEntry {
                        mode: MODE_BLOB,
                        id: *id,
                    },
                );
            }
            None => {
                tasks.remove(&name);
            }
        }
    }
    if tasks.is_empty() {
        root.remove(TASKS_DIR.as_bytes());
    } else {
        root.insert(
            TASKS_DIR.as_bytes().to_vec(),
            RawEntry {
                mode: MODE_TREE,
                id: write(repo, &tasks)?,
            },
        );
    }
    write(repo, &root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_orders_a_directory_as_if_it_ended_in_a_slash() {
        fn t(n: &str) -> (&[u8], i32) {
            (n.as_bytes(), MODE_TREE)
        }
        fn f(n: &str) -> (&[u8], i32) {
            (n.as_bytes(), MODE_BLOB)
        }
        let cmp = |a: (&[u8], i32), b: (&[u8], i32)| git_order(a.0, a.1, b.0, b.1);
        assert_eq!(cmp(f("a.b"), t("a")), Ordering::Less); // '.' < '/'
        assert_eq!(cmp(t("a"), f("a0")), Ordering::Less); // '/' < '0'
        assert_eq!(cmp(f("a"), f("a0")), Ordering::Less);
        assert_eq!(cmp(t("tasks"), t("tasks")), Ordering::Equal);
    }

    #[test]
    fn only_plain_task_names_are_task_files() {
        assert!(task_id_of_name(b"abc-1_x.json").is_some());
        assert!(is_task_name(b"abc-1_x.json"));
        for bad in [
            &b"..json"[..],
            b"../x.json",
            b".git",
            b"a/b.json",
            b".json",
            b"x.json.",
            b"x.JSON",
            b"\xff.json",
        ] {
            assert!(task_id_of_name(bad).is_none(), "{bad:?}");
            assert!(!is_task_name(bad), "{bad:?}");
        }
        assert!(task_id_of_path("tasks/x.json").is_some());
        assert!(task_id_of_path("tasks/sub/x.json").is_none());
        assert!(task_id_of_path("other/x.json").is_none());
    }
}
