//! Reading one task file: only a regular file, never past the size limit, and only a valid
//! task whose id is the file's name.

use std::fs;
use std::io;
use std::path::Path;

use super::safe::{read_capped_meta, too_large_message};
use super::{FileError, TaskDir};
use crate::head::count_task_read;
use crate::task::{Task, TaskId};

impl TaskDir {
    /// Reads one task. A missing file is `Ok(None)`; a corrupt one, or one whose id is not its
    /// name, is an error naming the file.
    pub fn read(&self, id: &TaskId) -> Result<Option<Task>, FileError> {
        let path = self.path_of(id);
        match self.read_path(id, &path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.io == Some(io::ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads and validates a file that should hold task `id`: a regular file (never through a
    /// symbolic link, never blocking on a FIFO) of at most [`max_task_bytes`](Self::max_task_bytes).
    pub fn read_path(&self, id: &TaskId, path: &Path) -> Result<Task, FileError> {
        self.read_file(id, path).map(|(task, _)| task)
    }

    /// [`read_path`](Self::read_path), with the metadata of the file as it was read.
    pub(super) fn read_file(
        &self,
        id: &TaskId,
        path: &Path,
    ) -> Result<(Task, fs::Metadata), FileError> {
        let max = self.inner.max_task_bytes;
        count_task_read();
        let (bytes, meta) = read_capped_meta(path, max).map_err(|e| {
            let (message, io) = match e.kind() {
                io::ErrorKind::FileTooLarge => (too_large_message(max), None),
                io::ErrorKind::InvalidData => (e.to_string(), None),
                kind => (format!("cannot read: {e}"), Some(kind)),
            };
            FileError {
                path: path.to_owned(),
                message,
                io,
            }
        })?;
        let task = Task::from_json(&bytes).map_err(|e| FileError {
            path: path.to_owned(),
            message: format!("not a valid task ({e})"),
            io: None,
        })?;
        if task.id() != id {
            return Err(FileError {
                path: path.to_owned(),
                message: format!("holds task '{}' but is named for '{id}'", task.id()),
                io: None,
            });
        }
        Ok((task, meta))
    }
}
