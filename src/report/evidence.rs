//! Signed evidence bundles: a gzip'd tar holding a run's reports, the
//! inventory per source as read, the approvals as read, the rules evaluated and the
//! audit slice, with `manifest.json` (SHA-256 and size of every other file)
//! and `manifest.sig` (raw 64-byte Ed25519 signature of `manifest.json`).
//!
//! Keys are standard PEM (PKCS#8 private, SPKI public), so an auditor can
//! check a bundle without this tool:
//! `openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in manifest.json -sigfile manifest.sig`
//! then `sha256sum` each file against the manifest.
//!
//! [`verify`] reports every problem, each naming the part that failed:
//! the signature, a file altered, missing, added or duplicated.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::report::render::{write_files, Format};
use crate::report::{ReportError, RunData};
use crate::safe_file::{self, Access, AtomicFile};
use crate::store::SqlStore;

/// Bundle format written in the manifest.
pub const FORMAT: &str = "nhi-assure-evidence/1";
/// The manifest's name in the archive.
pub const MANIFEST: &str = "manifest.json";
/// The signature's name in the archive.
pub const SIGNATURE: &str = "manifest.sig";
/// Largest archive content read back (decompressed), against gzip bombs,
/// until the manifest is read and its signature verifies: from then on,
/// what the signed manifest lists (a million findings make 8 GB).
const MAX_TOTAL: u64 = 4 << 30;

/// Why an evidence command failed (a bundle that fails verification is not
/// an error: see [`Verification`]).
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// File I/O.
    #[error("{path}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file could not be read as an Ed25519 PEM key.
    #[error("{path}: not an Ed25519 {what} key in PEM ({message})")]
    Key {
        /// Path.
        path: String,
        /// `private` or `public`.
        what: &'static str,
        /// Cause.
        message: String,
    },
    /// Refusing to overwrite a key.
    #[error("{0} exists: refusing to overwrite a key")]
    Exists(String),
    /// Building the report failed.
    #[error(transparent)]
    Report(#[from] ReportError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One file listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path inside the archive.
    pub path: String,
    /// Hex SHA-256 of its content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl ManifestFile {
    /// The manifest's entries for `files` (archive path, content).
    #[cfg(test)]
    fn listing(files: &[(String, Vec<u8>)]) -> Vec<ManifestFile> {
        files
            .iter()
            .map(|(path, b)| ManifestFile {
                path: path.clone(),
                sha256: sha256_hex(b),
                size: b.len() as u64,
            })
            .collect()
    }
}

/// The signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Tool version that wrote it.
    pub tool_version: String,
    /// When the bundle was made.
    pub created_at: String,
    /// Run the evidence is about.
    pub run_id: i64,
    /// That run's start.
    pub run_started_at: String,
    /// That run's evaluation instant.
    pub as_of: String,
    /// Hex SHA-256 of the signer's raw public key (which key to use).
    pub public_key_sha256: String,
    /// Every other file of the archive.
    pub files: Vec<ManifestFile>,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Hex SHA-256 of a public key's raw bytes: how manifests name their key.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())
}

/// `PREFIX.EXT`: the extension is added, never substituted, so a prefix
/// such as `release.v2` keeps its last part.
fn suffixed(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Write a new key pair: `PREFIX.key` (PKCS#8 PEM, mode 0600) and
/// `PREFIX.pub` (SPKI PEM, 0644). Existing files are never overwritten.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf), EvidenceError> {
    let key_path = suffixed(prefix, "key");
    let pub_path = suffixed(prefix, "pub");
    for p in [&key_path, &pub_path] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(EvidenceError::Exists(p.display().to_string()));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| EvidenceError::Io {
        path: "getrandom".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| EvidenceError::Key {
            path: key_path.display().to_string(),
            what: "private",
            message: e.to_string(),
        })?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| EvidenceError::Key {
            path: pub_path.display().to_string(),
            what: "public",
            message: e.to_string(),
        })?;
    let new = |path: &Path, access, bytes: &[u8]| {
        safe_file::write_new(path, access, bytes).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                EvidenceError::Exists(path.display().to_string())
            } else {
                io(path)(e)
            }
        })
    };
    new(&key_path, Access::Private, pem.as_bytes())?;
    new(&pub_path, Access::Shared, public.as_bytes())?;
    Ok((key_path, pub_path))
}

/// Read a private key file.
pub fn read_private(path: &Path) -> Result<SigningKey, EvidenceError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| EvidenceError::Key {
        path: path.display().to_string(),
        what: "private",
        message: e.to_string(),
    })
}

/// Read a public key file.
pub fn read_public(path: &Path) -> Result<VerifyingKey, EvidenceError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| EvidenceError::Key {
        path: path.display().to_string(),
        what: "public",
        message: e.to_string(),
    })
}

/// The audit slice of a run, as JSON lines: the hash-chained audit log's
/// entries for the run (findings opened and resolved, action intents and
/// outcomes, the run record), each with its hash and its predecessor's.
pub async fn audit_slice(store: &SqlStore, run_id: i64) -> Result<Vec<u8>, ReportError> {
    let mut out = Vec::new();
    for e in store.audit_entries(Some(run_id)).await? {
        serde_json::to_writer(&mut out, &e)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The whole chain's state at export: intact with its length and head hash
/// (signed into the bundle, so a later truncation of the log shows), or
/// where it broke.
pub async fn audit_chain(store: &SqlStore) -> Result<Vec<u8>, ReportError> {
    let verdict = store.audit_verify().await?;
    let mut b = serde_json::to_vec_pretty(&verdict)?;
    b.push(b'\n');
    Ok(b)
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// Run.
    pub run_id: i64,
    /// Files in the bundle (manifest and signature included).
    pub files: usize,
    /// Archive size in bytes.
    pub bytes: u64,
}

fn json_bytes<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, ReportError> {
    let mut b = serde_json::to_vec_pretty(v)?;
    b.push(b'\n');
    Ok(b)
}

fn header(path: &str, size: u64, mtime: u64) -> std::io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// A tar entry as the `tar` crate writes it (the tests' bundles).
#[cfg(test)]
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let h = header(path, bytes.len() as u64, mtime)?;
    tar.append(&h, bytes)
}

/// A bundle part spooled to an unlinked temporary file, hashed, counted
/// and deflated as it was written.
struct Spooled {
    path: String,
    /// The part deflated ([`Deflated`]).
    file: std::fs::File,
    sha256: String,
    size: u64,
    /// CRC-32 of the part as written (for the gzip trailer).
    crc: crc32fast::Hasher,
    /// Length of its deflated form.
    deflated: u64,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size = self.size.saturating_add(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Raw deflate of one piece of the archive, ended by a sync flush
/// (byte-aligned, not final), so that pieces deflated apart (each part on
/// the thread that renders it) join into one deflate stream: the bundle
/// stays one gzip member, as the verifier requires, and no part is
/// written to disk, then read back, uncompressed (at a million findings
/// they are 8 GB). Level 1: the default level spent 55 s on them.
struct Deflated<W> {
    out: W,
    z: flate2::Compress,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl<W: Write> Deflated<W> {
    fn new(out: W) -> Self {
        Deflated {
            out,
            z: flate2::Compress::new(flate2::Compression::fast(), false),
            buf: Vec::with_capacity(256 << 10),
            crc: crc32fast::Hasher::new(),
        }
    }

    fn deflate(&mut self, mut input: &[u8], flush: flate2::FlushCompress) -> std::io::Result<()> {
        loop {
            self.buf.clear();
            let before = self.z.total_in();
            self.z
                .compress_vec(input, &mut self.buf, flush)
                .map_err(std::io::Error::other)?;
            let used = usize::try_from(self.z.total_in().saturating_sub(before))
                .unwrap_or(usize::MAX)
                .min(input.len());
            input = &input[used..];
            if used == 0 && self.buf.is_empty() && !input.is_empty() {
                // Never spin on a compressor that takes nothing.
                return Err(std::io::Error::other("deflate made no progress"));
            }
            self.out.write_all(&self.buf)?;
            // Done when all is taken and the output had room to spare
            // (nothing held back for want of space).
            if input.is_empty() && self.buf.len() < self.buf.capacity() {
                return Ok(());
            }
        }
    }

    /// End the piece (sync flush): its output, and the CRC-32 and length
    /// of its input.
    fn finish(mut self) -> std::io::Result<(W, crc32fast::Hasher)> {
        self.deflate(&[], flate2::FlushCompress::Sync)?;
        Ok((self.out, self.crc))
    }
}

impl<W: Write> Write for Deflated<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.crc.update(buf);
        self.deflate(buf, flate2::FlushCompress::None)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Where a bundle is written. A spooled part is copied in whole: into a
/// file the kernel copies it (`copy_file_range`), so its deflated bytes
/// (570 MB at a million findings) do not pass through this process again.
trait Sink: Write {
    /// Copy `part` in, after what was written.
    fn copy_part(&mut self, part: &mut std::io::Take<&mut std::fs::File>) -> std::io::Result<u64> {
        std::io::copy(part, self)
    }
}

impl Sink for Vec<u8> {}

impl Sink for std::io::BufWriter<AtomicFile> {
    fn copy_part(&mut self, part: &mut std::io::Take<&mut std::fs::File>) -> std::io::Result<u64> {
        self.flush()?;
        match self.get_mut().file_mut() {
            Some(f) => std::io::copy(part, f),
            None => std::io::copy(part, self),
        }
    }
}

/// One gzip member written from pieces deflated apart: the small ones
/// (tar headers, padding, manifest, signature) here, the parts as they
/// were spooled. Its CRC-32 is the pieces' combined.
struct Member<W: Sink> {
    out: W,
    crc: crc32fast::Hasher,
    size: u64,
}

impl<W: Sink> Member<W> {
    fn new(mut out: W) -> std::io::Result<Self> {
        // Magic, deflate, no flags, no mtime, no extra flags, unknown OS.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        Ok(Member {
            out,
            crc: crc32fast::Hasher::new(),
            size: 0,
        })
    }

    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        let mut d = Deflated::new(Vec::new());
        d.write_all(b)?;
        let (z, crc) = d.finish()?;
        self.out.write_all(&z)?;
        self.crc.combine(&crc);
        self.size = self.size.wrapping_add(b.len() as u64);
        Ok(())
    }

    /// A tar entry: header, data (deflated here), padding to a block.
    fn entry(&mut self, path: &str, data: &[u8], mtime: u64) -> std::io::Result<()> {
        let h = header(path, data.len() as u64, mtime)?;
        self.bytes(h.as_bytes())?;
        self.bytes(data)?;
        self.bytes(&padding(data.len() as u64))
    }

    /// A spooled part as a tar entry; exactly the bytes hashed (a part
    /// whose spool changed length since fails).
    fn part(&mut self, p: &mut Spooled, mtime: u64) -> std::io::Result<()> {
        let h = header(&p.path, p.size, mtime)?;
        self.bytes(h.as_bytes())?;
        let copied = self
            .out
            .copy_part(&mut Read::take(&mut p.file, p.deflated))?;
        if copied != p.deflated {
            return Err(std::io::Error::other(format!(
                "{}: spool shorter than written",
                p.path
            )));
        }
        self.crc.combine(&p.crc);
        self.size = self.size.wrapping_add(p.size);
        self.bytes(&padding(p.size))
    }

    /// The tar's end (two zero blocks), the final deflate block (empty,
    /// fixed codes) and the trailer: CRC-32 and length mod 2^32.
    fn finish(mut self) -> std::io::Result<W> {
        self.bytes(&[0; 1024])?;
        self.out.write_all(&[0x03, 0x00])?;
        self.out
            .write_all(&self.crc.clone().finalize().to_le_bytes())?;
        self.out.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(self.out)
    }
}

/// Zeros that pad `size` bytes to a tar block.
fn padding(size: u64) -> Vec<u8> {
    vec![0; ((512 - size % 512) % 512) as usize]
}

fn spool(
    path: &str,
    write: impl FnOnce(&mut dyn Write) -> Result<(), ReportError>,
) -> Result<Spooled, EvidenceError> {
    let tmp = std::path::Path::new("(temporary file)");
    let file = tempfile::tempfile().map_err(io(tmp))?;
    // Buffered before the hash: serialisers write a few bytes at a time,
    // and the hash and the deflater work best on large slices.
    let mut w = std::io::BufWriter::with_capacity(
        1 << 20,
        Hashing {
            inner: Deflated::new(file),
            hash: Sha256::new(),
            size: 0,
        },
    );
    write(&mut w)?;
    let Hashing { inner, hash, size } = w.into_inner().map_err(|e| io(tmp)(e.into_error()))?;
    let deflated = inner;
    let (mut file, crc) = deflated.finish().map_err(io(tmp))?;
    let length = std::io::Seek::stream_position(&mut file).map_err(io(tmp))?;
    std::io::Seek::rewind(&mut file).map_err(io(tmp))?;
    Ok(Spooled {
        path: path.to_string(),
        file,
        sha256: hex::encode(hash.finalize()),
        size,
        crc,
        deflated: length,
    })
}

/// `v` as compact JSON: the inventory of a million credentials is for
/// tools, and pretty-printing doubled it.
fn spool_json<T: Serialize + ?Sized>(path: &str, v: &T) -> Result<Spooled, EvidenceError> {
    spool(path, |w| {
        serde_json::to_writer(&mut *w, v)?;
        w.write_all(b"\n").map_err(|e| ReportError::Render {
            what: "json",
            message: e.to_string(),
        })
    })
}

/// Export run `data` as a signed bundle. Every part is written to a
/// temporary file as it is rendered and hashed on the way, then copied
/// into the archive: memory holds one run's data, not its bundle. The
/// reports are written at once from one read of the findings
/// ([`write_files`]).
pub async fn export(
    store: &SqlStore,
    data: &RunData,
    key: &SigningKey,
    out: &Path,
) -> Result<ExportSummary, EvidenceError> {
    let mut laps = crate::pass::Laps::start();
    // The reading's three files are written alongside the reports.
    let (reports, reading) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let reading = s.spawn(|| {
                Ok::<_, EvidenceError>(vec![
                    spool_json("inventory.json", &data.reading.sources)?,
                    spool_json("approvals.json", &data.reading.approvals)?,
                    spool_json("rules.json", &data.reading.rules)?,
                ])
            });
            let reports = write_files(data, &Format::ALL, &[], &|name, write| {
                spool(&format!("reports/{name}"), |w| write(w))
            });
            let reading = reading.join().map_err(|_| ReportError::Render {
                what: "evidence",
                message: "writing the reading panicked".into(),
            });
            (reports, reading)
        })
    });
    let mut parts = vec![spool_json("run.json", &data.run)?];
    parts.extend(reports?.into_iter().map(|(_, part)| part));
    parts.extend(reading??);
    laps.lap("reports and reading");
    let audit = audit_slice(store, data.run.id).await?;
    parts.push(spool("audit.jsonl", |w| {
        w.write_all(&audit).map_err(|e| ReportError::Render {
            what: "audit",
            message: e.to_string(),
        })
    })?);
    let chain = audit_chain(store).await?;
    parts.push(spool("audit-chain.json", |w| {
        w.write_all(&chain).map_err(|e| ReportError::Render {
            what: "audit",
            message: e.to_string(),
        })
    })?);

    laps.lap("audit");
    let now = chrono::Utc::now();
    let manifest = Manifest {
        format: FORMAT.into(),
        tool_version: data.version.into(),
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        run_id: data.run.id,
        run_started_at: data.run.started_at.clone(),
        as_of: data.run.as_of.clone(),
        public_key_sha256: key_id(&key.verifying_key()),
        files: parts
            .iter()
            .map(|p| ManifestFile {
                path: p.path.clone(),
                sha256: p.sha256.clone(),
                size: p.size,
            })
            .collect(),
    };
    let manifest_bytes = json_bytes(&manifest)?;
    let sig_bytes = key.sign(&manifest_bytes).to_bytes();

    let file = AtomicFile::create(out, Access::Shared).map_err(io(out))?;
    let mtime = now.timestamp().max(0) as u64;
    let mut gz = Member::new(std::io::BufWriter::with_capacity(1 << 20, file)).map_err(io(out))?;
    gz.entry(MANIFEST, &manifest_bytes, mtime)
        .map_err(io(out))?;
    gz.entry(SIGNATURE, &sig_bytes, mtime).map_err(io(out))?;
    for p in &mut parts {
        gz.part(p, mtime).map_err(io(out))?;
    }
    gz.finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(AtomicFile::commit)
        .map_err(io(out))?;
    laps.lap("archive");
    tracing::debug!(run = data.run.id, phases = ?laps.marks, "evidence timings");
    let bytes = std::fs::metadata(out).map_err(io(out))?.len();
    tracing::info!(
        run = data.run.id,
        bytes,
        files = parts.len() + 2,
        "evidence bundle written"
    );
    Ok(ExportSummary {
        run_id: data.run.id,
        files: parts.len() + 2,
        bytes,
    })
}

/// One verification failure, naming the part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The part: a file path, `manifest.json`, `manifest.sig` or `archive`.
    pub part: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The result of verifying a bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// Files whose hash matched.
    pub verified: Vec<String>,
    /// Every problem found (empty: the bundle is intact and signed by the key).
    pub failures: Vec<Failure>,
}

impl Verification {
    /// Whether the bundle passed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Largest `manifest.json` read (it is held in memory to be parsed).
const MAX_MANIFEST: u64 = 16 << 20;
/// Entry problems listed one by one; past this many, one line counts the rest.
const MAX_FAILURES: usize = 1000;
/// Tar block size.
const BLOCK: usize = 512;
/// Read size when hashing or skipping entry data.
const CHUNK: usize = 64 << 10;

/// Why reading the archive had to stop (reported as part `archive`).
struct Stop(String);

/// The decompressed tar stream of the bundle's one gzip member.
struct Stream<R: BufRead> {
    gz: flate2::bufread::GzDecoder<R>,
    /// Decompressed bytes read so far.
    read: u64,
    /// Most that may be read ([`MAX_TOTAL`], or what a signed manifest
    /// lists).
    limit: u64,
}

impl<R: BufRead> Stream<R> {
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, Stop> {
        if self.read >= self.limit {
            return Err(Stop(format!(
                "expands to more than {} bytes, more than its signed manifest lists \
                 (or {} GiB unsigned): refused (gzip bomb?)",
                self.limit,
                MAX_TOTAL >> 30
            )));
        }
        match self.gz.read(buf) {
            Ok(n) => {
                self.read = self.read.saturating_add(n as u64);
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
            Err(e) if self.read == 0 => Err(Stop(format!("not a gzip'd tar ({e})"))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Stop(format!(
                "truncated: the gzip stream ends early, after {} bytes of tar ({e})",
                self.read
            ))),
            Err(e) => Err(Stop(format!(
                "corrupt gzip data after {} bytes of tar ({e})",
                self.read
            ))),
        }
    }

    /// Fill `buf` completely; `Ok(false)` at a clean end before any byte.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<bool, Stop> {
        let mut at = 0;
        while at < buf.len() {
            let n = self.read_some(&mut buf[at..])?;
            if n == 0 {
                if at == 0 {
                    return Ok(false);
                }
                return Err(Stop(format!("truncated: the archive ends inside {what}")));
            }
            at += n;
        }
        Ok(true)
    }

    /// Pass over `size` bytes of entry data and their padding, handing each
    /// chunk to `sink`: nothing is kept, whatever the size.
    fn data(
        &mut self,
        size: u64,
        what: &str,
        buf: &mut [u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), Stop> {
        let padded = size
            .checked_next_multiple_of(BLOCK as u64)
            .ok_or_else(|| Stop(format!("{what}: impossible size {size}")))?;
        let mut left = padded;
        while left > 0 {
            let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            let chunk = &mut buf[..want];
            if !self.fill(chunk, what)? {
                return Err(Stop(format!("truncated: the archive ends inside {what}")));
            }
            let done = padded - left;
            // The part of this chunk that is data, not padding.
            let data = usize::try_from(size.saturating_sub(done)).map_or(want, |d| d.min(want));
            sink(&chunk[..data]);
            left -= want as u64;
        }
        Ok(())
    }
}

/// One tar header, as an extractor reads it.
struct Head {
    /// The path, `None` if it is not UTF-8.
    name: Option<String>,
    /// The path as bytes (for messages).
    raw: Vec<u8>,
    size: u64,
    /// A plain file (type `0` or NUL): links, directories, devices and the
    /// pax / GNU extension headers (which rename the next entry for an
    /// extractor) are not.
    regular: bool,
}

fn until_nul(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |i| &b[..i])
}

/// An octal header field: optional leading spaces, digits, then only NULs
/// or spaces. Base-256 (GNU) and anything else are refused.
fn octal(field: &[u8], what: &str) -> Result<u64, String> {
    let start = field.iter().take_while(|&&c| c == b' ').count();
    let digits = field[start..]
        .iter()
        .take_while(|c| (b'0'..=b'7').contains(*c))
        .count();
    let rest = &field[start + digits..];
    if digits == 0 || rest.iter().any(|&c| c != 0 && c != b' ') {
        return Err(format!("{what} field is not octal"));
    }
    field[start..start + digits].iter().try_fold(0u64, |n, &c| {
        n.checked_mul(8)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or_else(|| format!("{what} field overflows"))
    })
}

fn parse_head(b: &[u8; BLOCK]) -> Result<Head, String> {
    let want = octal(&b[148..156], "checksum")?;
    let sum: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(c)
            }
        })
        .sum();
    if sum != want {
        return Err(format!(
            "header checksum {want} does not match its content ({sum})"
        ));
    }
    let size = octal(&b[124..136], "size")?;
    let name = until_nul(&b[..100]);
    let prefix = if &b[257..263] == b"ustar\0" {
        until_nul(&b[345..500])
    } else {
        &[]
    };
    let raw = if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    };
    Ok(Head {
        name: String::from_utf8(raw.clone()).ok(),
        raw,
        size,
        regular: matches!(b[156], b'0' | 0),
    })
}

/// A relative path of plain components, which every extractor puts at the
/// same place.
fn plain_path(name: &str) -> bool {
    !name.starts_with('/') && !name.split('/').any(|c| matches!(c, "" | "." | ".."))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Missing,
    Intact,
    Bad,
}

/// The manifest as far as it could be had from the first entry.
enum First {
    /// Not read yet.
    Pending,
    /// The first entry was something else (or the manifest was refused):
    /// nothing can be checked against it.
    Unusable,
    /// Read and parsed; `index` maps each listed path to its position.
    Read {
        manifest: Box<Manifest>,
        index: HashMap<String, usize>,
    },
}

struct Check<'k> {
    key: &'k VerifyingKey,
    manifest_bytes: Option<Vec<u8>>,
    manifest_error: Option<String>,
    manifest_later: bool,
    first: First,
    seen: Vec<Seen>,
    signature: Option<Result<Vec<u8>, u64>>,
    head: Vec<Failure>,
    entries: Vec<Failure>,
    dropped: usize,
    archive: Vec<Failure>,
}

impl Check<'_> {
    fn entry_failure(&mut self, part: &str, problem: String) {
        if self.entries.len() < MAX_FAILURES {
            self.entries.push(Failure {
                part: part.into(),
                problem,
            });
        } else {
            self.dropped += 1;
        }
    }

    fn archive_failure(&mut self, problem: String) {
        self.archive.push(Failure {
            part: "archive".into(),
            problem,
        });
    }

    /// Read every entry up to the end-of-archive marker, checking each
    /// against the manifest as it streams past.
    fn entries<R: BufRead>(&mut self, s: &mut Stream<R>) -> Result<(), Stop> {
        let mut block = [0u8; BLOCK];
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0usize;
        loop {
            let offset = s.read;
            if !s.fill(&mut block, "a tar header")? {
                self.archive_failure(
                    "no end-of-archive marker (two zero blocks): the tar stream was cut short, \
                     or left open so that more data appended to it would be extracted too"
                        .into(),
                );
                return Ok(());
            }
            if block.iter().all(|&c| c == 0) {
                return self.end(s, &mut buf);
            }
            let head = parse_head(&block)
                .map_err(|m| Stop(format!("entry {} at byte {offset}: {m}", n + 1)))?;
            let first = n == 0;
            n += 1;
            self.entry(s, head, first, &mut buf)?;
        }
    }

    fn entry<R: BufRead>(
        &mut self,
        s: &mut Stream<R>,
        head: Head,
        first: bool,
        buf: &mut [u8],
    ) -> Result<(), Stop> {
        let shown = String::from_utf8_lossy(&head.raw).into_owned();
        let size = head.size;
        let skip = |s: &mut Stream<R>, buf: &mut [u8]| s.data(size, &shown, buf, |_| ());
        let name = match head.name.as_deref() {
            Some(n) if head.regular && plain_path(n) => n,
            _ => {
                if first {
                    self.first = First::Unusable;
                }
                self.entry_failure(
                    &shown,
                    "not a plain relative file: an evidence bundle holds only files".into(),
                );
                return skip(s, buf);
            }
        };
        if name == MANIFEST {
            if first {
                return self.read_manifest(s, size, buf);
            }
            if self.manifest_bytes.is_some() {
                self.entry_failure(name, DUPLICATE.into());
            } else {
                self.manifest_later = true;
            }
            return skip(s, buf);
        }
        if first {
            self.first = First::Unusable;
        }
        if name == SIGNATURE {
            if self.signature.is_some() {
                self.entry_failure(name, DUPLICATE.into());
                return skip(s, buf);
            }
            if size != 64 {
                self.signature = Some(Err(size));
                return skip(s, buf);
            }
            let mut sig = Vec::with_capacity(64);
            s.data(size, name, buf, |c| sig.extend_from_slice(c))?;
            self.signature = Some(Ok(sig));
            if let Some(signed) = self.signed_expansion() {
                s.limit = s.limit.max(signed);
            }
            return Ok(());
        }
        let First::Read { manifest, index } = &self.first else {
            // No manifest to check against: its failure says it all.
            return skip(s, buf);
        };
        let Some(&i) = index.get(name) else {
            self.entry_failure(
                name,
                "in the archive but not in the manifest (added after signing); not read".into(),
            );
            return skip(s, buf);
        };
        let listed = &manifest.files[i];
        if self.seen[i] != Seen::Missing {
            self.entry_failure(name, DUPLICATE.into());
            return skip(s, buf);
        }
        if size != listed.size {
            let problem = format!(
                "content altered: the archive holds {size} bytes, the manifest says {} bytes; not read",
                listed.size
            );
            self.seen[i] = Seen::Bad;
            self.entry_failure(name, problem);
            return skip(s, buf);
        }
        let want = listed.sha256.clone();
        let mut h = Sha256::new();
        s.data(size, name, buf, |c| h.update(c))?;
        let got = hex::encode(h.finalize());
        if got == want {
            self.seen[i] = Seen::Intact;
        } else {
            self.seen[i] = Seen::Bad;
            self.entry_failure(
                name,
                format!(
                    "content altered: SHA-256 {got} ({size} bytes), manifest says {want} ({size} bytes)"
                ),
            );
        }
        Ok(())
    }

    fn read_manifest<R: BufRead>(
        &mut self,
        s: &mut Stream<R>,
        size: u64,
        buf: &mut [u8],
    ) -> Result<(), Stop> {
        if size > MAX_MANIFEST {
            self.first = First::Unusable;
            self.manifest_error = Some(format!(
                "{size} bytes, more than any manifest (at most {MAX_MANIFEST}); not read"
            ));
            self.manifest_bytes = Some(Vec::new());
            return s.data(size, MANIFEST, buf, |_| ());
        }
        let mut bytes = Vec::new();
        s.data(size, MANIFEST, buf, |c| bytes.extend_from_slice(c))?;
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) => {
                let mut index = HashMap::with_capacity(m.files.len());
                for (i, f) in m.files.iter().enumerate() {
                    if index.insert(f.path.clone(), i).is_some() {
                        self.head.push(Failure {
                            part: MANIFEST.into(),
                            problem: format!("lists {:?} more than once", f.path),
                        });
                    }
                }
                self.seen = vec![Seen::Missing; m.files.len()];
                self.first = First::Read {
                    manifest: Box::new(m),
                    index,
                };
            }
            Err(e) => {
                self.first = First::Unusable;
                self.manifest_error = Some(format!("not a valid manifest: {e}"));
            }
        }
        self.manifest_bytes = Some(bytes);
        Ok(())
    }

    /// After the first zero block: the second, then nothing but zero
    /// padding to the end of the gzip member.
    fn end<R: BufRead>(&mut self, s: &mut Stream<R>, buf: &mut [u8]) -> Result<(), Stop> {
        let mut block = [0u8; BLOCK];
        let second = s.fill(&mut block, "the end-of-archive marker")?;
        if !second || block.iter().any(|&c| c != 0) {
            self.archive_failure(
                "a lone zero block where the end-of-archive marker (two zero blocks) belongs"
                    .into(),
            );
        }
        let mut junk = 0u64;
        loop {
            let n = s.read_some(buf)?;
            if n == 0 {
                break;
            }
            junk += buf[..n].iter().filter(|&&c| c != 0).count() as u64;
        }
        if junk > 0 {
            self.archive_failure(format!(
                "{junk} non-zero byte(s) after the end-of-archive marker: not part of what was signed"
            ));
        }
        Ok(())
    }

    /// What the bundle expands to at most, once the manifest read first
    /// verifies with the trusted key: its files with their tar headers and
    /// padding, the manifest's and signature's entries and the end marker.
    /// A larger member is read up to that bound, then refused.
    fn signed_expansion(&self) -> Option<u64> {
        let bytes = self.manifest_bytes.as_deref()?;
        let First::Read { manifest, .. } = &self.first else {
            return None;
        };
        let Some(Ok(sig)) = &self.signature else {
            return None;
        };
        let sig = Signature::from_slice(sig).ok()?;
        self.key.verify_strict(bytes, &sig).ok()?;
        let entry = |size: u64| size.div_ceil(512).checked_mul(512)?.checked_add(512);
        // And a chunk past the end marker, read to see that nothing follows.
        let head = entry(bytes.len() as u64)?
            .checked_add(entry(64)?)?
            .checked_add(1024)?
            .checked_add(CHUNK as u64)?;
        manifest
            .files
            .iter()
            .try_fold(head, |total, f| total.checked_add(entry(f.size)?))
    }

    /// The signature over the manifest, then the manifest's own problems.
    fn signature_and_manifest(&mut self) {
        let Some(bytes) = self.manifest_bytes.as_deref() else {
            let problem = if self.manifest_later {
                "not the first entry of the archive: a bundle starts with its manifest, so that \
                 every entry is checked against it as it is read"
            } else {
                "missing: nothing can be verified"
            };
            self.head.insert(
                0,
                Failure {
                    part: MANIFEST.into(),
                    problem: problem.into(),
                },
            );
            return;
        };
        let mut out = Vec::new();
        match &self.signature {
            None => out.push(Failure {
                part: SIGNATURE.into(),
                problem: "missing: the manifest is unsigned".into(),
            }),
            Some(Err(len)) => out.push(Failure {
                part: SIGNATURE.into(),
                problem: format!("not an Ed25519 signature ({len} bytes, expected 64)"),
            }),
            Some(Ok(sig)) => match Signature::from_slice(sig) {
                Err(_) => out.push(Failure {
                    part: SIGNATURE.into(),
                    problem: format!(
                        "not an Ed25519 signature ({} bytes, expected 64)",
                        sig.len()
                    ),
                }),
                Ok(sig) if self.key.verify_strict(bytes, &sig).is_err() => {
                    // Say which of the two it likely is: a manifest naming
                    // another key was signed by that key.
                    let named = match &self.first {
                        First::Read { manifest, .. } => Some(manifest.public_key_sha256.as_str()),
                        _ => None,
                    };
                    let ours = key_id(self.key);
                    let problem = match named {
                        Some(k) if k != ours => format!(
                            "signature does not verify with the given public key (sha256 {ours}); the manifest names signer key sha256 {k}"
                        ),
                        _ => "signature does not verify: manifest.json was altered after signing, or manifest.sig was replaced".into(),
                    };
                    out.push(Failure {
                        part: SIGNATURE.into(),
                        problem,
                    });
                }
                Ok(_) => {}
            },
        }
        if let Some(e) = self.manifest_error.take() {
            out.push(Failure {
                part: MANIFEST.into(),
                problem: e,
            });
        }
        if let First::Read { manifest, .. } = &self.first {
            if manifest.format != FORMAT {
                out.push(Failure {
                    part: MANIFEST.into(),
                    problem: format!("format {:?}, expected {FORMAT:?}", manifest.format),
                });
            }
        }
        out.append(&mut self.head);
        self.head = out;
    }
}

const DUPLICATE: &str =
    "appears more than once in the archive (a second copy would shadow the signed one when extracted)";

/// Verify a bundle against a public key: the signature over the manifest,
/// every entry against the manifest as it streams past (so memory stays
/// flat whatever the bundle), the archive's structure (one gzip member,
/// the tar end-of-archive marker, nothing after either). Every problem is
/// reported, each naming its part. A file that cannot be opened is an
/// error; anything wrong with its content is a failure.
pub fn verify(path: &Path, key: &VerifyingKey) -> Result<Verification, EvidenceError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    // A FIFO would block the open itself: refuse it instead.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(io(path))?;
    if !file.metadata().map_err(io(path))?.is_file() {
        return Err(io(path)(std::io::Error::other(
            "not a regular file: refused",
        )));
    }
    Ok(verify_reader(
        std::io::BufReader::with_capacity(CHUNK, file),
        key,
    ))
}

/// [`verify`] on a bundle's bytes from any reader.
pub fn verify_reader<R: BufRead>(input: R, key: &VerifyingKey) -> Verification {
    verify_within(input, key, MAX_TOTAL)
}

/// [`verify_reader`], reading at most `limit` bytes of tar until a signed
/// manifest says more.
fn verify_within<R: BufRead>(input: R, key: &VerifyingKey, limit: u64) -> Verification {
    let mut c = Check {
        key,
        manifest_bytes: None,
        manifest_error: None,
        manifest_later: false,
        first: First::Pending,
        seen: Vec::new(),
        signature: None,
        head: Vec::new(),
        entries: Vec::new(),
        dropped: 0,
        archive: Vec::new(),
    };
    let mut s = Stream {
        gz: flate2::bufread::GzDecoder::new(input),
        read: 0,
        limit,
    };
    match c.entries(&mut s) {
        Err(Stop(m)) => c.archive_failure(m),
        // The gzip member ended where its trailer says; anything after it is
        // another member (`tar xzf` extracts it too) or garbage.
        Ok(()) => {
            let mut rest = s.gz.into_inner();
            let mut magic = Vec::with_capacity(2);
            let _ = rest.by_ref().take(2).read_to_end(&mut magic);
            if !magic.is_empty() {
                let n = (magic.len() as u64)
                    .saturating_add(std::io::copy(&mut rest, &mut std::io::sink()).unwrap_or(0));
                c.archive_failure(if magic == [0x1f, 0x8b] {
                    format!(
                        "a second gzip member ({n} bytes) follows the first: `tar xzf` would \
                         extract what it holds as if it were part of the bundle"
                    )
                } else {
                    format!("{n} byte(s) of trailing data after the gzip stream")
                });
            }
        }
    }
    c.signature_and_manifest();
    let mut verified = Vec::new();
    let mut missing = Vec::new();
    let manifest = match std::mem::replace(&mut c.first, First::Unusable) {
        First::Read { manifest, .. } => {
            for (f, seen) in manifest.files.iter().zip(&c.seen) {
                match seen {
                    Seen::Intact => verified.push(f.path.clone()),
                    Seen::Missing => missing.push(Failure {
                        part: f.path.clone(),
                        problem: "listed in the manifest but missing from the archive".into(),
                    }),
                    Seen::Bad => {}
                }
            }
            Some(*manifest)
        }
        _ => None,
    };
    let mut failures = c.head;
    failures.append(&mut c.entries);
    if c.dropped > 0 {
        failures.push(Failure {
            part: "archive".into(),
            problem: format!("{} more problem(s) with entries, not listed", c.dropped),
        });
    }
    failures.append(&mut missing);
    failures.append(&mut c.archive);
    Verification {
        manifest,
        verified,
        failures,
    }
}

#[cfg(test)]
mod tests {
    //! The verifier on hostile input: no byte string may panic it, and
    //! whatever it calls intact extracts to exactly the signed files.
    //! 256 cases per property.

    use super::*;
    use proptest::prelude::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn files() -> Vec<(String, Vec<u8>)> {
        vec![
            ("run.json".into(), b"{\"id\": 1}\n".to_vec()),
            (
                "reports/coverage.csv".into(),
                b"framework,control,status\nCIS,1.14,fail\n".to_vec(),
            ),
            ("empty.txt".into(), Vec::new()),
            (
                "reports/block.bin".into(),
                (0..1500u32).map(|i| (i % 251) as u8).collect(),
            ),
        ]
    }

    /// The uncompressed tar of a signed bundle of [`files`].
    fn signed_tar() -> Vec<u8> {
        let (m, sig) = signed(&files());
        tar_of(&files(), &m, &sig)
    }

    /// The manifest of `files` and its signature.
    fn signed(files: &[(String, Vec<u8>)]) -> (Vec<u8>, [u8; 64]) {
        let key = key();
        let manifest = Manifest {
            format: FORMAT.into(),
            tool_version: "test".into(),
            created_at: "2026-12-01T00:00:00Z".into(),
            run_id: 1,
            run_started_at: "2026-12-01T00:00:00Z".into(),
            as_of: "2026-12-01T00:00:00Z".into(),
            public_key_sha256: key_id(&key.verifying_key()),
            files: ManifestFile::listing(files),
        };
        let m = json_bytes(&manifest).expect("manifest");
        let sig = key.sign(&m).to_bytes();
        (m, sig)
    }

    /// The tar the `tar` crate writes of a manifest, signature and files.
    fn tar_of(files: &[(String, Vec<u8>)], m: &[u8], sig: &[u8]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, MANIFEST, m, 0).expect("manifest");
        append(&mut tar, SIGNATURE, sig, 0).expect("sig");
        for (p, b) in files {
            append(&mut tar, p, b, 0).expect("file");
        }
        tar.into_inner().expect("tar")
    }

    /// The archive as `export` writes it: each file spooled (deflated on
    /// its own), then joined with the manifest and signature.
    fn joined(files: &[(String, Vec<u8>)], m: &[u8], sig: &[u8]) -> Vec<u8> {
        let mut gz = Member::new(Vec::new()).expect("member");
        gz.entry(MANIFEST, m, 0).expect("manifest");
        gz.entry(SIGNATURE, sig, 0).expect("sig");
        for (p, b) in files {
            let mut part = spool(p, |w| {
                w.write_all(b).map_err(|e| ReportError::Render {
                    what: "test",
                    message: e.to_string(),
                })
            })
            .expect("spool");
            assert_eq!(part.size, b.len() as u64);
            gz.part(&mut part, 0).expect("part");
        }
        gz.finish().expect("finish")
    }

    /// The tar inside `bundle`, read as one gzip member (as the verifier
    /// reads it: a wrong CRC or length fails).
    fn one_member(bundle: &[u8]) -> Vec<u8> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(bundle)
            .read_to_end(&mut tar)
            .expect("one gzip member, CRC and length right");
        tar
    }

    #[test]
    fn a_signed_manifest_lifts_the_expansion_limit_to_what_it_lists() {
        let bundle = gzip(&signed_tar());
        let tar_len = signed_tar().len() as u64;
        let key = key().verifying_key();
        // Room for the manifest and signature, below the tar's length (as
        // 4 GiB is below a million findings').
        let limit = 4_096;
        assert!(limit < tar_len);
        let v = verify_within(bundle.as_slice(), &key, limit);
        assert!(v.ok(), "{:?}", v.failures);
        // Read with another key, the manifest lifts nothing.
        let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        let v = verify_within(bundle.as_slice(), &other, limit);
        assert!(v
            .failures
            .iter()
            .any(|f| f.part == "archive" && f.problem.contains("gzip bomb")));
        // Data beyond what the manifest lists is refused at that bound.
        let mut tar = signed_tar();
        tar.truncate(tar.len() - 1024);
        let mut extra = tar::Builder::new(Vec::new());
        append(&mut extra, "extra.bin", &vec![0u8; 1 << 20], 0).expect("extra");
        tar.extend(extra.into_inner().expect("tar"));
        let v = verify_within(gzip(&tar).as_slice(), &key, limit);
        assert!(!v.ok());
        assert!(
            v.failures
                .iter()
                .any(|f| f.part == "archive" && f.problem.contains("gzip bomb")),
            "read past {tar_len} bytes: {:?}",
            v.failures
        );
    }

    #[test]
    fn parts_deflated_apart_join_into_one_member_of_the_same_tar() {
        // Incompressible and larger than a deflate output buffer, too.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..700_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut files = files();
        files.push(("reports/noise.bin".into(), noise));
        let (m, sig) = signed(&files);
        let bundle = joined(&files, &m, &sig);
        assert!(one_member(&bundle) == tar_of(&files, &m, &sig));
        let (m, sig) = signed(&self::files());
        let bundle = joined(&self::files(), &m, &sig);
        assert!(check(&bundle), "the joined bundle verifies");
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b).expect("gzip");
        gz.finish().expect("gzip")
    }

    /// What an extractor gets: (name, content) of every entry, or `None`
    /// when the stream cannot be read.
    fn extracted(bundle: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(bundle)
            .read_to_end(&mut tar)
            .ok()?;
        let mut ar = tar::Archive::new(tar.as_slice());
        let mut out = Vec::new();
        for e in ar.entries().ok()? {
            let mut e = e.ok()?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let mut b = Vec::new();
            e.read_to_end(&mut b).ok()?;
            out.push((name, b));
        }
        Some(out)
    }

    fn signed_files() -> &'static [(String, Vec<u8>)] {
        static FILES: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
        FILES.get_or_init(|| extracted(&gzip(&signed_tar())).expect("valid"))
    }

    /// Verify; when the verdict is "intact", the bundle must extract to
    /// exactly what was signed.
    fn check(bundle: &[u8]) -> bool {
        let v = verify_reader(bundle, &key().verifying_key());
        if v.ok() {
            assert_eq!(
                extracted(bundle).as_deref(),
                Some(signed_files()),
                "verified, but extracts to something else"
            );
        }
        v.ok()
    }

    fn config() -> ProptestConfig {
        // 256 cases in the normal run; PROPTEST_CASES for longer ones.
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256);
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    #[test]
    fn the_signed_bundle_verifies() {
        let v = verify_reader(gzip(&signed_tar()).as_slice(), &key().verifying_key());
        assert_eq!(v.failures, vec![]);
        assert_eq!(v.verified.len(), files().len());
    }

    /// Recompute the checksum of the header block holding `at`, so a
    /// mutation reaches the parser's later checks.
    fn fix_checksum(tar: &mut [u8], at: usize) {
        let start = at / BLOCK * BLOCK;
        let Some(b) = tar.get_mut(start..start + BLOCK) else {
            return;
        };
        if b.iter().all(|&c| c == 0) {
            return;
        }
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        let field = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(field.as_bytes());
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_never_verify(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            gzip_magic in any::<bool>(),
        ) {
            let mut b = bytes;
            if gzip_magic {
                b.splice(0..0, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
            }
            prop_assert!(!check(&b));
        }

        #[test]
        fn mutated_compressed_bundles_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            tail in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut b = gzip(&signed_tar());
            for (at, byte) in edits {
                let i = at.index(b.len());
                b[i] = byte;
            }
            if let Some(c) = cut {
                b.truncate(c.index(b.len()));
            }
            b.extend(tail);
            check(&b);
        }

        #[test]
        fn mutated_tar_streams_never_panic(
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<u8>(), any::<bool>()),
                1..4,
            ),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            extra in proptest::collection::vec(any::<u8>(), 0..1100),
        ) {
            let mut t = signed_tar();
            for (at, byte, fix) in edits {
                let i = at.index(t.len());
                t[i] = byte;
                if fix {
                    fix_checksum(&mut t, i);
                }
            }
            if let Some(c) = cut {
                t.truncate(c.index(t.len()));
            }
            t.extend(extra);
            check(&gzip(&t));
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Any files, of any length (empty, around tar blocks), joined
        /// from pieces deflated apart, read back as the one tar.
        #[test]
        fn any_parts_join_into_one_member(
            sizes in proptest::collection::vec(
                prop_oneof![0usize..3, 509usize..516, 0usize..5_000],
                0..6,
            ),
            seed in any::<u8>(),
        ) {
            let files: Vec<(String, Vec<u8>)> = sizes
                .iter()
                .enumerate()
                .map(|(n, &len)| {
                    let data = (0..len).map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 8) as u8).collect();
                    (format!("part-{n}.bin"), data)
                })
                .collect();
            let (m, sig) = signed(&files);
            prop_assert!(one_member(&joined(&files, &m, &sig)) == tar_of(&files, &m, &sig));
        }
    }
}
