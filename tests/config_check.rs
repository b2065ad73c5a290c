//! Nonsense configuration is refused before anything runs, located at the
//! key (file:line:column) or the variable that set it; `[enforce.grace_hours]`
//! merges with the built-in grace; the store password never shows in an
//! error, whatever form the store URL takes.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

const BASE: &str = "store = \"s.db\"\n[[sources]]\ntype = \"aws\"\nname = \"aws\"\n";

fn run(dir: &Path, args: &[&str], text: &str, env: &[(&str, &str)]) -> Output {
    let p = dir.join("c.toml");
    std::fs::write(&p, text).expect("write");
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&p)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run")
}

/// (what is appended to BASE, the location expected, a word of the message)
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "[rules.params]\nstale_days = -1\n",
        "c.toml:6:1",
        "stale_days",
    ),
    (
        "[rules.params]\nnever_used_days = 99999999\n",
        "c.toml:6:1",
        "never_used_days",
    ),
    (
        "[rules.overrides.credential-stale.params]\nstale_days = -30\n",
        "c.toml:6:1",
        "stale_days",
    ),
    (
        "[[approvals]]\ntype = \"files\"\nname = \"a\"\npath = \"a\"\nmax_validity_days = -1\n",
        "c.toml:9:1",
        "max_validity_days",
    ),
    (
        "[enforce]\nmax_percent = nan\n",
        "c.toml:6:1",
        "max_percent",
    ),
    (
        "[enforce]\nmax_percent = inf\n",
        "c.toml:6:1",
        "max_percent",
    ),
    (
        "[enforce]\nmax_percent = -1.0\n",
        "c.toml:6:1",
        "max_percent",
    ),
    (
        "[enforce]\nmax_percent = 100.5\n",
        "c.toml:6:1",
        "max_percent",
    ),
    (
        "[enforce]\nmax_subjects = 3\ndefault_grace_hours = 9223372036854775807\n",
        "c.toml:7:1",
        "default_grace_hours",
    ),
    (
        "[enforce]\nquarantine_days = -1\n",
        "c.toml:6:1",
        "quarantine_days",
    ),
    (
        "[enforce]\nunmatched_revocation_days = 0\n",
        "c.toml:6:1",
        "unmatched_revocation_days",
    ),
    (
        "[enforce.budget]\noverall = [{ window_secs = 0, actions = 5 }]\n",
        "c.toml:6:14",
        "window_secs",
    ),
    (
        "[enforce]\nallow_irreversible = [\"console_pasword\"]\n",
        "c.toml:6:22",
        "console_password",
    ),
    (
        "[enforce.grace_hours]\ncredential-stale = -2\n",
        "c.toml:6:1",
        "credential-stale",
    ),
    (
        "[enforce.grace_hours]\ncredential-stal = 2\n",
        "c.toml:6:1",
        "credential-stal",
    ),
    (
        "[daemon]\nwebhook_window_secs = -5\n",
        "c.toml:6:1",
        "webhook_window_secs",
    ),
    (
        "[daemon]\nwebhook_window_secs = 9223372036854775807\n",
        "c.toml:6:1",
        "webhook_window_secs",
    ),
    (
        "[daemon]\nidle_timeout_secs = 0\n",
        "c.toml:6:1",
        "idle_timeout_secs",
    ),
    (
        "[daemon]\nmax_connections = 0\n",
        "c.toml:6:1",
        "max_connections",
    ),
    (
        "[rules.params]\nstale_days = \"ninety\"\n",
        "c.toml:6:1",
        "stale_days",
    ),
    (
        "[rules.overrides.credential-stale.params]\nstale_dayz = 3\n",
        "c.toml:6:1",
        "stale_dayz",
    ),
    // A wrong type inside a tagged entry, at the key, not the `[[sources]]` header.
    (
        "max_concurrency = \"eight\"\n",
        "c.toml:5:19",
        "invalid type",
    ),
    ("max_concurrency = 0\n", "c.toml:5:1", "max_concurrency"),
    // An account id that is not one, at the list item.
    (
        "trusted_accounts = [\"999988887777\", \"12345\"]\n",
        "c.toml:5:37",
        "not a 12-digit AWS account id",
    ),
    // An organisation: its settings at their key, and never beside assume_roles.
    (
        "[sources.organization]\nrole_name = \"nhi-assure-member\"\nexclude_ous = [\"prod\"]\n",
        "c.toml:7:16",
        "is not an OU",
    ),
    (
        "assume_roles = [\"arn:aws:iam::210987654321:role/x\"]\n[sources.organization]\nrole_name = \"m\"\n",
        "c.toml:6:10",
        "use one",
    ),
    (
        "[sources.organization]\nrole_name = \"arn:aws:iam::1:role/x\"\n",
        "c.toml:6:1",
        "not an IAM role name",
    ),
    // Inside a nested tagged table (Azure `[sources.auth]`), at the key too.
    (
        "[[sources]]\ntype = \"azure\"\nname = \"az\"\ntenant_id = \"t\"\n[sources.auth]\nmethod = \"client_secret\"\nclient_id = 5\nsecret_env = \"NHI_SECRET_AZ\"\n",
        "c.toml:11:1",
        "invalid type",
    ),
];

#[test]
fn nonsense_is_refused_at_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wrong = Vec::new();
    for (extra, at, word) in REFUSED {
        for args in [&["rules"][..], &["daemon", "--check"][..]] {
            let o = run(dir.path(), args, &format!("{BASE}{extra}"), &[]);
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err.lines().next().unwrap_or_default();
            if o.status.code() != Some(2)
                || !first.contains(&format!("{at}:"))
                || !err.contains(word)
            {
                wrong.push(format!(
                    "{extra:?} [{}]: exit {:?}: {err}",
                    args.join(" "),
                    o.status.code()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} accepted or not located:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn an_out_of_range_override_names_its_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (var, value) in [
        ("NHI_ASSURE_ENFORCE__MAX_PERCENT", "nan"),
        ("NHI_ASSURE_RULES__PARAMS__STALE_DAYS", "-1"),
        ("NHI_ASSURE_DAEMON__WEBHOOK_WINDOW_SECS", "-300"),
    ] {
        let o = run(dir.path(), &["rules"], BASE, &[(var, value)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(var), "{var}: {err}");
    }
}

#[test]
fn grace_hours_merge_with_the_built_in_zero_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        format!("{BASE}[enforce.grace_hours]\ncredential-stale = 48\n"),
    )
    .expect("write");
    let cfg = nhi_assure::config::Config::load(&p, std::iter::empty()).expect("valid");
    let grace = &cfg.enforce.grace_hours;
    assert_eq!(grace.get("credential-stale"), Some(&48));
    assert_eq!(
        grace.get("approval-expired"),
        Some(&0),
        "built-in zero grace kept: {grace:?}"
    );
    assert_eq!(grace.get("credential-used-outside-scope"), Some(&0));
    // Overriding a built-in value still works.
    std::fs::write(
        &p,
        format!("{BASE}[enforce.grace_hours]\napproval-expired = 2\n"),
    )
    .expect("write");
    let cfg = nhi_assure::config::Config::load(&p, std::iter::empty()).expect("valid");
    assert_eq!(cfg.enforce.grace_hours.get("approval-expired"), Some(&2));
}

/// Every form a store URL can carry a password in; none may reach stderr,
/// whether the URL parses or not.
#[test]
fn the_store_password_never_shows_in_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let cfg = std::fs::read_to_string(demo.join("nhi-assure.toml"))
        .expect("demo")
        .replace("estate/", &format!("{}/estate/", demo.display()))
        .replace(
            "path = \"approvals\"",
            &format!("path = \"{}/approvals\"", demo.display()),
        )
        .replace(
            "export_dir = \"",
            &format!("export_dir = \"{}/", demo.display()),
        )
        .replace(
            "path = \"exceptions\"",
            &format!("path = \"{}/exceptions\"", demo.display()),
        );
    let forms = [
        "postgres://nhi:Pw-Userinfo-1@127.0.0.1:1/nhi",
        "postgres://nhi:Pw%40Encoded-2@127.0.0.1:1/nhi",
        "postgres://nhi@127.0.0.1:1/nhi?password=Pw-Query-3",
        "postgres://nhi@127.0.0.1:1/nhi?sslmode=require&sslpassword=Pw-Ssl-4",
        "postgresql://nhi@127.0.0.1:1/nhi?PassWord=Pw-Case-5&connect_timeout=1",
        "postgres://nhi:Pw-Unparsed-6@[not-a-host/nhi",
        "postgres://nhi:Pw-BadPort-7@127.0.0.1:99999999/nhi",
        "postgres://nhi@127.0.0.1:1/nhi?password=Pw-Unparsed-8&x=%zz%",
    ];
    let secrets = [
        "Pw-Userinfo-1",
        "Pw@Encoded-2",
        "Pw%40Encoded-2",
        "Pw-Query-3",
        "Pw-Ssl-4",
        "Pw-Case-5",
        "Pw-Unparsed-6",
        "Pw-BadPort-7",
        "Pw-Unparsed-8",
    ];
    let handles: Vec<_> = forms
        .iter()
        .map(|url| {
            let p = dir.path().join(format!("c{}.toml", url.len()));
            std::fs::write(&p, &cfg).expect("write");
            let url = url.to_string();
            std::thread::spawn(move || {
                let o = Command::new(BIN)
                    .args(["scan", "--config"])
                    .arg(&p)
                    .env_clear()
                    .env("NHI_ASSURE_STORE", &url)
                    .output()
                    .expect("run");
                (url, o)
            })
        })
        .collect();
    for h in handles {
        let (url, o) = h.join().expect("thread");
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(2), "{url}: {out}");
        assert!(out.contains("opening store"), "{url}: {out}");
        for s in secrets {
            assert!(!out.contains(s), "{url}: {s} leaked: {out}");
        }
    }
}
