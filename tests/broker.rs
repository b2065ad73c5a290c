//! The credentials broker against a local OIDC issuer (an RSA key made by
//! the test with openssl, its JWKS served on loopback, tokens signed by the
//! test) and moto: accepted, wrong audience, expired, unsigned, wrong key,
//! unknown issuer, subject not bound, expired approval; the JWKS cached.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/oidc.rs"]
mod oidc;

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use nhi_assure::daemon::broker::{handle, Broker};
use nhi_assure::pass::Context;
use nhi_aws::moto::Moto;
use oidc::{b64, claims, rsa_key, serve_jwks, setup, token, AUDIENCE, ISSUER, SUBJECT};

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

/// The broker as a workload meets it: the daemon's HTTP listener, the
/// response headers, the refusals the router itself makes, and a log with
/// no secret in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_the_broker_over_http() {
    let moto = Moto::start("smoke", &[]).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, jwk) = rsa_key(dir.path(), "issuer", "k1");
    let (jwks_url, _) = serve_jwks(serde_json::json!({"keys": [jwk]})).await;
    let cfg = setup(&moto, dir.path(), &jwks_url);
    let port = daemon::free_port();
    let log = dir.path().join("daemon.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nhi-assure"))
        .args(["daemon", "--config"])
        .arg(&cfg)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "debug")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("daemon");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let up = http.get(format!("{base}/healthz")).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "daemon listening");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let url = format!("{base}/v1/credentials");
    let good = token(&key, "k1", claims(AUDIENCE, SUBJECT, Duration::minutes(5)));

    let r = http
        .post(&url)
        .bearer_auth(&good)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: serde_json::Value =
        serde_json::from_str(&r.text().await.expect("body")).expect("json");
    assert_eq!(body["Version"], 1);
    let secret = body["SecretAccessKey"]
        .as_str()
        .expect("secret")
        .to_string();
    let session_token = body["SessionToken"].as_str().expect("token").to_string();
    let expiration =
        chrono::DateTime::parse_from_rfc3339(body["Expiration"].as_str().expect("expiration"))
            .expect("rfc 3339");
    assert!(expiration > Utc::now() + Duration::minutes(10));

    // Naming the approval in the body works; naming one that does not bind
    // this workload is refused.
    let r = http
        .post(&url)
        .bearer_auth(&good)
        .body(r#"{"approval": "APR-WL"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let r = http
        .post(&url)
        .bearer_auth(&good)
        .body(r#"{"approval": "APR-WL-OLD"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = http
        .post(&url)
        .bearer_auth(&good)
        .body(r#"{"approval": "APR-WL", "role": "arn:aws:iam::123456789012:role/admin"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "unknown fields are refused");

    // No token, a GET, an oversized body: refused before any issuance.
    let r = http.post(&url).send().await.expect("post");
    assert_eq!(r.status(), 401);
    let refusal: serde_json::Value =
        serde_json::from_str(&r.text().await.expect("body")).expect("json");
    assert!(refusal["error"]
        .as_str()
        .is_some_and(|e| e.contains("bearer")));
    let r = http.get(&url).send().await.expect("get");
    assert_eq!(r.status(), 405);
    let r = http
        .post(&url)
        .bearer_auth(&good)
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    assert_eq!(
        moto.assume_role_requests().expect("requests").len(),
        2,
        "only the two accepted requests reached STS"
    );

    assert_eq!(daemon::terminate(child), Some(0), "clean stop");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("broker request"),
        "the debug log has the phases"
    );
    for s in [&secret, &session_token, &good] {
        assert!(!text.contains(s.as_str()), "a secret in the daemon's log");
    }
}
