//! Every file the tool creates goes through here, so that none is created
//! with loose permissions or through a link someone planted.
//!
//! - Content is written to a temporary file with a random name in the
//!   destination's directory, opened with `O_CREAT | O_EXCL | O_NOFOLLOW`
//!   (a link or file already at that name is never followed or reused),
//!   fsynced, then renamed over the destination (the rename replaces a link
//!   at the destination rather than writing through it) and the directory
//!   fsynced. A reader sees the old file or the whole new one.
//! - [`Access::Private`] files (keys, the store) are created `0600`,
//!   [`Access::Shared`] ones (reports, bundles, public keys) `0644`; the
//!   process umask can only make them stricter.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Who may read a created file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The owner only (`0600`): private keys, the store.
    Private,
    /// Anyone may read, the owner writes (`0644`): reports, bundles,
    /// public keys.
    Shared,
}

impl Access {
    /// The Unix mode bits.
    pub fn mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Shared => 0o644,
        }
    }
}

/// Open options that create `path` fresh: never an existing file, never
/// through a link, with `access`'s mode.
fn fresh(access: Access) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(access.mode()).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = access;
    o
}

fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex::encode(b))
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A file being written: a temporary beside its destination until
/// [`commit`](AtomicFile::commit), removed if dropped before.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    /// Written straight into `dest`, a character device or a FIFO already
    /// there (`--output /dev/null`, a pipe to another process): renaming a
    /// file over it would replace the device itself (run as root, the
    /// system's `/dev/null`).
    direct: bool,
}

/// `dest` as found, not following a link: `Some(true)` a character device
/// or FIFO to write into, an error for what no report may go to (a block
/// device, a socket, a directory), `None` otherwise (absent, a regular
/// file or a link: replaced by the rename).
#[cfg(unix)]
fn stream_target(dest: &Path) -> io::Result<bool> {
    use std::os::unix::fs::FileTypeExt;
    let t = match std::fs::symlink_metadata(dest) {
        Ok(m) => m.file_type(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if t.is_char_device() || t.is_fifo() {
        Ok(true)
    } else if t.is_block_device() || t.is_socket() || t.is_dir() {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file to write to", dest.display()),
        ))
    } else {
        Ok(false)
    }
}

#[cfg(not(unix))]
fn stream_target(_dest: &Path) -> io::Result<bool> {
    Ok(false)
}

impl AtomicFile {
    /// Start writing `dest`.
    pub fn create(dest: &Path, access: Access) -> io::Result<AtomicFile> {
        if stream_target(dest)? {
            let mut o = OpenOptions::new();
            o.write(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.custom_flags(libc::O_NOFOLLOW);
            }
            return Ok(AtomicFile {
                file: Some(o.open(dest)?),
                tmp: PathBuf::new(),
                dest: dest.to_path_buf(),
                direct: true,
            });
        }
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", random_hex()?));
        let tmp = dir_of(dest).join(tmp_name);
        let file = fresh(access).open(&tmp)?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            dest: dest.to_path_buf(),
            direct: false,
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        match self.file.take() {
            Some(mut f) => {
                f.flush()?;
                f.sync_all()
            }
            None => Ok(()),
        }
    }

    /// The file being written, while it is not committed: for copies the
    /// kernel makes from another file (`std::io::copy` between files uses
    /// `copy_file_range`).
    pub fn file_mut(&mut self) -> Option<&mut File> {
        self.file.as_mut()
    }

    /// Put the file in place, replacing whatever is at the destination.
    pub fn commit(mut self) -> io::Result<()> {
        if self.direct {
            // A device or FIFO cannot be fsynced; it has what was written.
            return match self.file.take() {
                Some(mut f) => f.flush(),
                None => Ok(()),
            };
        }
        self.sync()?;
        std::fs::rename(&self.tmp, &self.dest)?;
        self.tmp = PathBuf::new();
        sync_dir(dir_of(&self.dest))
    }

    /// Put the file in place only if nothing is at the destination
    /// (`AlreadyExists` otherwise): for keys, which are never overwritten.
    pub fn commit_new(mut self) -> io::Result<()> {
        if self.direct {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", self.dest.display()),
            ));
        }
        self.sync()?;
        // A hard link fails rather than replace: no window where another
        // file at the destination is clobbered.
        std::fs::hard_link(&self.tmp, &self.dest)?;
        let _ = std::fs::remove_file(&self.tmp);
        self.tmp = PathBuf::new();
        sync_dir(dir_of(&self.dest))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("file already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Write `bytes` to `path` atomically (see the module docs).
pub fn write(path: &Path, access: Access, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path, access)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Write `bytes` to `path` atomically, failing with `AlreadyExists` if
/// something is there.
pub fn write_new(path: &Path, access: Access, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path, access)?;
    f.write_all(bytes)?;
    f.commit_new()
}

/// Create an empty `path` with `access` if nothing is there, so that a
/// program that creates it otherwise (SQLite, with `0644`) finds it made.
/// SQLite gives its `-wal` and `-shm` files the database file's mode.
pub fn ensure_exists(path: &Path, access: Access) -> io::Result<()> {
    match fresh(access).open(path) {
        Ok(f) => {
            f.sync_all()?;
            sync_dir(dir_of(path))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn writes_with_the_mode_and_never_through_a_planted_link() {
        let d = tempfile::tempdir().expect("tempdir");
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep").expect("victim");
        let out = d.path().join("out.json");
        symlink(&victim, &out).expect("link");
        write(&out, Access::Shared, b"{}").expect("write");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"keep");
        assert_eq!(std::fs::read(&out).expect("out"), b"{}");
        assert!(!std::fs::symlink_metadata(&out)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert!(mode(&out) & 0o022 == 0, "{:o}", mode(&out));

        let key = d.path().join("k.key");
        write_new(&key, Access::Private, b"secret").expect("key");
        assert_eq!(mode(&key), 0o600);
        let again = write_new(&key, Access::Private, b"other").expect_err("exists");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&key).expect("key"), b"secret");
        // No temporary left behind, whatever happened.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");

        let db = d.path().join("s.db");
        ensure_exists(&db, Access::Private).expect("db");
        assert_eq!(mode(&db), 0o600);
        ensure_exists(&db, Access::Private).expect("again");
    }

    #[test]
    fn a_fifo_at_the_destination_is_written_into_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).expect("read fifo"))
        };
        write(&fifo, Access::Shared, b"report").expect("write");
        assert_eq!(reader.join().expect("reader"), b"report");
        let t = std::fs::symlink_metadata(&fifo).expect("meta").file_type();
        assert!(t.is_fifo(), "still the FIFO");
        // No temporary left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[test]
    fn a_directory_or_an_existing_key_is_refused_and_a_file_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = write(dir.path(), Access::Shared, b"x").expect_err("a directory");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let f = dir.path().join("r.json");
        write(&f, Access::Shared, b"one").expect("write");
        write(&f, Access::Shared, b"two").expect("replace");
        assert_eq!(std::fs::read(&f).expect("read"), b"two");
        let e = write_new(&f, Access::Private, b"key").expect_err("exists");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    }
}
