//! Reading an AWS account's IAM into the contract model.
//!
//! Calls, in order: GetAccountAuthorizationDetails (all pages: users,
//! groups, roles, managed policies with their default documents), the
//! credential report (console passwords, the root user), then per user —
//! concurrently, bounded — ListAccessKeys and GetAccessKeyLastUsed per key
//! (exact per key id), ListSSHPublicKeys, ListSigningCertificates and
//! ListServiceSpecificCredentials. The optional per-type listings record a
//! gap when refused; everything else failing makes the source unknown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_iam::types::{EntityType, StatusType};
use aws_sdk_iam::Client;
use futures_util::stream::{self, StreamExt};
use nhi_contract::{
    Coverage, Credential, CredentialKind, Entitlement, Federation, Gap, Grant, Identity,
    IdentityKind, Inventory, InventorySource, Provider, SourceError, Timestamp, Trust, Unseen,
    Usage,
};

use crate::config::AwsConfig;
use crate::last_accessed;
use crate::policy::{self, PolicyDocument};
use crate::sdk::{self, source_error, ts, CallStats};

/// The AWS [`InventorySource`].
pub struct AwsSource {
    config: AwsConfig,
    sdk: Option<SdkConfig>,
    calls: CallStats,
}

impl AwsSource {
    /// A source that loads credentials from the standard AWS chain.
    pub fn new(config: AwsConfig) -> AwsSource {
        AwsSource {
            config,
            sdk: None,
            calls: CallStats::default(),
        }
    }

    /// A source over an already built SDK config (tests, embedding).
    pub fn with_sdk_config(config: AwsConfig, sdk: SdkConfig) -> AwsSource {
        AwsSource {
            config,
            sdk: Some(sdk),
            calls: CallStats::default(),
        }
    }

    /// IAM calls made so far, by operation.
    pub fn calls(&self) -> &CallStats {
        &self.calls
    }

    async fn base(&self) -> SdkConfig {
        match &self.sdk {
            Some(s) => {
                // Keep the caller's credentials, apply our retry policy.
                s.to_builder()
                    .retry_config(sdk::retry(&self.config))
                    .build()
            }
            None => sdk::base_config(&self.config).await,
        }
    }
}

#[async_trait]
impl InventorySource for AwsSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn provider(&self) -> Provider {
        Provider::Aws
    }

    async fn scan(&self) -> Result<Inventory, SourceError> {
        let base = self.base().await;
        let roles: Vec<Option<&str>> = if self.config.assume_roles.is_empty() {
            vec![None]
        } else {
            self.config
                .assume_roles
                .iter()
                .map(|r| Some(r.as_str()))
                .collect()
        };
        let mut out = Inventory::default();
        let mut failures = Vec::new();
        let mut principals: Vec<Evaluated> = Vec::new();
        let mut scanned: BTreeSet<String> = BTreeSet::new();
        let budget = last_accessed::Budget::new(self.config.last_accessed.max_calls);
        for role in &roles {
            let client = sdk::client_for(&base, &self.config, *role).await;
            let scan = Scan {
                client: &client,
                cfg: &self.config,
                calls: &self.calls,
                refused: Default::default(),
            };
            match scan.account().await {
                Ok((mut inv, read)) => {
                    if self.config.last_accessed.enabled {
                        let cfg = &self.config;
                        let gap =
                            last_accessed::annotate(&client, cfg, &self.calls, &budget, &mut inv)
                                .await;
                        inv.coverage.gaps.extend(gap);
                    }
                    scanned.extend(read.accounts);
                    principals.extend(read.principals);
                    merge(&mut out, inv);
                }
                Err(e) => {
                    let what = Unseen::Account {
                        via_role: role.map(str::to_string),
                    };
                    tracing::error!(source = %self.config.name, %what, error = %e, "account scan failed");
                    failures.push((what, e));
                }
            }
        }
        // One account failing leaves the others known: the source is partial.
        // All failing is a failed source.
        if failures.len() == roles.len() {
            if let Some((_, e)) = failures.pop() {
                return Err(e);
            }
        }
        for (unseen, e) in failures {
            out.coverage.gaps.push(Gap {
                unseen,
                reason: e.to_string(),
            });
        }
        // Trust is decided over every account read, once all are: a
        // cross-account edge needs both sides.
        out.trusts.extend(trusts(&principals, &scanned));
        tracing::info!(source = %self.config.name, calls = self.calls.total(), "aws scan done");
        Ok(out)
    }

    async fn refresh(
        &self,
        base: &Inventory,
        subjects: &[String],
    ) -> Result<Inventory, SourceError> {
        // In IAM only users carry credentials to re-read; a role's federated
        // credentials come from its trust policy, read by the full scan.
        let users: Vec<&nhi_contract::Identity> = base
            .identities
            .iter()
            .filter(|i| i.kind == IdentityKind::User && subjects.contains(&i.id))
            .collect();
        let mut out = base.clone();
        if users.is_empty() {
            return Ok(out);
        }
        let sdk_base = self.base().await;
        // What the full scan could not read stays unread: no probe per call.
        let mut refused: Vec<(CredentialKind, String)> = Vec::new();
        for g in &base.coverage.gaps {
            if let Unseen::Credentials { kind } = g.unseen {
                let optional = [
                    CredentialKind::SshKey,
                    CredentialKind::Certificate,
                    CredentialKind::Token,
                ];
                if optional.contains(&kind) && !refused.iter().any(|(k, _)| *k == kind) {
                    refused.push((kind, g.reason.clone()));
                }
            }
        }
        for user in users {
            // The account's client: the configured role in that account, if any.
            let role = self
                .config
                .assume_roles
                .iter()
                .find(|r| r.split(':').nth(4) == Some(user.account.as_str()))
                .map(String::as_str);
            let client = sdk::client_for(&sdk_base, &self.config, role).await;
            let scan = Scan {
                client: &client,
                cfg: &self.config,
                calls: &self.calls,
                refused: std::sync::Mutex::new(refused.clone()),
            };
            let fresh = scan
                .user_credentials(user.id.clone(), user.name.clone(), false)
                .await?;
            let reread: Vec<CredentialKind> = [
                CredentialKind::AccessKey,
                CredentialKind::SshKey,
                CredentialKind::Certificate,
                CredentialKind::Token,
            ]
            .into_iter()
            .filter(|k| !scan.is_refused(*k))
            .collect();
            out.credentials
                .retain(|c| !(c.identity == user.id && reread.contains(&c.kind)));
            out.credentials.extend(fresh.credentials);
            // A listing refused now (and not in the full scan) leaves that
            // kind as of `base`: record the gap, so nothing acts on it.
            for gap in scan.refused_gaps() {
                if !out.coverage.gaps.iter().any(|g| g.unseen == gap.unseen) {
                    out.coverage.gaps.push(gap);
                }
            }
        }
        tracing::info!(source = %self.config.name, subjects = subjects.len(), calls = self.calls.total(), "aws targeted read done");
        Ok(out)
    }
}

fn merge(into: &mut Inventory, inv: Inventory) {
    into.identities.extend(inv.identities);
    into.credentials.extend(inv.credentials);
    for e in inv.entitlements {
        // AWS managed policies are the same in every account.
        if !into.entitlements.iter().any(|x| x.id == e.id) {
            into.entitlements.push(e);
        }
    }
    into.grants.extend(inv.grants);
    into.trusts.extend(inv.trusts);
    into.coverage.gaps.extend(inv.coverage.gaps);
}

struct Scan<'a> {
    client: &'a Client,
    cfg: &'a AwsConfig,
    calls: &'a CallStats,
    /// Optional credential listings the endpoint refused (kind, why).
    /// Once refused for one user, not asked again for the others: an
    /// unsupported call answered with 5xx would otherwise be retried for
    /// every user and slow the whole scan down through the adaptive limiter.
    refused: std::sync::Mutex<Vec<(CredentialKind, String)>>,
}

/// What the authorization details say about one principal.
struct Principal {
    arn: String,
    name: String,
    kind: IdentityKind,
    created: Option<Timestamp>,
    tags: BTreeMap<String, String>,
    managed: Vec<String>,
    inline: Vec<(String, String)>,
    groups: Vec<String>,
    trust: Option<String>,
    /// ARN of the permissions boundary policy, if one is set.
    boundary: Option<String>,
    last_used: Option<(Timestamp, Option<String>)>,
}

/// What one account's read hands to the evaluation that runs once every
/// account is read (cross-account trust needs both sides).
struct AccountRead {
    /// Accounts read (the one scanned).
    accounts: BTreeSet<String>,
    /// Its users and roles with their documents.
    principals: Vec<Evaluated>,
}

/// A principal with everything its effective permissions depend on.
struct Evaluated {
    arn: String,
    account: String,
    kind: IdentityKind,
    /// User name, for `${aws:username}`; None for roles.
    user_name: Option<String>,
    /// Every identity policy: inline, managed, and its groups' (shared).
    docs: Vec<Arc<PolicyDocument>>,
    boundary: Option<PolicyDocument>,
    /// Group ARNs.
    groups: Vec<String>,
    /// Managed policy ARNs held, directly or through groups.
    policies: Vec<String>,
    /// Admin-equivalent groups of its account.
    admin_groups: Vec<String>,
    /// Role trust policy.
    trust: Option<PolicyDocument>,
}

impl Evaluated {
    /// Its documents, borrowed, for [`Evaluated::permissions`].
    fn doc_refs(&self) -> Vec<&PolicyDocument> {
        self.docs.iter().map(Arc::as_ref).collect()
    }

    fn permissions<'a>(&'a self, docs: &'a [&'a PolicyDocument]) -> policy::Permissions<'a> {
        policy::Permissions {
            policies: docs,
            boundary: self.boundary.as_ref(),
            subject: policy::Subject {
                partition: arn_partition(&self.arn),
                account: &self.account,
                arn: Some(&self.arn),
                user_name: self.user_name.as_deref(),
                groups: &self.groups,
                policies: &self.policies,
                admin_groups: &self.admin_groups,
            },
        }
    }
}

/// A subject in the account of `arn` (any account for AWS managed policies).
fn in_account(arn: &str) -> policy::Subject<'_> {
    policy::Subject {
        partition: arn_partition(arn),
        account: sdk::arn_account(arn)
            .filter(|a| *a != "aws")
            .unwrap_or_default(),
        ..policy::Subject::default()
    }
}

/// `aws` in `arn:aws:iam::…`.
fn arn_partition(arn: &str) -> &str {
    arn.split(':').nth(1).unwrap_or("aws")
}

/// Who may assume which role, decided over every principal of every account
/// read. A principal of a read account gets an edge when the role's trust
/// policy admits it and, unless the trust names it in the role's own
/// account, its own effective permissions allow `sts:AssumeRole` on the role
/// (a trust to an account, or to its root, is followed to each principal of
/// that account this way). A principal of an account not read is recorded
/// as the trust policy names it (`arn:…:root` for an account id): it is not
/// an identity of the estate, so the edge is a record, not a proven path.
/// Taking over a principal of one's own account (a key or password of a
/// user, a role's trust policy, a role passed to code) is acting as it too:
/// an edge as well ([`policy::acts_as`]), from principals not already
/// admin-equivalent.
fn trusts(principals: &[Evaluated], scanned: &BTreeSet<String>) -> Vec<Trust> {
    let mut out: Vec<Trust> = Vec::new();
    let refs: Vec<Vec<&PolicyDocument>> = principals.iter().map(Evaluated::doc_refs).collect();
    let perms: Vec<policy::Permissions> = principals
        .iter()
        .zip(&refs)
        .map(|(p, r)| p.permissions(r))
        .collect();
    for (p, perms) in principals.iter().zip(&perms) {
        let (users, roles) = policy::could_act_as(perms);
        // An admin-equivalent principal can take over anyone: edges to every
        // principal would say nothing more and swamp the trust graph.
        if (!users && !roles) || policy::escalation(perms).is_some() {
            continue;
        }
        for x in principals {
            let is_user = x.kind == IdentityKind::User;
            if x.arn == p.arn || x.account != p.account || !(if is_user { users } else { roles }) {
                continue;
            }
            if let Some(how) = policy::acts_as(perms, &x.arn, is_user) {
                tracing::debug!(from = %p.arn, to = %x.arn, %how, "takeover edge");
                out.push(Trust {
                    from: p.arn.clone(),
                    to: x.arn.clone(),
                });
            }
        }
    }
    for role in principals.iter().filter(|p| p.kind == IdentityKind::Role) {
        let Some(trust) = &role.trust else { continue };
        for (p, perms) in principals.iter().zip(&perms) {
            if p.arn == role.arn || !policy::trust_admits(trust, &p.arn, &p.account) {
                continue;
            }
            let named_here = p.account == role.account
                && !policy::trust_is_account_wide(trust, &p.arn, &p.account);
            let exists = out.iter().any(|t| t.from == p.arn && t.to == role.arn);
            if !exists && (named_here || perms.allows("sts:AssumeRole", &role.arn)) {
                out.push(Trust {
                    from: p.arn.clone(),
                    to: role.arn.clone(),
                });
            }
        }
        for st in trust
            .statements
            .iter()
            .filter(|s| s.effect == policy::Effect::Allow)
        {
            for aws in st.principals.iter().flat_map(|p| p.aws.iter()) {
                let is_id = aws.len() == 12 && aws.bytes().all(|b| b.is_ascii_digit());
                let account = if is_id {
                    Some(aws.as_str())
                } else {
                    sdk::arn_account(aws)
                };
                let Some(account) = account.filter(|a| !scanned.contains(*a)) else {
                    continue;
                };
                let from = if is_id {
                    format!("arn:{}:iam::{account}:root", arn_partition(&role.arn))
                } else {
                    aws.clone()
                };
                if !out.iter().any(|t| t.from == from && t.to == role.arn) {
                    out.push(Trust {
                        from,
                        to: role.arn.clone(),
                    });
                }
            }
        }
    }
    out
}

struct Details {
    principals: Vec<Principal>,
    /// group name → (group ARN, managed ARNs, inline (name, doc))
    groups: HashMap<String, GroupPolicies>,
    /// managed policy ARN → (name, default version document)
    policies: HashMap<String, (String, String)>,
}

/// One row of the credential report.
#[derive(Debug, Default, Clone)]
struct ReportRow {
    arn: String,
    password_enabled: bool,
    password_last_used: Option<Timestamp>,
    root_keys: Vec<(String, Option<Timestamp>, Usage)>,
}

type UserResult = Result<UserCreds, SourceError>;

/// A group's ARN, managed policy ARNs and inline (name, document) policies.
type GroupPolicies = (String, Vec<String>, Vec<(String, String)>);

/// What the per-user calls returned.
struct UserCreds {
    /// The user's ARN: credentials are attributed by it, never by name (a
    /// role may share the name).
    user: String,
    credentials: Vec<Credential>,
    /// Whether the user has a console password, asked per user when the
    /// credential report could not be read.
    console_password: Option<bool>,
}

fn tags(list: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    list.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn inline(list: &[aws_sdk_iam::types::PolicyDetail]) -> Vec<(String, String)> {
    list.iter()
        .filter_map(|p| {
            Some((
                p.policy_name()?.to_string(),
                p.policy_document()?.to_string(),
            ))
        })
        .collect()
}

fn managed(list: &[aws_sdk_iam::types::AttachedPolicy]) -> Vec<String> {
    list.iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

fn active(s: &StatusType) -> bool {
    *s == StatusType::Active
}

impl Scan<'_> {
    async fn account(&self) -> Result<(Inventory, AccountRead), SourceError> {
        let details = self.details().await?;
        let mut gaps = Vec::new();
        let report = match self.credential_report().await {
            Ok(r) => Some(r),
            Err(e) => {
                gaps.push(Gap {
                    unseen: Unseen::CredentialReport,
                    reason: e.to_string(),
                });
                None
            }
        };
        let users: Vec<(String, String)> = details
            .principals
            .iter()
            .filter(|p| p.kind == IdentityKind::User)
            .map(|p| (p.arn.clone(), p.name.clone()))
            .collect();
        // The first user alone probes which optional listings the endpoint
        // supports; the rest fan out.
        let mut users = users.into_iter();
        let mut per_user: Vec<UserResult> = Vec::with_capacity(users.len());
        if let Some((arn, name)) = users.next() {
            per_user.push(self.user_credentials(arn, name, report.is_none()).await);
        }
        per_user.extend(
            stream::iter(users)
                .map(|(arn, name)| self.user_credentials(arn, name, report.is_none()))
                .buffer_unordered(self.cfg.max_concurrency.max(1))
                .collect::<Vec<_>>()
                .await,
        );
        let mut creds_by_user: HashMap<String, Vec<Credential>> = HashMap::new();
        let mut console_fallback: HashMap<String, bool> = HashMap::new();
        for r in per_user {
            let uc = r?;
            if let Some(has) = uc.console_password {
                console_fallback.insert(uc.user.clone(), has);
            }
            creds_by_user.insert(uc.user, uc.credentials);
        }
        gaps.extend(self.refused_gaps());
        let (mut inv, read) = self
            .assemble(details, report, creds_by_user, &console_fallback)
            .await?;
        inv.coverage = Coverage { gaps };
        Ok((inv, read))
    }

    /// GetAccountAuthorizationDetails, every page.
    async fn details(&self) -> Result<Details, SourceError> {
        let mut d = Details {
            principals: Vec::new(),
            groups: HashMap::new(),
            policies: HashMap::new(),
        };
        let mut pages = self
            .client
            .get_account_authorization_details()
            .filter(EntityType::User)
            .filter(EntityType::Role)
            .filter(EntityType::Group)
            .filter(EntityType::LocalManagedPolicy)
            .filter(EntityType::AwsManagedPolicy)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            self.calls.count("GetAccountAuthorizationDetails");
            let page = page.map_err(|e| source_error("GetAccountAuthorizationDetails", e))?;
            for u in page.user_detail_list() {
                let (Some(arn), Some(name)) = (u.arn(), u.user_name()) else {
                    continue;
                };
                d.principals.push(Principal {
                    arn: arn.to_string(),
                    name: name.to_string(),
                    kind: IdentityKind::User,
                    created: u.create_date().and_then(ts),
                    tags: tags(u.tags()),
                    managed: managed(u.attached_managed_policies()),
                    inline: inline(u.user_policy_list()),
                    groups: u.group_list().to_vec(),
                    trust: None,
                    boundary: u
                        .permissions_boundary()
                        .and_then(|b| b.permissions_boundary_arn())
                        .map(str::to_string),
                    last_used: None,
                });
            }
            for r in page.role_detail_list() {
                let (Some(arn), Some(name)) = (r.arn(), r.role_name()) else {
                    continue;
                };
                d.principals.push(Principal {
                    arn: arn.to_string(),
                    name: name.to_string(),
                    kind: IdentityKind::Role,
                    created: r.create_date().and_then(ts),
                    tags: tags(r.tags()),
                    managed: managed(r.attached_managed_policies()),
                    inline: inline(r.role_policy_list()),
                    groups: Vec::new(),
                    trust: r.assume_role_policy_document().map(str::to_string),
                    boundary: r
                        .permissions_boundary()
                        .and_then(|b| b.permissions_boundary_arn())
                        .map(str::to_string),
                    last_used: r.role_last_used().and_then(|l| {
                        Some((ts(l.last_used_date()?)?, l.region().map(str::to_string)))
                    }),
                });
            }
            for g in page.group_detail_list() {
                let (Some(arn), Some(name)) = (g.arn(), g.group_name()) else {
                    continue;
                };
                d.groups.insert(
                    name.to_string(),
                    (
                        arn.to_string(),
                        managed(g.attached_managed_policies()),
                        inline(g.group_policy_list()),
                    ),
                );
            }
            for p in page.policies() {
                let (Some(arn), Some(name)) = (p.arn(), p.policy_name()) else {
                    continue;
                };
                if let Some(doc) = p
                    .policy_version_list()
                    .iter()
                    .find(|v| v.is_default_version())
                    .and_then(|v| v.document())
                {
                    d.policies
                        .insert(arn.to_string(), (name.to_string(), doc.to_string()));
                }
            }
        }
        Ok(d)
    }

    /// Generate (poll until ready) and read the credential report.
    async fn credential_report(&self) -> Result<HashMap<String, ReportRow>, SourceError> {
        for _ in 0..20 {
            self.calls.count("GenerateCredentialReport");
            let state = self
                .client
                .generate_credential_report()
                .send()
                .await
                .map_err(|e| source_error("GenerateCredentialReport", e))?;
            if state.state().map(|s| s.as_str()) == Some("COMPLETE") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        self.calls.count("GetCredentialReport");
        let out = self
            .client
            .get_credential_report()
            .send()
            .await
            .map_err(|e| source_error("GetCredentialReport", e))?;
        let content = out
            .content()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        parse_report(&content)
    }

    fn is_refused(&self, kind: CredentialKind) -> bool {
        self.refused
            .lock()
            .map(|r| r.iter().any(|(k, _)| *k == kind))
            .unwrap_or(false)
    }

    fn refuse(&self, kind: CredentialKind, e: SourceError) {
        tracing::warn!(what = kind.as_str(), error = %e, "credential type not readable: recorded as a gap");
        if let Ok(mut r) = self.refused.lock() {
            if !r.iter().any(|(k, _)| *k == kind) {
                r.push((kind, e.to_string()));
            }
        }
    }

    /// A gap per refused listing, ordered by kind name as they were always
    /// reported.
    fn refused_gaps(&self) -> Vec<Gap> {
        let mut gaps: Vec<Gap> = self
            .refused
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(kind, reason)| Gap {
                        unseen: Unseen::Credentials { kind: *kind },
                        reason: reason.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        gaps.sort_by_key(|g| g.unseen.to_string());
        gaps
    }

    async fn user_credentials(
        &self,
        arn: String,
        user: String,
        need_console: bool,
    ) -> Result<UserCreds, SourceError> {
        let mut credentials = Vec::new();
        let mut console_password = None;
        // Access keys: exact per key id. A failure here is not a gap: keys
        // are what gets disabled, so not seeing them makes the source unknown.
        let mut pages = self
            .client
            .list_access_keys()
            .user_name(&user)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            self.calls.count("ListAccessKeys");
            let page = page.map_err(|e| source_error("ListAccessKeys", e))?;
            keys.extend(page.access_key_metadata().iter().cloned());
        }
        for k in keys {
            let Some(id) = k.access_key_id() else {
                continue;
            };
            self.calls.count("GetAccessKeyLastUsed");
            let used = self
                .client
                .get_access_key_last_used()
                .access_key_id(id)
                .send()
                .await
                .map_err(|e| source_error("GetAccessKeyLastUsed", e))?;
            let usage = match used.access_key_last_used() {
                Some(u) => match u.last_used_date().and_then(ts) {
                    Some(at) => Usage::Used {
                        at,
                        service: Some(u.service_name())
                            .filter(|s| *s != "N/A")
                            .map(str::to_string),
                        region: Some(u.region()).filter(|s| *s != "N/A").map(str::to_string),
                    },
                    None => Usage::Never,
                },
                None => Usage::Unknown,
            };
            credentials.push(Credential {
                id: id.to_string(),
                identity: String::new(),
                kind: CredentialKind::AccessKey,
                created: k.create_date().and_then(ts),
                expires: None,
                usage,
                active: k.status().is_some_and(active),
                name: None,
                federation: None,
            });
        }

        let ssh = if self.is_refused(CredentialKind::SshKey) {
            None
        } else {
            self.calls.count("ListSSHPublicKeys");
            Some(
                self.client
                    .list_ssh_public_keys()
                    .user_name(&user)
                    .send()
                    .await,
            )
        };
        match ssh {
            None => {}
            Some(Ok(out)) => credentials.extend(out.ssh_public_keys().iter().map(|k| Credential {
                id: k.ssh_public_key_id().to_string(),
                identity: String::new(),
                kind: CredentialKind::SshKey,
                created: ts(k.upload_date()),
                expires: None,
                usage: Usage::Unknown,
                active: active(k.status()),
                name: None,
                federation: None,
            })),
            Some(Err(e)) => {
                self.refuse(CredentialKind::SshKey, source_error("ListSSHPublicKeys", e))
            }
        }
        let certs = if self.is_refused(CredentialKind::Certificate) {
            None
        } else {
            self.calls.count("ListSigningCertificates");
            Some(
                self.client
                    .list_signing_certificates()
                    .user_name(&user)
                    .send()
                    .await,
            )
        };
        match certs {
            None => {}
            Some(Ok(out)) => credentials.extend(out.certificates().iter().map(|c| Credential {
                id: c.certificate_id().to_string(),
                identity: String::new(),
                kind: CredentialKind::Certificate,
                created: c.upload_date().and_then(ts),
                expires: None,
                usage: Usage::Unknown,
                active: active(c.status()),
                name: Some("signing certificate".into()),
                federation: None,
            })),
            Some(Err(e)) => self.refuse(
                CredentialKind::Certificate,
                source_error("ListSigningCertificates", e),
            ),
        }
        let tokens = if self.is_refused(CredentialKind::Token) {
            None
        } else {
            self.calls.count("ListServiceSpecificCredentials");
            Some(
                self.client
                    .list_service_specific_credentials()
                    .user_name(&user)
                    .send()
                    .await,
            )
        };
        match tokens {
            None => {}
            Some(Ok(out)) => credentials.extend(out.service_specific_credentials().iter().map(
                |c| Credential {
                    id: c.service_specific_credential_id().to_string(),
                    identity: String::new(),
                    kind: CredentialKind::Token,
                    created: ts(c.create_date()),
                    expires: c.expiration_date().and_then(ts),
                    usage: Usage::Unknown,
                    active: active(c.status()),
                    name: Some(format!("{} credential", c.service_name())),
                    federation: None,
                },
            )),
            // Service-specific credentials are the only AWS `token` kind.
            Some(Err(e)) => self.refuse(
                CredentialKind::Token,
                source_error("ListServiceSpecificCredentials", e),
            ),
        }
        if need_console {
            // Without the credential report, ask per user whether a console
            // password exists (passed back through a marker gap).
            self.calls.count("GetLoginProfile");
            let has = match self
                .client
                .get_login_profile()
                .user_name(&user)
                .send()
                .await
            {
                Ok(_) => true,
                Err(e) if sdk::is_not_found(&e) => false,
                Err(e) => return Err(source_error("GetLoginProfile", e)),
            };
            console_password = Some(has);
        }
        for c in &mut credentials {
            c.identity = arn.clone();
        }
        Ok(UserCreds {
            user: arn,
            credentials,
            console_password,
        })
    }

    /// Fetch a managed policy the details did not include (rare: AWS
    /// managed policies on some endpoints).
    async fn fetch_policy(&self, arn: &str) -> Result<(String, String), SourceError> {
        self.calls.count("GetPolicy");
        let p = self
            .client
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| source_error("GetPolicy", e))?;
        let p = p.policy();
        let name = p.and_then(|p| p.policy_name()).unwrap_or(arn).to_string();
        let version = p
            .and_then(|p| p.default_version_id())
            .unwrap_or("v1")
            .to_string();
        self.calls.count("GetPolicyVersion");
        let v = self
            .client
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| source_error("GetPolicyVersion", e))?;
        let doc = v
            .policy_version()
            .and_then(|v| v.document())
            .unwrap_or_default()
            .to_string();
        Ok((name, doc))
    }

    async fn assemble(
        &self,
        mut d: Details,
        report: Option<HashMap<String, ReportRow>>,
        mut creds: HashMap<String, Vec<Credential>>,
        console_fallback: &HashMap<String, bool>,
    ) -> Result<(Inventory, AccountRead), SourceError> {
        let mut inv = Inventory::default();
        // Every managed policy anyone holds, with its document.
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for p in &d.principals {
            wanted.extend(p.managed.iter().cloned());
        }
        for (_, m, _) in d.groups.values() {
            wanted.extend(m.iter().cloned());
        }
        // Boundaries are managed policies too, but grant nothing: read, not
        // entitlements.
        let boundaries: BTreeSet<String> = d
            .principals
            .iter()
            .filter_map(|p| p.boundary.clone())
            .collect();
        for arn in wanted.iter().chain(&boundaries) {
            if !d.policies.contains_key(arn) {
                let fetched = self.fetch_policy(arn).await?;
                d.policies.insert(arn.clone(), fetched);
            }
        }
        let parse = |id: &str, text: &str| -> Result<PolicyDocument, SourceError> {
            policy::parse(text).map_err(|e| SourceError::Invalid {
                location: id.to_string(),
                message: e.to_string(),
            })
        };
        let mut docs: HashMap<String, Arc<PolicyDocument>> = HashMap::new();
        // Each entitlement on its own, in the account it belongs to (AWS
        // managed policies: any account); inline policies know their holder.
        let mut add_entitlement = |inv: &mut Inventory,
                                   id: &str,
                                   name: &str,
                                   text: &str,
                                   subject: policy::Subject|
         -> Result<(), SourceError> {
            if docs.contains_key(id) {
                return Ok(());
            }
            let doc = parse(id, text)?;
            let a = policy::analyse_for(&policy::Permissions {
                policies: &[&doc],
                boundary: None,
                subject,
            });
            inv.entitlements.push(Entitlement {
                id: id.to_string(),
                name: name.to_string(),
                actions: a.actions,
                resources: a.resources,
                privilege: a.privilege,
            });
            docs.insert(id.to_string(), Arc::new(doc));
            Ok(())
        };
        for arn in &wanted {
            if let Some((name, text)) = d.policies.get(arn) {
                add_entitlement(&mut inv, arn, name, text, in_account(arn))?;
            }
        }
        for (group, (garn, _, inl)) in &d.groups {
            let groups = std::slice::from_ref(garn);
            for (n, text) in inl {
                let subject = policy::Subject {
                    groups,
                    ..in_account(garn)
                };
                add_entitlement(
                    &mut inv,
                    &format!("{garn}#inline/{n}"),
                    &format!("{group}/{n}"),
                    text,
                    subject,
                )?;
            }
        }
        for p in &d.principals {
            for (n, text) in &p.inline {
                let subject = policy::Subject {
                    arn: Some(&p.arn),
                    user_name: (p.kind == IdentityKind::User).then_some(p.name.as_str()),
                    ..in_account(&p.arn)
                };
                add_entitlement(&mut inv, &format!("{}#inline/{n}", p.arn), n, text, subject)?;
            }
        }

        // Groups whose policies make any member admin-equivalent: joining
        // one is an escalation.
        let mut admin_groups: Vec<String> = Vec::new();
        for (garn, managed, inl) in d.groups.values() {
            let group_docs: Vec<&PolicyDocument> = managed
                .iter()
                .cloned()
                .chain(inl.iter().map(|(n, _)| format!("{garn}#inline/{n}")))
                .filter_map(|id| docs.get(&id).map(Arc::as_ref))
                .collect();
            let perms = policy::Permissions {
                policies: &group_docs,
                boundary: None,
                subject: policy::Subject {
                    groups: std::slice::from_ref(garn),
                    ..in_account(garn)
                },
            };
            if policy::escalation(&perms).is_some() {
                admin_groups.push(garn.clone());
            }
        }
        admin_groups.sort();

        // Grants, and every principal's documents, boundary and trust for
        // the evaluation of the principal as a whole.
        let mut principals: Vec<Evaluated> = Vec::with_capacity(d.principals.len());
        for p in &d.principals {
            let mut held: Vec<String> = Vec::new();
            let mut grant = |ent: String, via: Option<String>| {
                held.push(ent.clone());
                inv.grants.push(Grant {
                    identity: p.arn.clone(),
                    entitlement: ent,
                    via,
                    eligible: false,
                    last_used: None,
                });
            };
            for m in &p.managed {
                grant(m.clone(), None);
            }
            for (n, _) in &p.inline {
                grant(format!("{}#inline/{n}", p.arn), Some("inline".into()));
            }
            let mut groups = Vec::new();
            for g in &p.groups {
                if let Some((garn, gm, gi)) = d.groups.get(g) {
                    groups.push(garn.clone());
                    for m in gm {
                        grant(m.clone(), Some(garn.clone()));
                    }
                    for (n, _) in gi {
                        grant(format!("{garn}#inline/{n}"), Some(garn.clone()));
                    }
                }
            }
            let boundary = match &p.boundary {
                Some(arn) => match d.policies.get(arn) {
                    Some((_, text)) => Some(parse(arn, text)?),
                    None => None,
                },
                None => None,
            };
            let trust = match &p.trust {
                Some(text) => match policy::parse(text) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(role = %p.arn, error = %e, "unreadable trust policy");
                        None
                    }
                },
                None => None,
            };
            let policies: Vec<String> = held.iter().filter(|e| !e.contains('#')).cloned().collect();
            principals.push(Evaluated {
                arn: p.arn.clone(),
                account: sdk::arn_account(&p.arn).unwrap_or_default().to_string(),
                kind: p.kind,
                user_name: (p.kind == IdentityKind::User).then(|| p.name.clone()),
                docs: held.iter().filter_map(|i| docs.get(i).cloned()).collect(),
                boundary,
                groups,
                policies,
                admin_groups: admin_groups.clone(),
                trust,
            });
        }

        // Identities and their credentials.
        for (p, ev) in d.principals.iter().zip(&principals) {
            let row = report.as_ref().and_then(|r| r.get(&p.arn));
            let owner = self
                .cfg
                .owner_tags
                .iter()
                .find_map(|k| p.tags.get(k))
                .cloned();
            // Only users hold credentials, and by ARN: a role named like a
            // user must never take the user's keys.
            let creds_of = match p.kind {
                IdentityKind::User => creds.remove(&p.arn).unwrap_or_default(),
                _ => Vec::new(),
            };
            let (human_login, human_last) = match p.kind {
                IdentityKind::User => match row {
                    Some(r) => (r.password_enabled, r.password_last_used),
                    None => (console_fallback.get(&p.arn).copied().unwrap_or(false), None),
                },
                _ => (false, None),
            };
            let usage = match p.kind {
                IdentityKind::Role => match &p.last_used {
                    Some((at, region)) => Usage::Used {
                        at: *at,
                        service: Some("sts".into()),
                        region: region.clone(),
                    },
                    None => Usage::Unknown,
                },
                _ => identity_usage(&creds_of, human_last, report.is_some()),
            };
            let (privilege, privilege_reason) = policy::assess(&ev.permissions(&ev.doc_refs()));
            inv.identities.push(Identity {
                provider: Provider::Aws,
                id: p.arn.clone(),
                kind: p.kind,
                name: p.name.clone(),
                account: sdk::arn_account(&p.arn).unwrap_or_default().to_string(),
                owner,
                created: p.created,
                usage,
                enabled: true,
                tags: p.tags.clone(),
                human_login,
                human_login_last_used: human_last,
                privilege: Some(privilege),
                privilege_reason,
            });
            inv.credentials.extend(creds_of);
            if let (IdentityKind::Role, Some(trust)) = (p.kind, &ev.trust) {
                inv.credentials
                    .extend(web_identity_credentials(&p.arn, trust));
            }
        }

        // The account root, from the credential report.
        if let Some(r) = report.as_ref() {
            for row in r.values().filter(|r| r.arn.ends_with(":root")) {
                let account = sdk::arn_account(&row.arn).unwrap_or_default().to_string();
                inv.identities.push(Identity {
                    provider: Provider::Aws,
                    id: row.arn.clone(),
                    kind: IdentityKind::Root,
                    name: "root".into(),
                    account: account.clone(),
                    owner: Some(format!("AWS account {account} owner")),
                    created: None,
                    usage: Usage::Unknown,
                    enabled: true,
                    tags: BTreeMap::new(),
                    human_login: false,
                    human_login_last_used: row.password_last_used,
                    // Root is its own kind (rules about root keys and
                    // logins); its privilege is not assessed from policies.
                    privilege: None,
                    privilege_reason: None,
                });
                // Root key ids are only visible to root itself; the report
                // gives slots, so the id names the slot (flag only).
                for (slot, created, usage) in &row.root_keys {
                    inv.credentials.push(Credential {
                        id: format!("{}:{slot}", row.arn),
                        identity: row.arn.clone(),
                        kind: CredentialKind::AccessKey,
                        created: *created,
                        expires: None,
                        usage: usage.clone(),
                        active: true,
                        name: Some(format!("root {slot}")),
                        federation: None,
                    });
                }
            }
        }
        let accounts = d
            .principals
            .iter()
            .map(|p| p.arn.as_str())
            .chain(report.iter().flat_map(|r| r.keys().map(String::as_str)))
            .filter_map(sdk::arn_account)
            .map(str::to_string)
            .collect();
        Ok((
            inv,
            AccountRead {
                accounts,
                principals,
            },
        ))
    }
}

/// A role's OIDC trusts as federated credentials, one per identity provider
/// (`{role}#oidc/{provider host}`): no secret exists, whoever the provider
/// signs a matching token for becomes the role. They are read, never
/// remediated: changing them is editing the trust policy.
fn web_identity_credentials(role: &str, trust: &PolicyDocument) -> Vec<Credential> {
    policy::web_identity_trusts(trust)
        .into_iter()
        .map(|t| Credential {
            id: format!("{role}#oidc/{}", t.host),
            identity: role.to_string(),
            kind: CredentialKind::Federated,
            created: None,
            expires: None,
            // IAM records the role's last use, not which trust it came by.
            usage: Usage::Unknown,
            active: true,
            name: Some(t.provider),
            federation: Some(Federation {
                issuer: format!("https://{}", t.host),
                subjects: t.subjects,
                audiences: t.audiences,
                expression: None,
            }),
        })
        .collect()
}

/// A user's last use: the latest of its keys' and console's, if any is
/// recorded; never if everything is known and unused; else unknown.
fn identity_usage(creds: &[Credential], console: Option<Timestamp>, console_known: bool) -> Usage {
    let mut best: Option<Usage> = console.map(|at| Usage::Used {
        at,
        service: Some("console".into()),
        region: None,
    });
    let mut all_known = console_known;
    for c in creds.iter().filter(|c| c.kind == CredentialKind::AccessKey) {
        match &c.usage {
            Usage::Used { at, .. } => {
                if best
                    .as_ref()
                    .and_then(Usage::last_used_at)
                    .is_none_or(|b| *at > b)
                {
                    best = Some(c.usage.clone());
                }
            }
            Usage::Unknown => all_known = false,
            Usage::Never => {}
        }
    }
    match best {
        Some(u) => u,
        None if all_known => Usage::Never,
        None => Usage::Unknown,
    }
}

/// Parse the credential report CSV (by header name, not position).
fn parse_report(content: &[u8]) -> Result<HashMap<String, ReportRow>, SourceError> {
    let bad = |m: String| SourceError::Invalid {
        location: "credential report".into(),
        message: m,
    };
    let mut r = csv::Reader::from_reader(content);
    let headers = r.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(arn_c), Some(pw_c)) = (col("arn"), col("password_enabled")) else {
        return Err(bad("missing arn / password_enabled columns".into()));
    };
    let date = |v: Option<&str>| -> Option<Timestamp> {
        let v = v?;
        chrono::DateTime::parse_from_rfc3339(v)
            .ok()
            .map(|d| d.with_timezone(&chrono::Utc))
    };
    let mut out = HashMap::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let get = |name: &str| col(name).and_then(|i| rec.get(i));
        let Some(arn) = rec.get(arn_c) else { continue };
        let mut row = ReportRow {
            arn: arn.to_string(),
            password_enabled: rec.get(pw_c) == Some("true"),
            password_last_used: date(get("password_last_used")),
            root_keys: Vec::new(),
        };
        if arn.ends_with(":root") {
            for slot in ["access_key_1", "access_key_2"] {
                if get(&format!("{slot}_active")) == Some("true") {
                    let used = date(get(&format!("{slot}_last_used_date")));
                    let usage = match used {
                        Some(at) => Usage::Used {
                            at,
                            service: get(&format!("{slot}_last_used_service"))
                                .filter(|s| *s != "N/A")
                                .map(str::to_string),
                            region: get(&format!("{slot}_last_used_region"))
                                .filter(|s| *s != "N/A")
                                .map(str::to_string),
                        },
                        None => Usage::Never,
                    };
                    row.root_keys.push((
                        slot.to_string(),
                        date(get(&format!("{slot}_last_rotated"))),
                        usage,
                    ));
                }
            }
        }
        out.insert(arn.to_string(), row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_rows_parse_by_header() {
        let csv = "user,arn,user_creation_time,password_enabled,password_last_used,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active\n\
<root_account>,arn:aws:iam::123456789012:root,2020-01-01T00:00:00+00:00,not_supported,2026-01-01T00:00:00+00:00,true,2021-01-01T00:00:00+00:00,N/A,N/A,N/A,false\n\
ci,arn:aws:iam::123456789012:user/ci,2020-01-01T00:00:00+00:00,true,no_information,false,N/A,N/A,N/A,N/A,false\n";
        let r = parse_report(csv.as_bytes()).expect("parses");
        let root = &r["arn:aws:iam::123456789012:root"];
        assert_eq!(root.root_keys.len(), 1);
        assert_eq!(root.root_keys[0].2, Usage::Never);
        let ci = &r["arn:aws:iam::123456789012:user/ci"];
        assert!(ci.password_enabled);
        assert_eq!(ci.password_last_used, None);
        assert!(ci.root_keys.is_empty());
    }

    #[test]
    fn identity_usage_distinguishes_never_from_unknown() {
        let mut k = Credential {
            id: "AKIA1".into(),
            identity: "u".into(),
            kind: CredentialKind::AccessKey,
            created: None,
            expires: None,
            usage: Usage::Never,
            active: true,
            name: None,
            federation: None,
        };
        assert_eq!(
            identity_usage(std::slice::from_ref(&k), None, true),
            Usage::Never
        );
        assert_eq!(
            identity_usage(std::slice::from_ref(&k), None, false),
            Usage::Unknown
        );
        k.usage = Usage::Unknown;
        assert_eq!(identity_usage(&[k], None, true), Usage::Unknown);
    }
}
