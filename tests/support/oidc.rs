//! A local OIDC issuer for broker tests and benches: an RSA key made with
//! openssl, its JWKS served on loopback, tokens signed here.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use chrono::{Duration, SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nhi_aws::moto::Moto;

pub const ISSUER: &str = "https://token.actions.example.test";
pub const AUDIENCE: &str = "nhi-assure-broker";
pub const SUBJECT: &str = "repo:org/app:environment:prod";

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA key: (PKCS#1 DER private key, JWK of the public key).
pub fn rsa_key(dir: &Path, name: &str, kid: &str) -> (Vec<u8>, serde_json::Value) {
    let pem = dir.join(format!("{name}.pem"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let pem_s = pem.to_str().expect("utf8");
    run(&["genrsa", "-out", pem_s, "2048"]);
    let der = run(&["rsa", "-in", pem_s, "-traditional", "-outform", "DER"]);
    let modulus =
        String::from_utf8(run(&["rsa", "-in", pem_s, "-noout", "-modulus"])).expect("utf8");
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let jwk = serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": b64(&n), "e": "AQAB"});
    (der, jwk)
}

/// Serve `jwks` at /jwks on loopback; the URL and a fetch counter.
pub async fn serve_jwks(jwks: serde_json::Value) -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let count = fetches.clone();
    let body = jwks.to_string();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            count.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/jwks"), fetches)
}

pub fn token(key: &[u8], kid: &str, claims: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_der(key)).expect("sign")
}

pub fn claims(aud: &str, sub: &str, exp: Duration) -> serde_json::Value {
    let now = Utc::now();
    serde_json::json!({"iss": ISSUER, "aud": aud, "sub": sub,
        "iat": now.timestamp(), "exp": (now + exp).timestamp()})
}

pub fn at(d: Duration) -> String {
    (Utc::now() + d).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A store, an AWS source on moto, approvals `APR-WL` (binding [`SUBJECT`]
/// to moto's `deployer` role, 4 hours left) and `APR-WL-OLD` (ended an hour
/// ago), and a broker trusting [`ISSUER`] through `jwks_url`: the config.
pub fn setup(moto: &Moto, dir: &Path, jwks_url: &str) -> std::path::PathBuf {
    let role = moto.role("deployer");
    let approval = |id: &str, sub: &str, end: Duration| {
        format!(
            "  - id: {id}
    subject: {role}
    scope: {{actions: [\"s3:GetObject\"]}}
    requester: dev@example.com
    approver: lead@example.com
    approved_at: {a}
    expires_at: {e}
    role: {role}
    issue_to:
      issuer: {ISSUER}
      subject: \"{sub}\"
",
            a = at(Duration::days(-1)),
            e = at(end),
        )
    };
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::write(
        dir.join("approvals/wl.yaml"),
        format!(
            "approvals:\n{}{}",
            approval("APR-WL", SUBJECT, Duration::hours(4)),
            approval(
                "APR-WL-OLD",
                "repo:org/app:environment:old",
                Duration::hours(-1)
            ),
        ),
    )
    .expect("approvals");
    let cfg = dir.join("nhi-assure.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"store = "store.db"
[[sources]]
type = "aws"
name = "aws"
endpoint_url = "{}"
max_attempts = 2
initial_backoff_ms = 10

[[approvals]]
type = "files"
name = "approvals"
path = "approvals"

[daemon.broker]
jwks_ttl_secs = 300
[[daemon.broker.issuers]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_url = "{jwks_url}"
"#,
            moto.ready.proxy
        ),
    )
    .expect("config");
    cfg
}
