//! The credentials broker against a local OIDC issuer (an RSA key made by
//! the test with openssl, its JWKS served on loopback, tokens signed by the
//! test) and moto: accepted, wrong audience, expired, unsigned, wrong key,
//! unknown issuer, subject not bound, expired approval; the JWKS cached.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use chrono::{Duration, SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nhi_assure::daemon::broker::{handle, Broker};
use nhi_assure::pass::Context;
use nhi_aws::moto::Moto;

const ISSUER: &str = "https://token.actions.example.test";
const AUDIENCE: &str = "nhi-assure-broker";
const SUBJECT: &str = "repo:org/app:environment:prod";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA key: (PKCS#1 DER private key, JWK of the public key).
fn rsa_key(dir: &Path, name: &str, kid: &str) -> (Vec<u8>, serde_json::Value) {
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
async fn serve_jwks(jwks: serde_json::Value) -> (String, Arc<AtomicUsize>) {
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

fn token(key: &[u8], kid: &str, claims: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_der(key)).expect("sign")
}

fn claims(aud: &str, sub: &str, exp: Duration) -> serde_json::Value {
    let now = Utc::now();
    serde_json::json!({"iss": ISSUER, "aud": aud, "sub": sub,
        "iat": now.timestamp(), "exp": (now + exp).timestamp()})
}

fn at(d: Duration) -> String {
    (Utc::now() + d).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn setup(moto: &Moto, dir: &Path, jwks_url: &str) -> std::path::PathBuf {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_issues_only_to_the_bound_workload_with_a_valid_token() {
    // moto's dummy credentials for the broker's own identity.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_CONFIG_FILE", "/dev/null");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_SESSION_TOKEN");
    let moto = Moto::start("smoke", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, jwk) = rsa_key(dir.path(), "issuer", "k1");
    let (other, _) = rsa_key(dir.path(), "attacker", "k1");
    let (jwks_url, fetches) = serve_jwks(serde_json::json!({"keys": [jwk]})).await;
    let cfg = setup(&moto, dir.path(), &jwks_url);
    let ctx = Context::load(&cfg).expect("context");
    let broker = Broker::new(ctx.cfg.daemon.broker.clone().expect("broker")).expect("broker");
    let ask = |t: String| {
        let auth = format!("Bearer {t}");
        let (ctx, broker) = (&ctx, &broker);
        async move { handle(broker, ctx, Some(&auth), b"").await }
    };

    // Accepted: the credential JSON, for the approval binding the subject.
    let (status, body) = ask(token(
        &key,
        "k1",
        claims(AUDIENCE, SUBJECT, Duration::minutes(5)),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Version"], 1);
    let secret = body["SecretAccessKey"]
        .as_str()
        .expect("secret")
        .to_string();
    let reqs = moto.assume_role_requests().expect("requests");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["SourceIdentity"], ["APR-WL"]);
    let issued = ctx
        .store()
        .await
        .expect("store")
        .issued_sessions(Some("APR-WL"))
        .await
        .expect("issued");
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].caller, format!("oidc {ISSUER} {SUBJECT}"));

    // Refused, and nothing issued.
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims(AUDIENCE, SUBJECT, Duration::minutes(5))
        .to_string()
        .as_bytes());
    let mut other_issuer = claims(AUDIENCE, SUBJECT, Duration::minutes(5));
    other_issuer["iss"] = "https://evil.example".into();
    let cases = [
        (
            "wrong audience",
            token(
                &key,
                "k1",
                claims("someone-else", SUBJECT, Duration::minutes(5)),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired token",
            token(
                &key,
                "k1",
                claims(AUDIENCE, SUBJECT, Duration::minutes(-10)),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unsigned (alg none)",
            format!("{none_header}.{payload}."),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "signed by another key",
            token(
                &other,
                "k1",
                claims(AUDIENCE, SUBJECT, Duration::minutes(5)),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown issuer",
            token(&key, "k1", other_issuer),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "subject not bound",
            token(
                &key,
                "k1",
                claims(
                    AUDIENCE,
                    "repo:org/other:ref:refs/heads/main",
                    Duration::minutes(5),
                ),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "expired approval",
            token(
                &key,
                "k1",
                claims(
                    AUDIENCE,
                    "repo:org/app:environment:old",
                    Duration::minutes(5),
                ),
            ),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (what, t, want) in cases {
        let (status, body) = ask(t).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(body.get("SecretAccessKey").is_none(), "{what}");
    }
    let (status, _) = handle(&broker, &ctx, None, b"").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        moto.assume_role_requests().expect("requests").len(),
        1,
        "refusals issued nothing"
    );
    // The JWKS was fetched once and cached (the unknown-kid refetch is
    // limited to once per tenth of the TTL).
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // The secret is in no store file.
    for e in std::fs::read_dir(dir.path()).expect("dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(&p).expect("read")).to_string();
            assert!(!text.contains(&secret), "secret in {}", p.display());
        }
    }
}
