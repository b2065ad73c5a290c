//! The minimal IAM policies shipped in `examples/deploy/aws/` are enough,
//! checked against moto with authorization enforced: moto authenticates
//! every request after seeding and evaluates the caller's policies.

use std::path::Path;
use std::process::{Command, Output};

use nhi_aws::moto::Moto;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

fn policy(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/deploy/aws")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("policy file")).expect("policy json")
}

fn principal(name: &str, inline: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": name, "login_profile": false, "inline_policies": inline})
}

/// The `estate` scenario plus the principals the tests sign as.
fn start() -> (Moto, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = nhi_aws::moto::fixture_dir().join("scenarios/estate.json");
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base).expect("scenario")).expect("json");
    let scan = policy("scan-only.json");
    let mut partial = scan.clone();
    if let Some(actions) = partial["Statement"][0]["Action"].as_array_mut() {
        actions.retain(|a| a != "iam:ListAccessKeys");
    }
    let admin = serde_json::json!({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let users = s["users"].as_array_mut().expect("users");
    users.push(principal("nhi-admin", serde_json::json!({"admin": admin})));
    users.push(principal("nhi-scanner", serde_json::json!({"scan": scan})));
    users.push(principal(
        "nhi-scanner-partial",
        serde_json::json!({"scan": partial}),
    ));
    users.push(principal(
        "nhi-enforcer",
        serde_json::json!({"scan": policy("scan-only.json"), "enforce": policy("enforce.json")}),
    ));
    users.push(principal(
        "nhi-restorer",
        serde_json::json!({"scan": policy("scan-only.json"), "enforce": policy("enforce.json"),
                           "undo": policy("undo.json")}),
    ));
    s["principals"] = serde_json::json!([
        "nhi-admin",
        "nhi-scanner",
        "nhi-scanner-partial",
        "nhi-enforcer",
        "nhi-restorer"
    ]);
    let path = dir.path().join("scenario.json");
    std::fs::write(&path, s.to_string()).expect("write scenario");
    let moto = Moto::start(path.to_str().expect("utf8"), &["--enforce-iam-auth"]).expect("fixture");
    (moto, dir)
}

fn config(moto: &Moto, dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::write(dir.join("approvals/none.yaml"), "approvals: []\n").expect("approvals");
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = \"store.db\"\n[[sources]]\ntype = \"aws\"\nname = \"aws\"\nendpoint_url = \"{}\"\nmax_attempts = 2\ninitial_backoff_ms = 10\n\n[[approvals]]\ntype = \"files\"\nname = \"approvals\"\npath = \"approvals\"\n\n[plan]\nprotected = [\"arn:aws:iam::*:user/nhi-*\"]\n\n[enforce]\ndefault_grace_hours = 0\nmax_percent = 100.0\nmax_subjects = 100\n",
            moto.ready.endpoint
        ),
    )
    .expect("config");
    cfg.to_str().expect("utf8").to_string()
}

/// The binary signing as `who`, with nothing of the host's AWS setup.
fn run_as(moto: &Moto, who: &str, args: &[&str]) -> Output {
    let p = &moto.ready.principals[who];
    Command::new(BIN)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &p.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &p.secret_access_key)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("run nhi-assure")
}

/// The `key` list of a pass's JSON document.
fn pass_list(o: &Output, key: &str) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    doc[key].as_array().cloned().unwrap_or_default()
}

fn findings(o: &Output) -> Vec<serde_json::Value> {
    let mut list = pass_list(o, "findings");
    list.sort_by_key(|f| f.to_string());
    list
}

#[test]
fn scan_only_policy_sees_what_an_administrator_sees_and_no_less_is_enough() {
    let (moto, dir) = start();
    let cfg = config(&moto, dir.path());
    let scan = ["scan", "--config", cfg.as_str(), "--format", "json"];
    let admin = run_as(&moto, "nhi-admin", &scan);
    let scanner = run_as(&moto, "nhi-scanner", &scan);
    let scanner_err = String::from_utf8_lossy(&scanner.stderr);
    assert!(!scanner_err.contains("403"), "{scanner_err}");
    assert!(!scanner_err.contains("FAILED"), "{scanner_err}");
    let (a, s) = (findings(&admin), findings(&scanner));
    assert!(a.len() > 10, "the estate has findings");
    assert_eq!(
        s, a,
        "the scan-only policy sees exactly what an administrator sees"
    );

    // Enforcement is real: one permission less and the source is unknown.
    let partial = run_as(&moto, "nhi-scanner-partial", &scan);
    let err = String::from_utf8_lossy(&partial.stderr);
    assert!(
        err.contains("ListAccessKeys") && err.contains("403") && err.contains("FAILED"),
        "{err}"
    );
}

#[test]
fn enforce_policy_acts_and_undo_policy_restores() {
    let (moto, dir) = start();
    let cfg = config(&moto, dir.path());
    let enforce = [
        "reconcile",
        "--config",
        cfg.as_str(),
        "--enforce",
        "--format",
        "json",
    ];

    // Scan-only cannot act: every provider call is refused and journaled as failed.
    let denied = run_as(&moto, "nhi-scanner", &enforce);
    let out = pass_list(&denied, "outcomes");
    assert!(
        out.iter().any(|o| o["status"] == "failed"),
        "{}",
        String::from_utf8_lossy(&denied.stdout)
    );
    assert!(out.iter().all(|o| o["status"] != "done"));

    let dir2 = tempfile::tempdir().expect("tempdir");
    let cfg = config(&moto, dir2.path());
    let enforce = [
        "reconcile",
        "--config",
        cfg.as_str(),
        "--enforce",
        "--format",
        "json",
    ];
    let done = run_as(&moto, "nhi-enforcer", &enforce);
    let out = pass_list(&done, "outcomes");
    let acted: Vec<_> = out.iter().filter(|o| o["status"] == "done").collect();
    assert!(acted.len() >= 2, "{out:#?}");
    assert!(
        out.iter().all(|o| o["status"] != "failed"),
        "the enforce policy is enough: {out:#?}"
    );
    let ops: Vec<&str> = acted
        .iter()
        .filter_map(|o| o["operation"].as_str())
        .collect();
    assert!(ops.contains(&"disable_credential"), "{ops:?}");

    // Undo with the undo policy restores everything, re-attachments included.
    let journal = run_as(
        &moto,
        "nhi-restorer",
        &["journal", "--config", cfg.as_str()],
    );
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&journal.stdout).expect("journal");
    let run_id = entries[0]["run_id"].as_i64().expect("run").to_string();
    let undo = run_as(
        &moto,
        "nhi-restorer",
        &["undo", "--config", cfg.as_str(), "--run", &run_id],
    );
    let text = String::from_utf8_lossy(&undo.stdout);
    assert_eq!(
        undo.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    assert!(!text.contains("failed"), "{text}");
}

#[test]
fn deployment_config_and_approvals_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy/kubernetes");
    let env = [(
        "NHI_ASSURE_STORE".to_string(),
        "postgres://nhi@db.internal/nhi".to_string(),
    )];
    let cfg = nhi_assure::config::Config::load(&dir.join("nhi-assure.toml"), env)
        .expect("the Kubernetes config loads");
    assert_eq!(cfg.store_location(), "postgres://nhi@db.internal/nhi");
    assert_eq!(cfg.mode, nhi_assure::config::Mode::Enforce);
    let schedule: Result<cron::Schedule, _> = cfg.daemon.schedule.parse();
    assert!(schedule.is_ok(), "the schedule parses");
    let approvals = nhi_approvals_as_code::load_dir(&dir.join("approvals"), 365)
        .unwrap_or_else(|p| panic!("the example approvals are valid: {p:?}"));
    assert_eq!(approvals.len(), 1);
}
