//! Signed evidence bundles: a gzip'd tar holding a run's reports, the
//! inventory snapshot, the approvals as read, the rules evaluated and the
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

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::report::coverage::FrameworkCoverage;
use crate::report::render::{render, ReportFormat};
use crate::report::{ReportError, RunData};
use crate::store::SqlStore;

/// Bundle format written in the manifest.
pub const FORMAT: &str = "nhi-assure-evidence/1";
/// The manifest's name in the archive.
pub const MANIFEST: &str = "manifest.json";
/// The signature's name in the archive.
pub const SIGNATURE: &str = "manifest.sig";
/// Largest archive content read back (decompressed), against gzip bombs.
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
    /// The archive could not be read at all.
    #[error("{path}: not a readable evidence archive ({message})")]
    Archive {
        /// Path.
        path: String,
        /// Cause.
        message: String,
    },
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

/// Write a new key pair: `PREFIX.key` (PKCS#8 PEM, mode 0600) and
/// `PREFIX.pub` (SPKI PEM). Existing files are never overwritten.
pub fn keygen(prefix: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf), EvidenceError> {
    let key_path = prefix.with_extension("key");
    let pub_path = prefix.with_extension("pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
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
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&key_path).map_err(io(&key_path))?;
    f.write_all(pem.as_bytes()).map_err(io(&key_path))?;
    std::fs::write(&pub_path, public).map_err(io(&pub_path))?;
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

/// The files of a run's bundle, manifest and signature excluded.
pub async fn contents(
    store: &SqlStore,
    data: &RunData,
    cov: &[FrameworkCoverage],
) -> Result<Vec<(String, Vec<u8>)>, ReportError> {
    let mut files = vec![("run.json".to_string(), json_bytes(&data.run)?)];
    for f in ReportFormat::ALL {
        for (name, bytes) in render(data, cov, f)? {
            files.push((format!("reports/{name}"), bytes));
        }
    }
    files.push(("inventory.json".into(), json_bytes(&data.snapshot.sources)?));
    files.push((
        "approvals.json".into(),
        json_bytes(&data.snapshot.approvals)?,
    ));
    files.push(("rules.json".into(), json_bytes(&data.snapshot.rules)?));
    files.push(("audit.jsonl".into(), audit_slice(store, data.run.id).await?));
    files.push(("audit-chain.json".into(), audit_chain(store).await?));
    Ok(files)
}

/// Write a signed bundle of `files` for `data`'s run to `out` (atomically:
/// a temporary file renamed into place).
pub fn write_bundle(
    data: &RunData,
    files: &[(String, Vec<u8>)],
    key: &SigningKey,
    out: &Path,
) -> Result<ExportSummary, EvidenceError> {
    let now = chrono::Utc::now();
    let manifest = Manifest {
        format: FORMAT.into(),
        tool_version: data.version.into(),
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        run_id: data.run.id,
        run_started_at: data.run.started_at.clone(),
        as_of: data.run.as_of.clone(),
        public_key_sha256: key_id(&key.verifying_key()),
        files: files
            .iter()
            .map(|(path, b)| ManifestFile {
                path: path.clone(),
                sha256: sha256_hex(b),
                size: b.len() as u64,
            })
            .collect(),
    };
    let manifest_bytes = json_bytes(&manifest)?;
    let sig_bytes = key.sign(&manifest_bytes).to_bytes();

    let tmp = out.with_extension("partial");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = now.timestamp().max(0) as u64;
    let mut entries: Vec<(&str, &[u8])> =
        vec![(MANIFEST, &manifest_bytes), (SIGNATURE, &sig_bytes)];
    entries.extend(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    for (path, bytes) in entries {
        append(&mut tar, path, bytes, mtime).map_err(io(&tmp))?;
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    let bytes = std::fs::metadata(out).map_err(io(out))?.len();
    tracing::info!(
        run = data.run.id,
        bytes,
        files = files.len() + 2,
        "evidence bundle written"
    );
    Ok(ExportSummary {
        run_id: data.run.id,
        files: files.len() + 2,
        bytes,
    })
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, bytes)
}

/// Export run `data` as a signed bundle.
pub async fn export(
    store: &SqlStore,
    data: &RunData,
    cov: &[FrameworkCoverage],
    key: &SigningKey,
    out: &Path,
) -> Result<ExportSummary, EvidenceError> {
    let files = contents(store, data, cov).await?;
    write_bundle(data, &files, key, out)
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

/// Read every regular entry of a bundle, in order, refusing anything that
/// is not a plain relative file path.
/// An archive's entries (name, content) and the entries refused.
type Entries = (Vec<(String, Vec<u8>)>, Vec<Failure>);

fn read_entries(path: &Path) -> Result<Entries, EvidenceError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let gz = flate2::read::GzDecoder::new(file).take(MAX_TOTAL);
    let mut ar = tar::Archive::new(gz);
    let archive_err = |e: std::io::Error| EvidenceError::Archive {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    let mut odd = Vec::new();
    for entry in ar.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let safe = !name.starts_with('/')
            && !name.split('/').any(|c| c == ".." || c.is_empty())
            && entry.header().entry_type() == tar::EntryType::Regular;
        if !safe {
            odd.push(Failure {
                part: name,
                problem: "not a plain relative file: an evidence bundle holds only files".into(),
            });
            continue;
        }
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).map_err(archive_err)?;
        out.push((name, buf));
    }
    Ok((out, odd))
}

/// Verify a bundle against a public key: the signature over the manifest,
/// then every listed file's size and hash, then files that should not be
/// there. Every problem is reported, each naming its part.
pub fn verify(path: &Path, key: &VerifyingKey) -> Result<Verification, EvidenceError> {
    let (entries, mut failures) = read_entries(path)?;
    let mut by_name: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (name, bytes) in &entries {
        if by_name.insert(name.as_str(), bytes.as_slice()).is_some() {
            failures.push(Failure {
                part: name.clone(),
                problem: "appears more than once in the archive (a second copy would shadow the signed one when extracted)".into(),
            });
        }
    }
    let mut v = Verification {
        manifest: None,
        verified: Vec::new(),
        failures,
    };
    let Some(manifest_bytes) = by_name.get(MANIFEST).copied() else {
        v.failures.push(Failure {
            part: MANIFEST.into(),
            problem: "missing: nothing can be verified".into(),
        });
        return Ok(v);
    };
    match by_name.get(SIGNATURE).copied() {
        None => v.failures.push(Failure {
            part: SIGNATURE.into(),
            problem: "missing: the manifest is unsigned".into(),
        }),
        Some(sig) => match Signature::from_slice(sig) {
            Err(_) => v.failures.push(Failure {
                part: SIGNATURE.into(),
                problem: format!(
                    "not an Ed25519 signature ({} bytes, expected 64)",
                    sig.len()
                ),
            }),
            Ok(sig) => {
                if key.verify_strict(manifest_bytes, &sig).is_err() {
                    // Say which of the two it likely is: a manifest naming
                    // another key was signed by that key.
                    let named = serde_json::from_slice::<Manifest>(manifest_bytes)
                        .ok()
                        .map(|m| m.public_key_sha256);
                    let problem = match named {
                        Some(k) if k != key_id(key) => format!(
                            "signature does not verify with the given public key (sha256 {}); the manifest names signer key sha256 {k}",
                            key_id(key)
                        ),
                        _ => "signature does not verify: manifest.json was altered after signing, or manifest.sig was replaced".into(),
                    };
                    v.failures.push(Failure {
                        part: SIGNATURE.into(),
                        problem,
                    });
                }
            }
        },
    }
    let manifest: Manifest = match serde_json::from_slice(manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            v.failures.push(Failure {
                part: MANIFEST.into(),
                problem: format!("not a valid manifest: {e}"),
            });
            return Ok(v);
        }
    };
    if manifest.format != FORMAT {
        v.failures.push(Failure {
            part: MANIFEST.into(),
            problem: format!("format {:?}, expected {FORMAT:?}", manifest.format),
        });
    }
    let mut listed = HashSet::new();
    for f in &manifest.files {
        listed.insert(f.path.as_str());
        match by_name.get(f.path.as_str()) {
            None => v.failures.push(Failure {
                part: f.path.clone(),
                problem: "listed in the manifest but missing from the archive".into(),
            }),
            Some(bytes) => {
                let got = sha256_hex(bytes);
                if got != f.sha256 || bytes.len() as u64 != f.size {
                    v.failures.push(Failure {
                        part: f.path.clone(),
                        problem: format!(
                            "content altered: SHA-256 {got} ({} bytes), manifest says {} ({} bytes)",
                            bytes.len(),
                            f.sha256,
                            f.size
                        ),
                    });
                } else {
                    v.verified.push(f.path.clone());
                }
            }
        }
    }
    for name in by_name.keys() {
        if *name != MANIFEST && *name != SIGNATURE && !listed.contains(name) {
            v.failures.push(Failure {
                part: name.to_string(),
                problem: "in the archive but not in the manifest (added after signing)".into(),
            });
        }
    }
    v.manifest = Some(manifest);
    Ok(v)
}
