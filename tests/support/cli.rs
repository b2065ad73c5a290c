//! The binary as the tests run it: with moto's dummy credentials and
//! nothing of the host's AWS setup, and the list a pass's JSON document
//! carries.

#![allow(dead_code)]

use std::process::Command;

/// `nhi-assure ARGS` signing with moto's dummy credentials only.
pub fn moto_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nhi-assure"));
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

/// The list a pass's JSON document carries (`findings`, `actions` or
/// `outcomes`); other commands print a bare array.
pub fn listed(stdout: &[u8]) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(stdout).expect("json");
    match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(mut o) => ["findings", "actions", "outcomes"]
            .iter()
            .find_map(|k| o.remove(*k))
            .and_then(|l| serde_json::from_value(l).ok())
            .expect("a pass document with findings, actions or outcomes"),
        other => panic!("not a JSON list or pass document: {other}"),
    }
}
