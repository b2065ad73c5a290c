//! Issuance on Entra ID against the fake tenant: a federated identity
//! credential added for an approval and removed at its end, with the exact
//! Graph requests, idempotent repeats, a same-named credential nhi-assure
//! did not add refused (never overwritten, never removed), undo both ways.

use nhi_azure::testing::{ids, FakeTenant, Tenant, ARM, AUTHORITY, CLIENT_SECRET, GRAPH, TENANT};
use nhi_azure::{AzureAuth, AzureConfig, AzureRemediator};
use nhi_contract::{
    ActionRequest, CredentialKind, FederatedCredential, Operation, Provider, Remediator,
};
use serde_json::json;

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const SUBJECT: &str = "repo:contoso/payments:environment:prod";
const NAME: &str = "nhi-assure-jit-APR-7";

fn config(fake: &FakeTenant, env: &str) -> AzureConfig {
    std::env::set_var(env, CLIENT_SECRET);
    let mut c = AzureConfig::new(
        "azure",
        TENANT,
        AzureAuth::ClientSecret {
            client_id: nhi_azure::testing::CLIENT_ID.into(),
            secret_env: env.into(),
        },
    );
    c.authority_host = AUTHORITY.into();
    c.graph_url = GRAPH.into();
    c.arm_url = ARM.into();
    c.test_loopback = Some(fake.addr.to_string());
    c.initial_backoff_ms = 10;
    c.max_retries = 2;
    c
}

fn request(op: Operation, app: &str, subject: &str) -> ActionRequest {
    ActionRequest {
        operation: op,
        provider: Provider::Azure,
        identity_id: app.into(),
        credential_id: Some(NAME.into()),
        credential_kind: Some(CredentialKind::Federated),
        entitlements: vec![],
        federated: Some(FederatedCredential {
            approval: "APR-7".into(),
            issuer: ISSUER.into(),
            subject: subject.into(),
            description: "nhi-assure: approval APR-7 until 2026-12-03T00:00:00Z".into(),
        }),
    }
}

fn writes(fake: &FakeTenant) -> Vec<(String, String, Option<serde_json::Value>)> {
    fake.tenant()
        .writes()
        .into_iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.body.clone()))
        .collect()
}

fn names(fake: &FakeTenant, app: &str) -> Vec<String> {
    fake.tenant()
        .fics
        .get(app)
        .map(|l| {
            l.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_send_exactly_the_documented_requests_and_repeat_as_no_ops() {
    let fake = FakeTenant::start(Tenant::demo()).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_F1"));
    // Named by its application (client) id, as an approval names it.
    let add = request(
        Operation::AddFederatedCredential,
        ids::APPID_PAYMENTS,
        SUBJECT,
    );
    let out = rem.apply(&add).await.expect("added");
    assert_eq!(out.before["present"], false);
    assert_eq!(out.after["present"], true);
    assert_eq!(out.after["issuer"], ISSUER);
    let path = format!(
        "/v1.0/applications/{}/federatedIdentityCredentials",
        ids::APP_PAYMENTS
    );
    assert_eq!(
        writes(&fake),
        vec![(
            "POST".to_string(),
            path.clone(),
            Some(json!({
                "name": NAME, "issuer": ISSUER, "subject": SUBJECT,
                "audiences": ["api://AzureADTokenExchange"],
                "description": "nhi-assure: approval APR-7 until 2026-12-03T00:00:00Z",
            }))
        )]
    );
    assert_eq!(names(&fake, ids::APP_PAYMENTS), vec![NAME.to_string()]);
    // Again: nothing written.
    rem.apply(&add).await.expect("idempotent add");
    assert_eq!(writes(&fake).len(), 1);

    let remove = request(
        Operation::RemoveFederatedCredential,
        ids::APPID_PAYMENTS,
        SUBJECT,
    );
    let out = rem.apply(&remove).await.expect("removed");
    assert_eq!(
        (out.before["present"].clone(), out.after["present"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        writes(&fake)[1],
        ("DELETE".to_string(), format!("{path}/{NAME}"), None)
    );
    assert!(names(&fake, ids::APP_PAYMENTS).is_empty());
    // Again: absent, a no-op success.
    rem.apply(&remove).await.expect("idempotent remove");
    assert_eq!(writes(&fake).len(), 2);

    // Undo of the removal adds it back; undo of that add removes it.
    let again = rem
        .undo(&out.undo.expect("reversible"))
        .await
        .expect("undo");
    assert_eq!(names(&fake, ids::APP_PAYMENTS), vec![NAME.to_string()]);
    assert_eq!(again.after[0]["present"], true);
    let added = rem.apply(&add).await.expect("present");
    rem.undo(&added.undo.expect("reversible"))
        .await
        .expect("undo add");
    assert!(names(&fake, ids::APP_PAYMENTS).is_empty());
    // The deployer's own credential was never touched.
    assert_eq!(
        names(&fake, ids::APP_DEPLOYER),
        vec!["github-main".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_named_credential_nhi_assure_did_not_add_is_never_overwritten_nor_removed() {
    let mut t = Tenant::demo();
    t.fics
        .entry(ids::APP_PAYMENTS.to_string())
        .or_default()
        .push(json!({
            "id": "fc000000-0000-4000-8000-0000000000f9", "name": NAME,
            "issuer": ISSUER, "subject": "repo:contoso/other:ref:refs/heads/main",
            "description": null, "audiences": ["api://AzureADTokenExchange"],
        }));
    let fake = FakeTenant::start(t).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_F2"));
    let e = rem
        .apply(&request(
            Operation::AddFederatedCredential,
            ids::APP_PAYMENTS,
            SUBJECT,
        ))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("not overwritten"), "{e}");
    let e = rem
        .apply(&request(
            Operation::RemoveFederatedCredential,
            ids::APP_PAYMENTS,
            SUBJECT,
        ))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("not removed"), "{e}");
    // A credential trusting the same workload under another name: refused too.
    let e = rem
        .apply(&request(
            Operation::AddFederatedCredential,
            ids::APP_DEPLOYER,
            "repo:contoso/infra:ref:refs/heads/main",
        ))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("did not add"), "{e}");
    assert!(writes(&fake).is_empty(), "{:?}", writes(&fake));
    // nhi-assure's own application, and one the tenant does not hold.
    let mut own = Tenant::demo();
    if let Some(a) = own.apps.iter_mut().find(|a| a["id"] == ids::APP_PAYMENTS) {
        a["appId"] = json!(nhi_azure::testing::CLIENT_ID);
    }
    let fake = FakeTenant::start(own).await.expect("fake");
    let rem = AzureRemediator::new(&config(&fake, "NHI_AZ_F3"));
    let e = rem
        .apply(&request(
            Operation::AddFederatedCredential,
            ids::APP_PAYMENTS,
            SUBJECT,
        ))
        .await
        .expect_err("own app");
    assert!(e.to_string().contains("own application"), "{e}");
    let e = rem
        .apply(&request(
            Operation::AddFederatedCredential,
            "c9999999-0000-4000-8000-000000000000",
            SUBJECT,
        ))
        .await
        .expect_err("absent");
    assert!(e.to_string().contains("no application"), "{e}");
    assert!(writes(&fake).is_empty());
}
