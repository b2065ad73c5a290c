//! Signed evidence bundles through the binary: what a bundle holds, a
//! precise failure for each kind of tampering (every file altered, the
//! manifest, the signature, another key, a file removed, added or
//! duplicated), and no secret value in any export — with a secret access
//! key issued by moto and enforce-mode actions in the audit slice.

#[path = "support/demo.rs"]
mod demo_copy;
use demo_copy::demo;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run nhi-assure")
}

fn ok(o: Output) -> Output {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The demo scanned once, a key pair, and a bundle of the run.
fn exported() -> (tempfile::TempDir, PathBuf) {
    let (dir, _) = demo();
    let d = dir.path();
    ok(run_in(d, &["scan", "--config", "nhi-assure.toml"]));
    ok(run_in(d, &["evidence", "keygen", "--out", "signer"]));
    ok(run_in(
        d,
        &[
            "evidence",
            "export",
            "--config",
            "nhi-assure.toml",
            "--key",
            "signer.key",
            "--out",
            "bundle.tar.gz",
        ],
    ));
    let b = d.join("bundle.tar.gz");
    (dir, b)
}

fn entries(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    let f = std::fs::File::open(bundle).expect("open");
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut b = Vec::new();
            e.read_to_end(&mut b).expect("read");
            (name, b)
        })
        .collect()
}

fn write_bundle(path: &Path, list: &[(String, Vec<u8>)]) {
    let f = std::fs::File::create(path).expect("create");
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::fast(),
    ));
    for (name, b) in list {
        let mut h = tar::Header::new_ustar();
        if h.set_path(name).is_err() {
            // The crate refuses `..`; an attacker's tool would not.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_size(b.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append(&h, b.as_slice()).expect("append");
    }
    tar.into_inner()
        .expect("tar")
        .finish()
        .expect("gz")
        .flush()
        .expect("flush");
}

/// `evidence verify --json`: (exit code, failures as (part, problem)).
fn verify(dir: &Path, bundle: &Path, key: &str) -> (i32, Vec<(String, String)>) {
    let o = run_in(
        dir,
        &[
            "evidence",
            "verify",
            bundle.to_str().expect("utf8"),
            "--public-key",
            key,
            "--json",
        ],
    );
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("json: {}", String::from_utf8_lossy(&o.stderr)));
    let failures = v["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| {
            (
                f["part"].as_str().expect("part").to_string(),
                f["problem"].as_str().expect("problem").to_string(),
            )
        })
        .collect();
    (o.status.code().expect("code"), failures)
}

#[test]
fn bundle_holds_the_run_and_verifies() {
    let (dir, bundle) = exported();
    let d = dir.path();
    let list = entries(&bundle);
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..2], &["manifest.json", "manifest.sig"]);
    for want in [
        "run.json",
        "inventory.json",
        "approvals.json",
        "rules.json",
        "audit.jsonl",
        "audit-chain.json",
        "reports/report.json",
        "reports/coverage.csv",
        "reports/findings.csv",
        "reports/report.ocsf.json",
        "reports/report.sarif",
        "reports/report.html",
        "reports/report.txt",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let manifest: Value = serde_json::from_slice(&list[0].1).expect("manifest");
    let listed: BTreeSet<&str> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    let others: BTreeSet<&str> = names[2..].iter().copied().collect();
    assert_eq!(listed, others, "the manifest lists every other file");
    assert_eq!(list[1].1.len(), 64, "raw Ed25519 signature");

    // The bundled report is the report of that run.
    let get = |n: &str| &list.iter().find(|(x, _)| x == n).expect(n).1;
    let report = ok(run_in(
        d,
        &["report", "--config", "nhi-assure.toml", "--format", "json"],
    ));
    assert_eq!(get("reports/report.json"), &report.stdout);
    // The snapshot holds what the run read.
    let inv: Value = serde_json::from_slice(get("inventory.json")).expect("inventory");
    let names: Vec<&str> = inv
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["aws-org", "azure-tenant", "github-org"]);
    let approvals: Value = serde_json::from_slice(get("approvals.json")).expect("approvals");
    assert!(approvals
        .as_array()
        .expect("list")
        .iter()
        .any(|a| a["id"] == "APR-PAY-004"));

    let (code, failures) = verify(d, &bundle, "signer.pub");
    assert_eq!((code, failures), (0, vec![]));
    let text = ok(run_in(
        d,
        &[
            "evidence",
            "verify",
            "bundle.tar.gz",
            "--public-key",
            "signer.pub",
        ],
    ));
    assert!(String::from_utf8_lossy(&text.stdout).starts_with("OK:"));

    // Keys are never overwritten.
    let again = run_in(d, &["evidence", "keygen", "--out", "signer"]);
    assert_eq!(again.status.code(), Some(2));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("signer.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn every_tampered_part_is_named() {
    let (dir, bundle) = exported();
    let d = dir.path();
    let original = entries(&bundle);
    let tampered = d.join("tampered.tar.gz");

    // Each file altered by one byte: exactly that file fails.
    for (i, (name, _)) in original.iter().enumerate().skip(2) {
        let mut list = original.clone();
        let b = &mut list[i].1;
        if b.is_empty() {
            b.push(b'x');
        } else {
            let mid = b.len() / 2;
            b[mid] ^= 0x01;
        }
        write_bundle(&tampered, &list);
        let (code, failures) = verify(d, &tampered, "signer.pub");
        assert_eq!(code, 1, "{name}");
        assert_eq!(failures.len(), 1, "{name}: {failures:?}");
        assert_eq!(failures[0].0, *name);
        assert!(failures[0].1.starts_with("content altered"), "{failures:?}");
    }

    // The manifest re-hashed to match an altered report: the signature fails.
    let mut list = original.clone();
    let html = list
        .iter()
        .position(|(n, _)| n == "reports/report.html")
        .expect("html");
    list[html].1.extend_from_slice(b"<!-- edited -->");
    let digest = sha2::Sha256::digest(&list[html].1);
    let mut manifest: Value = serde_json::from_slice(&list[0].1).expect("manifest");
    for f in manifest["files"].as_array_mut().expect("files") {
        if f["path"] == "reports/report.html" {
            f["sha256"] = Value::String(hex::encode(digest));
            f["size"] = Value::from(list[html].1.len());
        }
    }
    list[0].1 = serde_json::to_vec_pretty(&manifest).expect("json");
    write_bundle(&tampered, &list);
    let (code, failures) = verify(d, &tampered, "signer.pub");
    assert_eq!(code, 1);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "manifest.sig");
    assert!(
        failures[0].1.contains("manifest.json was altered"),
        "{failures:?}"
    );

    // Another signature.
    let mut list = original.clone();
    list[1].1 = vec![7u8; 64];
    write_bundle(&tampered, &list);
    let (code, failures) = verify(d, &tampered, "signer.pub");
    assert_eq!((code, failures.len()), (1, 1), "{failures:?}");
    assert_eq!(failures[0].0, "manifest.sig");

    // Another key: the failure names both keys.
    ok(run_in(d, &["evidence", "keygen", "--out", "other"]));
    let (code, failures) = verify(d, &bundle, "other.pub");
    assert_eq!((code, failures.len()), (1, 1), "{failures:?}");
    assert_eq!(failures[0].0, "manifest.sig");
    assert!(
        failures[0].1.contains("the manifest names signer key"),
        "{failures:?}"
    );

    // A file removed.
    let mut list = original.clone();
    list.retain(|(n, _)| n != "audit.jsonl");
    write_bundle(&tampered, &list);
    let (_, failures) = verify(d, &tampered, "signer.pub");
    assert_eq!(
        failures,
        vec![(
            "audit.jsonl".to_string(),
            "listed in the manifest but missing from the archive".to_string()
        )]
    );

    // A file added.
    let mut list = original.clone();
    list.push(("reports/extra.csv".into(), b"a,b\n".to_vec()));
    write_bundle(&tampered, &list);
    let (_, failures) = verify(d, &tampered, "signer.pub");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "reports/extra.csv");
    assert!(failures[0].1.contains("not in the manifest"));

    // A second copy of a signed file (what extraction would keep).
    let mut list = original.clone();
    list.push(("reports/coverage.csv".into(), b"framework\n".to_vec()));
    write_bundle(&tampered, &list);
    let (_, failures) = verify(d, &tampered, "signer.pub");
    assert!(
        failures
            .iter()
            .any(|(p, m)| p == "reports/coverage.csv" && m.contains("more than once")),
        "{failures:?}"
    );

    // A path escaping the archive.
    let mut list = original.clone();
    list.push(("../evil.sh".into(), b"#!/bin/sh\n".to_vec()));
    write_bundle(&tampered, &list);
    let (_, failures) = verify(d, &tampered, "signer.pub");
    assert!(
        failures
            .iter()
            .any(|(p, m)| p == "../evil.sh" && m.contains("not a plain relative file")),
        "{failures:?}"
    );

    // No manifest at all.
    write_bundle(&tampered, &original[1..]);
    let (_, failures) = verify(d, &tampered, "signer.pub");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "manifest.json");

    // Not an archive: a bundle that fails, exit 1.
    std::fs::write(&tampered, b"not a bundle").expect("write");
    let (code, failures) = verify(d, &tampered, "signer.pub");
    assert_eq!(code, 1);
    assert!(
        failures
            .iter()
            .any(|(p, m)| p == "archive" && m.starts_with("not a gzip'd tar")),
        "{failures:?}"
    );
    // A file that cannot be read at all is an error, exit 2.
    let o = run_in(
        d,
        &[
            "evidence",
            "verify",
            "absent.tar.gz",
            "--public-key",
            "signer.pub",
        ],
    );
    assert_eq!(o.status.code(), Some(2));

    // The original still verifies.
    assert_eq!(verify(d, &bundle, "signer.pub"), (0, vec![]));
}

use sha2::Digest;

/// A tar stream of `list` as an extractor sees it, with or without the
/// end-of-archive marker.
fn raw_tar(list: &[(String, Vec<u8>)], end_marker: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, b) in list {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_size(b.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    if end_marker {
        out.resize(out.len() + 1024, 0);
    }
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).expect("gzip");
    gz.finish().expect("gzip")
}

fn archive_failure(failures: &[(String, String)], needle: &str) -> bool {
    failures
        .iter()
        .any(|(p, m)| p == "archive" && m.contains(needle))
}

/// The forgery of issue 12: the signed tar without its end marker, then a
/// second gzip member with a forged report. `tar xzf` extracts the forgery;
/// the verifier must not call the bundle intact.
#[test]
fn a_second_gzip_member_or_anything_after_the_archive_is_refused() {
    let (dir, bundle) = exported();
    let d = dir.path();
    let original = entries(&bundle);
    let forged_csv = b"framework,control,title,status\nCIS-AWS-3.0,1.14,forged,pass\n".to_vec();
    let mut forged = gzip(&raw_tar(&original, false));
    forged.extend(gzip(&raw_tar(
        &[("reports/coverage.csv".into(), forged_csv.clone())],
        true,
    )));
    let path = d.join("forged.tar.gz");
    std::fs::write(&path, &forged).expect("write");
    // What an extractor makes of it.
    let out = d.join("extracted");
    std::fs::create_dir(&out).expect("mkdir");
    let tar = Command::new("tar")
        .arg("xzf")
        .arg(&path)
        .arg("-C")
        .arg(&out)
        .output()
        .expect("tar");
    if tar.status.success() {
        assert_eq!(
            std::fs::read(out.join("reports/coverage.csv")).expect("csv"),
            forged_csv,
            "tar extracts the forged member"
        );
    }
    let (code, failures) = verify(d, &path, "signer.pub");
    assert_eq!(code, 1, "{failures:?}");
    assert!(
        archive_failure(&failures, "no end-of-archive marker"),
        "{failures:?}"
    );
    assert!(
        archive_failure(&failures, "a second gzip member"),
        "{failures:?}"
    );
    assert_eq!(
        failures.iter().filter(|(p, _)| p != "archive").count(),
        0,
        "every signed file is intact; the structure is what fails: {failures:?}"
    );

    // The end marker alone missing.
    std::fs::write(&path, gzip(&raw_tar(&original, false))).expect("write");
    let (code, failures) = verify(d, &path, "signer.pub");
    assert_eq!(code, 1);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        archive_failure(&failures, "no end-of-archive marker"),
        "{failures:?}"
    );

    // A second member after a complete archive.
    let mut two = std::fs::read(&bundle).expect("bundle");
    two.extend(gzip(b"more"));
    std::fs::write(&path, &two).expect("write");
    let (code, failures) = verify(d, &path, "signer.pub");
    assert_eq!((code, failures.len()), (1, 1), "{failures:?}");
    assert!(
        archive_failure(&failures, "a second gzip member"),
        "{failures:?}"
    );

    // Trailing garbage after the gzip stream.
    let mut trailing = std::fs::read(&bundle).expect("bundle");
    trailing.extend_from_slice(b"garbage");
    std::fs::write(&path, &trailing).expect("write");
    let (code, failures) = verify(d, &path, "signer.pub");
    assert_eq!((code, failures.len()), (1, 1), "{failures:?}");
    assert!(
        archive_failure(
            &failures,
            "7 byte(s) of trailing data after the gzip stream"
        ),
        "{failures:?}"
    );

    // Non-zero data after the end marker, inside the gzip member.
    let mut tail = raw_tar(&original, true);
    tail.extend_from_slice(&[b'x'; 512]);
    std::fs::write(&path, gzip(&tail)).expect("write");
    let (code, failures) = verify(d, &path, "signer.pub");
    assert_eq!((code, failures.len()), (1, 1), "{failures:?}");
    assert!(
        archive_failure(&failures, "after the end-of-archive marker"),
        "{failures:?}"
    );
}

/// A truncated bundle is a bundle that fails (exit 1, as the README says),
/// wherever it is cut.
#[test]
fn a_truncated_bundle_fails_with_exit_1() {
    let (dir, bundle) = exported();
    let d = dir.path();
    let whole = std::fs::read(&bundle).expect("bundle");
    let path = d.join("cut.tar.gz");
    for cut in [whole.len() - 4, whole.len() / 2, 30, 5] {
        std::fs::write(&path, &whole[..cut]).expect("write");
        let (code, failures) = verify(d, &path, "signer.pub");
        assert_eq!(code, 1, "cut at {cut}: {failures:?}");
        assert!(
            failures.iter().any(|(p, _)| p == "archive"),
            "cut at {cut}: {failures:?}"
        );
    }
}

/// An entry larger than the manifest says, or not in it, is refused from
/// its header, without reading it whole.
#[test]
fn entries_are_bounded_by_the_manifest_before_reading() {
    let (dir, bundle) = exported();
    let d = dir.path();
    let mut list = entries(&bundle);
    let csv = list
        .iter()
        .position(|(n, _)| n == "reports/coverage.csv")
        .expect("csv");
    let size = list[csv].1.len();
    list[csv].1.resize(size + 4096, b' ');
    list.push(("reports/extra.bin".into(), vec![0u8; 1 << 20]));
    let path = d.join("big.tar.gz");
    write_bundle(&path, &list);
    let (code, failures) = verify(d, &path, "signer.pub");
    assert_eq!(code, 1);
    assert_eq!(
        failures,
        vec![
            (
                "reports/coverage.csv".to_string(),
                format!(
                    "content altered: the archive holds {} bytes, the manifest says {size} bytes; not read",
                    size + 4096
                )
            ),
            (
                "reports/extra.bin".to_string(),
                "in the archive but not in the manifest (added after signing); not read"
                    .to_string()
            ),
        ]
    );

    // The manifest must come first, so that every entry is bounded by it.
    let mut list = entries(&bundle);
    list.swap(0, 2);
    write_bundle(&path, &list);
    let (code, failures) = verify(d, &path, "signer.pub");
    assert_eq!((code, failures.len()), (1, 1), "{failures:?}");
    assert_eq!(failures[0].0, "manifest.json");
    assert!(
        failures[0].1.contains("not the first entry"),
        "{failures:?}"
    );
}

/// Peak RSS (KiB) of `evidence verify` on `bundle`, from the kernel's
/// accounting of that one child.
#[cfg(target_os = "linux")]
// The child is reaped by wait4 below, which std does not know of.
#[allow(clippy::zombie_processes)]
fn verify_peak_kib(dir: &Path, bundle: &Path) -> (i32, i64) {
    let child = Command::new(BIN)
        .args(["evidence", "verify"])
        .arg(bundle)
        .args(["--public-key", "signer.pub"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is valid; wait4 fills it for
    // the child we spawned (std never waits for it: `child` is dropped).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid);
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

/// Memory stays flat whatever the bundle: 256 MiB of zeros (a few hundred
/// KB compressed) in one entry does not become 256 MiB of memory.
#[cfg(target_os = "linux")]
#[test]
fn verify_memory_is_flat_on_a_bundle_that_expands() {
    let (dir, bundle) = exported();
    let d = dir.path();
    let original = entries(&bundle);
    let path = d.join("bomb.tar.gz");
    let f = std::fs::File::create(&path).expect("create");
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    gz.write_all(&raw_tar(&original, false)).expect("tar");
    let big: u64 = 256 << 20;
    let mut h = tar::Header::new_ustar();
    h.set_path("reports/zeros.bin").expect("path");
    h.set_size(big);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    gz.write_all(h.as_bytes()).expect("header");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(big >> 20) {
        gz.write_all(&zeros).expect("zeros");
    }
    gz.write_all(&[0u8; 1024]).expect("end");
    gz.finish().expect("gz");
    let (code, peak_kib) = verify_peak_kib(d, &path);
    assert_eq!(code, 1);
    assert!(
        peak_kib < 64 << 10,
        "evidence verify peaked at {peak_kib} KiB on a 256 MiB entry"
    );
}

/// A user and access key created on moto; returns the key id and the secret.
fn moto_key(endpoint: &str) -> (String, String) {
    let script = format!(
        "import boto3\n\
         c = boto3.client('iam', endpoint_url='{endpoint}', region_name='us-east-1',\n\
             aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         c.create_user(UserName='report-probe')\n\
         k = c.create_access_key(UserName='report-probe')['AccessKey']\n\
         print(k['AccessKeyId'], k['SecretAccessKey'])\n"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let o = Command::new(python)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 with boto3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (id, secret) = text.split_once(' ').expect("id secret");
    assert!(secret.len() >= 20, "a real secret: {secret:?}");
    (id.to_string(), secret.to_string())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_secret_value_in_any_export_and_actions_reach_trace_and_audit() {
    let moto = nhi_aws::moto::Moto::start("estate", &[]).expect("fixture");
    let (key_id, secret) = moto_key(&moto.ready.endpoint);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("approvals")).expect("mkdir");
    std::fs::write(d.join("approvals/none.yaml"), "approvals: []\n").expect("approvals");
    std::fs::write(
        d.join("nhi-assure.toml"),
        format!(
            "store = \"store.db\"\n[[sources]]\ntype = \"aws\"\nname = \"aws\"\nendpoint_url = \"{}\"\nmax_attempts = 3\ninitial_backoff_ms = 10\n\n[[approvals]]\ntype = \"files\"\nname = \"approvals\"\npath = \"approvals\"\n\n[enforce]\ndefault_grace_hours = 0\nmax_percent = 100.0\nmax_subjects = 100\n",
            moto.ready.proxy
        ),
    )
    .expect("config");
    // Enforce: the probe's unapproved key is disabled and journaled.
    let o = run_in(
        d,
        &[
            "reconcile",
            "--config",
            "nhi-assure.toml",
            "--enforce",
            // moto refuses service-specific credentials: a partial run.
            "--allow-partial",
            "--format",
            "json",
        ],
    );
    assert!(
        o.status.code().is_some_and(|c| c <= 2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let outcomes: Vec<Value> = serde_json::from_slice::<Value>(&o.stdout).expect("outcomes")
        ["outcomes"]
        .as_array()
        .cloned()
        .expect("a reconcile document lists its outcomes");
    assert!(
        outcomes
            .iter()
            .any(|x| x["credential_id"] == key_id.as_str() && x["status"] == "done"),
        "{outcomes:#?}"
    );

    ok(run_in(
        d,
        &[
            "report",
            "--config",
            "nhi-assure.toml",
            "--format",
            "table,json,csv,ocsf,sarif,html",
            "--out",
            "out",
        ],
    ));
    let trace = ok(run_in(
        d,
        &["trace", "--config", "nhi-assure.toml", &key_id],
    ));
    let t: Value = serde_json::from_slice(&trace.stdout).expect("trace");
    let actions = t["actions"].as_array().expect("actions");
    assert!(
        actions
            .iter()
            .any(|a| a["request"]["operation"] == "disable_credential" && a["status"] == "done"),
        "{actions:#?}"
    );
    ok(run_in(
        d,
        &[
            "trace",
            "--config",
            "nhi-assure.toml",
            &key_id,
            "--format",
            "html",
            "-o",
            "out/trace.html",
        ],
    ));
    ok(run_in(d, &["evidence", "keygen", "--out", "k"]));
    ok(run_in(
        d,
        &[
            "evidence",
            "export",
            "--config",
            "nhi-assure.toml",
            "--key",
            "k.key",
            "--out",
            "b.tar.gz",
        ],
    ));
    let bundle = entries(&d.join("b.tar.gz"));
    let audit = &bundle
        .iter()
        .find(|(n, _)| n == "audit.jsonl")
        .expect("audit")
        .1;
    let lines: Vec<Value> = String::from_utf8_lossy(audit)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let intent = lines
        .iter()
        .find(|e| {
            e["kind"] == "action.intent" && e["data"]["request"]["credential_id"] == key_id.as_str()
        })
        .expect("the action's intent is in the run's audit slice");
    assert!(lines.iter().any(|e| e["kind"] == "action.outcome"
        && e["subject"] == intent["subject"]
        && e["data"]["status"] == "done"));
    let chain = &bundle
        .iter()
        .find(|(n, _)| n == "audit-chain.json")
        .expect("audit chain")
        .1;
    let chain: Value = serde_json::from_slice(chain).expect("chain json");
    assert_eq!(chain["state"], "intact", "{chain}");
    assert_eq!(chain["head"].as_str().map(str::len), Some(64), "{chain}");

    // The secret appears nowhere: not in any report, the bundle, or the store.
    let mut files = Vec::new();
    files_under(&d.join("out"), &mut files);
    assert!(files.len() >= 8, "{files:?}");
    for f in &files {
        let text = std::fs::read(f).expect("read");
        assert!(
            !String::from_utf8_lossy(&text).contains(&secret),
            "secret in {}",
            f.display()
        );
        // The key id itself is reported (ids are not secrets).
    }
    assert!(std::fs::read_to_string(d.join("out/report.json"))
        .expect("json")
        .contains(&key_id));
    for (name, b) in &bundle {
        assert!(
            !String::from_utf8_lossy(b).contains(&secret),
            "secret in bundle {name}"
        );
    }
    for f in ["store.db", "store.db-wal"] {
        if let Ok(db) = std::fs::read(d.join(f)) {
            assert!(
                !String::from_utf8_lossy(&db).contains(&secret),
                "secret in {f}"
            );
        }
    }
}
