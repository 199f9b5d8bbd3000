//! Safe file access in directories other people can write to (a shared folder, a git working
//! clone, the cache itself): nothing is followed, created or truncated through a symbolic link,
//! nothing blocks on a FIFO or a device, nothing is read past a size limit.

use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

/// Takes an exclusive lock on `path` (created when missing), polling up to `timeout` while
/// another process holds it. `Ok(None)`: the wait ran out. The lock lasts as long as the file
/// stays open, and the OS releases it when its process dies, so a crash never leaves it stuck.
///
/// The lock file may sit where others can write (a shared folder): it is opened without
/// following a symbolic link (so nothing is ever created or truncated through one) and without
/// blocking, and anything but a regular file is refused with an `InvalidData` error.
pub fn lock_file(path: &Path, timeout: std::time::Duration) -> io::Result<Option<File>> {
    refuse_link(path)?;
    let mut options = fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    let file = no_follow(&mut options)
        .open(path)
        .map_err(|e| explain_open_error(path, e))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Opens `path` for reading if, and only if, it is a regular file. A symbolic link is never
/// followed (`O_NOFOLLOW`), a FIFO or device never blocks the open (`O_NONBLOCK`), and the check
/// uses the metadata of the opened handle, so the file cannot be swapped after it.
///
/// # Errors
/// `NotFound` when nothing is there; `InvalidData` ("is a symbolic link, not a regular file")
/// for anything that is not a regular file; other I/O errors as they come.
pub fn open_regular(path: &Path) -> io::Result<(File, fs::Metadata)> {
    refuse_link(path)?;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    let file = no_follow(&mut options)
        .open(path)
        .map_err(|e| explain_open_error(path, e))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    Ok((file, meta))
}

/// Reads a regular file (see [`open_regular`]) of at most `max` bytes. A larger file is refused
/// by its size before anything is read, and reading stops after `max + 1` bytes should it grow
/// meanwhile, so a huge (or sparse) file costs one `fstat`.
///
/// # Errors
/// Those of [`open_regular`], and `FileTooLarge` when the file holds more than `max` bytes.
pub fn read_capped(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    read_capped_meta(path, max).map(|(bytes, _)| bytes)
}

pub(super) fn read_capped_meta(path: &Path, max: usize) -> io::Result<(Vec<u8>, fs::Metadata)> {
    let (file, meta) = open_regular(path)?;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("holds more than the limit of {max} bytes"),
        )
    };
    if meta.len() > max as u64 {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok((bytes, meta))
}

/// Creates a new file in `dir` named `prefix` followed by 128 random bits in hex, so nobody can
/// plant anything at the name beforehand. The file is created exclusively (`O_CREAT|O_EXCL`,
/// never through a symbolic link): an existing name is never opened, another is drawn.
pub fn create_exclusive(dir: &Path, prefix: &str) -> io::Result<(PathBuf, File)> {
    let mut attempts = 0;
    loop {
        let path = dir.join(format!("{prefix}{:032x}", rand::random::<u128>()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        match no_follow(&mut options).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Never follow a symbolic link in the last component, never block opening a FIFO or device.
#[cfg(unix)]
pub(super) fn no_follow(options: &mut fs::OpenOptions) -> &mut fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    options.custom_flags(flags.bits() as i32)
}

/// Elsewhere the open itself may follow a link: [`refuse_link`] checks the path first, and the
/// check of the opened handle still applies.
#[cfg(not(unix))]
pub(super) fn no_follow(options: &mut fs::OpenOptions) -> &mut fs::OpenOptions {
    options
}

/// Where opens cannot refuse to follow a link, refuses a path that is one before opening it.
#[cfg(not(unix))]
pub(super) fn refuse_link(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(not_regular(meta.file_type())),
        _ => Ok(()),
    }
}

#[cfg(unix)]
pub(super) fn refuse_link(_: &Path) -> io::Result<()> {
    Ok(())
}

/// An open refused because of what the path is (`ELOOP` for a symbolic link under
/// `O_NOFOLLOW`, `ENXIO` for a FIFO without a reader) says what it is.
pub(super) fn explain_open_error(path: &Path, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        return e;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() => not_regular(meta.file_type()),
        _ => e,
    }
}

/// "is a symbolic link, not a regular file", as an `InvalidData` error.
pub(super) fn not_regular(file_type: fs::FileType) -> io::Error {
    let what = if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        special_kind(file_type)
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("is {what}, not a regular file"),
    )
}

#[cfg(unix)]
pub(super) fn special_kind(file_type: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
pub(super) fn special_kind(_: fs::FileType) -> &'static str {
    "a special file"
}

pub(super) fn too_large_message(max: usize) -> String {
    format!("is larger than the limit of {max} bytes for one task (max_task_bytes)")
}

/// `name` with every character but `A-Z a-z 0-9 - _` replaced by `_`: a config-given name
/// (a driver instance) made safe as a file name.
pub fn file_safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes one file atomically: a new file made by [`create_exclusive`] in the same directory,
/// then a rename over `path` (which replaces a symbolic link there, never writes through it).
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    write_atomic_meta(path, bytes, durable).map(drop)
}

/// [`write_atomic`], answering the metadata of the file written, taken from its handle after
/// the rename: what a `stat` of `path` finds until someone replaces it.
pub(super) fn write_atomic_meta(
    path: &Path,
    bytes: &[u8],
    durable: bool,
) -> io::Result<fs::Metadata> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let (tmp, mut f) = create_exclusive(dir, &format!(".{name}.tmp-"))?;
    let result = (|| -> io::Result<fs::Metadata> {
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        f.metadata()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Flushes a directory entry change (a rename) to disk.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::task::DEFAULT_MAX_TASK_BYTES;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;
    use std::time::Duration;

    fn mkfifo(path: &Path) {
        rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from(0o644)).unwrap();
    }

    /// Runs `f` on its own thread. Should it hang on `fifo`, the FIFO's other end is opened so
    /// the thread is released, and the test fails.
    fn never_hangs<T: Send + 'static>(fifo: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(v) => v,
            Err(_) => {
                let mut writer = fs::OpenOptions::new();
                let _w = no_follow(writer.write(true)).open(fifo);
                let mut reader = fs::OpenOptions::new();
                let _r = no_follow(reader.read(true)).open(fifo);
                panic!("blocked on the FIFO {}", fifo.display());
            }
        }
    }

    #[test]
    fn open_regular_refuses_links_fifos_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.txt");
        fs::write(&outside, b"secret").unwrap();
        let link = tmp.path().join("link.json");
        symlink(&outside, &link).unwrap();
        let fifo = tmp.path().join("fifo.json");
        mkfifo(&fifo);
        let dir = tmp.path().join("dir.json");
        fs::create_dir(&dir).unwrap();

        let err = |p: &Path| open_regular(p).map(|_| ()).unwrap_err();
        let e = err(&link);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "is a symbolic link, not a regular file");
        let f = fifo.clone();
        let e = never_hangs(&fifo, move || open_regular(&f).map(|_| ()).unwrap_err());
        assert_eq!(e.to_string(), "is a FIFO, not a regular file");
        assert_eq!(err(&dir).to_string(), "is a directory, not a regular file");
        assert_eq!(
            err(&tmp.path().join("absent")).kind(),
            io::ErrorKind::NotFound
        );
        assert!(open_regular(&outside).is_ok());
    }

    #[test]
    fn read_capped_stops_at_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs::write(&p, b"12345").unwrap();
        assert_eq!(read_capped(&p, 5).unwrap(), b"12345");
        assert_eq!(
            read_capped(&p, 4).unwrap_err().kind(),
            io::ErrorKind::FileTooLarge
        );
        // A sparse file far beyond the limit is refused by its size: nothing is read.
        let sparse = tmp.path().join("sparse");
        File::create(&sparse).unwrap().set_len(3 << 30).unwrap();
        let e = read_capped(&sparse, DEFAULT_MAX_TASK_BYTES).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "holds more than the limit of 1048576 bytes");
    }

    #[test]
    fn a_lock_file_is_never_followed_nor_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let wait = Duration::from_secs(1);
        // A symbolic link to a file that does not exist yet: the target is never created.
        let target = tmp.path().join("planted");
        let link = tmp.path().join("link.lock");
        symlink(&target, &link).unwrap();
        let e = lock_file(&link, wait).unwrap_err();
        assert_eq!(e.to_string(), "is a symbolic link, not a regular file");
        assert!(!target.exists());
        // A symbolic link to a file with content: never truncated or locked through.
        fs::write(&target, b"keep me").unwrap();
        assert!(lock_file(&link, wait).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
        // A FIFO: refused at once.
        let fifo = tmp.path().join("fifo.lock");
        mkfifo(&fifo);
        let f = fifo.clone();
        let e = never_hangs(&fifo, move || lock_file(&f, wait).map(|_| ()).unwrap_err());
        assert_eq!(e.to_string(), "is a FIFO, not a regular file");
        // A regular file keeps its content.
        let plain = tmp.path().join("plain.lock");
        fs::write(&plain, b"pid 1").unwrap();
        assert!(lock_file(&plain, wait).unwrap().is_some());
        assert_eq!(fs::read(&plain).unwrap(), b"pid 1");
    }

    #[test]
    fn new_files_get_fresh_unpredictable_names_and_links_are_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, _) = create_exclusive(tmp.path(), ".probe-").unwrap();
        let (b, _) = create_exclusive(tmp.path(), ".probe-").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(!name.contains(&std::process::id().to_string()), "{name}");
        assert_eq!(name.len(), ".probe-".len() + 32);

        let victim = tmp.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        let dest = tmp.path().join("dest.json");
        symlink(&victim, &dest).unwrap();
        write_atomic(&dest, b"new", false).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert!(fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
