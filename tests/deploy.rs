//! The shipped configs start as their deployments document: every config
//! under `examples/` is run with exactly the environment its deployment
//! files set — systemd `Environment=` / `EnvironmentFile=`, Kubernetes
//! `env` / `envFrom` with values from the Secret templates, nothing for a
//! config without deployment files — through `rules` and `daemon --check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

/// One way a config is started: which config, with which environment.
#[derive(Debug)]
struct Start {
    what: String,
    config: PathBuf,
    env: BTreeMap<String, String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// A path the deployment names (`/etc/nhi-assure/env`) as the file shipped
/// beside the deployment file (`env`).
fn shipped(dir: &Path, named: &str) -> PathBuf {
    let name = named.rsplit('/').next().expect("file name");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} names {named}, not shipped as {}",
        dir.display(),
        p.display()
    );
    p
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

/// `KEY=VALUE` lines (systemd EnvironmentFile syntax; `#` comments).
fn env_file(p: &Path, env: &mut BTreeMap<String, String>) {
    for line in std::fs::read_to_string(p).expect("env file").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line.split_once('=').expect("KEY=VALUE");
        env.insert(k.trim().to_string(), unquote(v));
    }
}

fn systemd(unit: &Path) -> Start {
    let dir = unit.parent().expect("dir");
    let mut env = BTreeMap::new();
    let mut config = None;
    for line in std::fs::read_to_string(unit).expect("unit").lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Environment=") {
            // One or more assignments, each possibly quoted.
            for a in v.split_whitespace() {
                let (k, v) = a.split_once('=').expect("Environment=KEY=VALUE");
                env.insert(unquote(k), unquote(v));
            }
        } else if let Some(v) = line.strip_prefix("EnvironmentFile=") {
            env_file(&shipped(dir, v.trim_start_matches('-')), &mut env);
        } else if let Some(v) = line.strip_prefix("ExecStart=") {
            let args: Vec<&str> = v.split_whitespace().collect();
            let at = args
                .iter()
                .position(|a| *a == "--config")
                .expect("--config");
            config = Some(shipped(dir, args[at + 1]));
        }
    }
    Start {
        what: unit.display().to_string(),
        config: config.expect("ExecStart with --config"),
        env,
    }
}

fn yaml(p: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(p).expect("yaml")).expect("valid YAML")
}

/// Every Deployment / CronJob container of a kustomization, with the env
/// its spec gives it (Secret values from the shipped Secret templates) and
/// the config its ConfigMap mounts.
fn kubernetes(kustomization: &Path) -> Vec<Start> {
    let dir = kustomization.parent().expect("dir");
    let k = yaml(kustomization);
    let docs: Vec<(PathBuf, Value)> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && p != kustomization)
        .map(|p| {
            let v = yaml(&p);
            (p, v)
        })
        .collect();
    let secret = |name: &str| -> BTreeMap<String, String> {
        let (_, s) = docs
            .iter()
            .find(|(_, d)| d["kind"] == "Secret" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Secret {name} shipped"));
        s["stringData"]
            .as_object()
            .expect("stringData")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
            .collect()
    };
    let config_map_files = |name: &str| -> Vec<PathBuf> {
        k["configMapGenerator"]
            .as_array()
            .expect("configMapGenerator")
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("no ConfigMap {name} generated"))["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| dir.join(f.as_str().expect("file")))
            .collect()
    };
    let mut out = Vec::new();
    for (path, d) in &docs {
        let pod = match d["kind"].as_str() {
            Some("Deployment") => &d["spec"]["template"]["spec"],
            Some("CronJob") => &d["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        let volumes = pod["volumes"].as_array().expect("volumes");
        for c in pod["containers"].as_array().expect("containers") {
            let mut env = BTreeMap::new();
            for from in c["envFrom"].as_array().into_iter().flatten() {
                let name = from["secretRef"]["name"].as_str().expect("secretRef only");
                env.extend(secret(name));
            }
            for e in c["env"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().expect("name").to_string();
                let value = match e["value"].as_str() {
                    Some(v) => v.to_string(),
                    None => {
                        let r = &e["valueFrom"]["secretKeyRef"];
                        secret(r["name"].as_str().expect("secretKeyRef"))
                            [r["key"].as_str().expect("key")]
                        .clone()
                    }
                };
                env.insert(name, value);
            }
            let args: Vec<&str> = c["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("arg"))
                .collect();
            let at = args
                .iter()
                .position(|a| *a == "--config")
                .expect("--config");
            let wanted = args[at + 1];
            let mount = c["volumeMounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .find(|m| m["mountPath"] == wanted)
                .expect("the config is mounted");
            let volume = volumes
                .iter()
                .find(|v| v["name"] == mount["name"])
                .expect("volume");
            let map = volume["configMap"]["name"].as_str().expect("configMap");
            let sub = mount["subPath"].as_str().expect("subPath");
            let config = config_map_files(map)
                .into_iter()
                .find(|f| f.file_name().is_some_and(|n| n == sub))
                .expect("the ConfigMap holds the config");
            out.push(Start {
                what: format!("{} container {}", path.display(), c["name"]),
                config,
                env,
            });
        }
    }
    out
}

fn starts() -> Vec<Start> {
    let mut all = Vec::new();
    files(&root(), &mut all);
    let mut starts = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for p in &all {
        let found = match p.file_name().and_then(|n| n.to_str()) {
            Some(n) if n.ends_with(".service") => vec![systemd(p)],
            Some("kustomization.yaml") => kubernetes(p),
            _ => continue,
        };
        for s in found {
            covered.insert(s.config.clone());
            starts.push(s);
        }
    }
    // A config no deployment file starts is run as its comments say: with
    // no environment at all.
    for p in all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        if !covered.contains(p) {
            starts.push(Start {
                what: format!("{} (no deployment files)", p.display()),
                config: p.clone(),
                env: BTreeMap::new(),
            });
        }
    }
    starts
}

#[test]
fn every_example_config_starts_with_its_documented_environment() {
    let starts = starts();
    let configs: std::collections::BTreeSet<_> = starts.iter().map(|s| &s.config).collect();
    assert!(configs.len() >= 5, "every example config: {configs:?}");
    assert!(
        starts.iter().any(|s| s.what.contains(".service"))
            && starts.iter().any(|s| s.what.contains("deployment.yaml")),
        "systemd and Kubernetes deployments found: {starts:#?}"
    );
    let mut failures = Vec::new();
    for s in &starts {
        for args in [vec!["rules"], vec!["daemon", "--check"]] {
            let o = Command::new(BIN)
                .args(&args)
                .arg("--config")
                .arg(&s.config)
                .env_clear()
                .envs(&s.env)
                .output()
                .expect("run");
            if o.status.code() != Some(0) {
                failures.push(format!(
                    "{} [{}] with {:?}: exit {:?}: {}",
                    s.what,
                    args.join(" "),
                    s.env.keys().collect::<Vec<_>>(),
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_deployments_document_the_webhook_secret_they_configure() {
    // The webhook secret each deployment sets is the variable its config names.
    for s in starts().iter().filter(|s| !s.env.is_empty()) {
        let text = std::fs::read_to_string(&s.config).expect("config");
        if let Some(line) = text.lines().find(|l| l.starts_with("webhook_secret_env")) {
            let var = unquote(line.split_once('=').expect("=").1);
            assert!(s.env.contains_key(&var), "{}: sets no {var}", s.what);
            assert!(
                !var.starts_with("NHI_ASSURE_"),
                "{var} collides with overrides"
            );
        }
    }
}

#[test]
fn an_override_that_is_no_config_key_names_the_variable_and_what_it_would_set() {
    let config = root().join("demo/nhi-assure.toml");
    let o = Command::new(BIN)
        .args(["rules", "--config"])
        .arg(&config)
        .env_clear()
        .env("NHI_ASSURE_WEBHOOK_SECRET", "a-secret-value-never-shown")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("NHI_ASSURE_WEBHOOK_SECRET"), "{err}");
    assert!(err.contains("would set `webhook_secret`"), "{err}");
    assert!(err.contains("not a config key"), "{err}");
    assert!(!err.contains("a-secret-value-never-shown"), "{err}");
    // A config naming a secret variable under the override prefix is refused
    // at the key, before anything runs.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[[sources]]\ntype = \"aws\"\nname = \"aws\"\n[daemon]\nwebhook_secret_env = \"NHI_ASSURE_HOOK\"\n",
    )
    .expect("write");
    let o = Command::new(BIN)
        .args(["daemon", "--check", "--config"])
        .arg(&p)
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("c.toml:5:1"), "{err}");
    assert!(err.contains("override prefix"), "{err}");
    // A store URL that does not parse is caught by the check, redacted.
    std::fs::write(&p, "[[sources]]\ntype = \"aws\"\nname = \"aws\"\n").expect("write");
    let o = Command::new(BIN)
        .args(["daemon", "--check", "--config"])
        .arg(&p)
        .env_clear()
        .env("NHI_ASSURE_STORE", "postgres://nhi:Hidden-Pw@[db/nhi")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("NHI_ASSURE_STORE") && err.contains("not a valid URL"),
        "{err}"
    );
    assert!(!err.contains("Hidden-Pw"), "{err}");
}

/// The member role's StackSet template grants exactly the policy files
/// (scan-only always, enforce only when enabled, undo never) and trusts
/// only the scanner role named at deployment, with the external id when
/// one is given: the template cannot drift from the files the IAM tests
/// check against moto.
#[test]
fn the_member_role_template_grants_exactly_the_policy_files() {
    let aws = root().join("deploy/aws");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(aws.join(name)).expect("read")).expect("json")
    };
    let t = read("member-role.cfn.json");
    let role = &t["Resources"]["MemberRole"];
    assert_eq!(role["Type"], "AWS::IAM::Role");
    let p = &role["Properties"];
    assert_eq!(p["RoleName"], serde_json::json!({"Ref": "RoleName"}));
    assert_eq!(t["Parameters"]["RoleName"]["Default"], "nhi-assure-member");
    let trust = &p["AssumeRolePolicyDocument"]["Statement"];
    assert_eq!(trust.as_array().map(Vec::len), Some(1));
    assert_eq!(
        trust[0]["Principal"],
        serde_json::json!({"AWS": {"Ref": "ScannerRoleArn"}})
    );
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
    assert_eq!(
        trust[0]["Condition"]["Fn::If"][1],
        serde_json::json!({"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}})
    );
    let policies = p["Policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 2);
    assert_eq!(policies[0]["PolicyDocument"], read("scan-only.json"));
    let enforce = &policies[1]["Fn::If"];
    assert_eq!(enforce[0], "Enforce");
    assert_eq!(enforce[1]["PolicyDocument"], read("enforce.json"));
    assert_eq!(enforce[2], serde_json::json!({"Ref": "AWS::NoValue"}));
    assert_eq!(
        t["Conditions"]["Enforce"],
        serde_json::json!({"Fn::Equals": [{"Ref": "EnableEnforce"}, "true"]})
    );
    assert_eq!(t["Parameters"]["EnableEnforce"]["Default"], "false");
    // The discovery permissions are the three calls the connector makes.
    let d = read("organizations-discovery.json");
    assert_eq!(
        d["Statement"][0]["Action"],
        serde_json::json!([
            "organizations:ListAccounts",
            "organizations:ListParents",
            "organizations:ListTagsForResource"
        ])
    );
}
