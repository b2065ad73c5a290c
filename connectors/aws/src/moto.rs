//! Test support: runs `tests/aws/moto_fixture.py` (moto in-process plus a
//! counting, fault-injecting proxy) and hands back its endpoints and the
//! ids it created. Enabled by the `moto-fixture` feature; tests only.
//!
//! The fixture lives as long as this value: dropping it closes the
//! fixture's stdin, which makes it shut down.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde::Deserialize;

/// What the fixture printed when ready.
#[derive(Debug, Clone, Deserialize)]
pub struct Ready {
    /// moto itself.
    pub endpoint: String,
    /// The proxy in front of moto (counts calls, injects faults).
    pub proxy: String,
    /// Account id.
    pub account: String,
    /// Logical key name → real access key id.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
    /// User name → ARN.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Role name → ARN.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// Scenario `principals`: user name → a key the test signs as.
    #[serde(default)]
    pub principals: BTreeMap<String, Principal>,
    /// The scenario's organisation, if it has one.
    #[serde(default)]
    pub organization: Option<Organization>,
}

/// The organisation the fixture created (ids are drawn by moto).
#[derive(Debug, Clone, Deserialize)]
pub struct Organization {
    /// Organisation id (`o-…`).
    pub id: String,
    /// Root id (`r-…`).
    pub root: String,
    /// OU name → id (`Root` → the root).
    pub ous: BTreeMap<String, String>,
    /// Account name → id.
    pub accounts: BTreeMap<String, String>,
    /// The member role each account has.
    pub role_name: String,
}

/// A key for a scenario principal (authorization tests only).
#[derive(Debug, Clone, Deserialize)]
pub struct Principal {
    /// Access key id.
    pub access_key_id: String,
    /// Its secret, issued by moto for the test to sign with.
    pub secret_access_key: String,
}

/// A running fixture.
pub struct Moto {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its ready line.
    pub ready: Ready,
}

/// The repository's `tests/aws` directory.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/aws")
}

impl Moto {
    /// Start the fixture on `scenario` (a path, or a name under
    /// `tests/aws/scenarios/` without `.json`), with extra fixture flags.
    pub fn start(scenario: &str, flags: &[&str]) -> Result<Moto, String> {
        let path = if scenario.ends_with(".json") {
            PathBuf::from(scenario)
        } else {
            fixture_dir()
                .join("scenarios")
                .join(format!("{scenario}.json"))
        };
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(fixture_dir().join("moto_fixture.py"))
            .arg(&path)
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the moto fixture: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading the fixture: {e}"))?;
        let ready: Ready = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                return Err(format!(
                    "the moto fixture did not start ({e}); is `moto[server]` installed? (tests/run.sh installs it). line: {line:?}"
                ));
            }
        };
        let stdin = child.stdin.take();
        Ok(Moto {
            child,
            stdin,
            ready,
        })
    }

    /// The real id of a logical key name of the scenario.
    pub fn key(&self, name: &str) -> String {
        self.ready
            .keys
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("scenario has no key {name}"))
    }

    /// ARN of a scenario user.
    pub fn user(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:user/{name}", self.ready.account)
    }

    /// ARN of a scenario role.
    pub fn role(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:role/{name}", self.ready.account)
    }

    /// An SDK config with moto's dummy credentials, pointed at `endpoint`.
    pub async fn sdk_config(endpoint: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// An IAM client for another account of the same moto server, through
    /// the role every organisation member has
    /// (`OrganizationAccountAccessRole`): moto answers AssumeRole for any
    /// account, and the credentials it returns act in that account. For
    /// seeding and reading back member accounts.
    pub async fn account_client(&self, account: &str) -> aws_sdk_iam::Client {
        let base = Moto::sdk_config(&self.ready.endpoint).await;
        let role = member_role(account);
        crate::sdk::client_for(&base, &crate::AwsConfig::named("member"), Some(&role)).await
    }

    /// From now on, STS refuses to let anyone assume `role` (as when its
    /// trust policy stops admitting the caller), or admits it again.
    pub fn refuse_role(&self, role: &str, refused: bool) -> Result<(), String> {
        let verb = if refused { "refuse" } else { "admit" };
        http_request(
            "POST",
            &format!("{}/_assume/{verb}", self.ready.proxy),
            role,
        )
        .map(drop)
    }

    /// The AssumeRole requests the proxy forwarded, oldest first, as their
    /// query parameters (moto does not enforce session policies, source
    /// identities or tags: tests assert what was sent).
    pub fn assume_role_requests(&self) -> Result<Vec<BTreeMap<String, Vec<String>>>, String> {
        let body = http_get(&format!("{}/_requests/AssumeRole", self.ready.proxy))?;
        serde_json::from_str(&body).map_err(|e| e.to_string())
    }

    /// Call counts seen by the proxy: `(total, per action)`.
    pub fn proxy_stats(&self) -> Result<(u64, BTreeMap<String, u64>), String> {
        #[derive(Deserialize)]
        struct Stats {
            total: u64,
            actions: BTreeMap<String, u64>,
        }
        let body = http_get(&format!("{}/_stats", self.ready.proxy))?;
        let s: Stats = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok((s.total, s.actions))
    }
}

/// The ARN of the role an organisation's management account assumes in a
/// member account.
pub fn member_role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/OrganizationAccountAccessRole")
}

/// The IAM SDK the fixture's clients are built with (for tests).
pub use aws_sdk_iam;

/// A bare HTTP/1.0 GET on loopback (no client dependency for tests).
fn http_get(url: &str) -> Result<String, String> {
    http_request("GET", url, "")
}

/// A bare HTTP/1.0 request on loopback; the response body.
fn http_request(method: &str, url: &str, body: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).map_err(|e| e.to_string())?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Give it a moment to exit cleanly, then make sure.
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
