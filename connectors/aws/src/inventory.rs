//! Reading an AWS account's IAM into the contract model.
//!
//! Calls, in order: GetAccountAuthorizationDetails (all pages: users,
//! groups, roles, managed policies with their default documents), the
//! credential report (console passwords, the root user, which users hold
//! keys and certificates, each key slot's last use),
//! ListServiceSpecificCredentials for all users at once, then per user —
//! concurrently, bounded — ListAccessKeys (only if the report shows keys),
//! ListSSHPublicKeys (not in the report) and ListSigningCertificates (only
//! if the report shows one). A key's last use comes from the report slot
//! created in the same second as the key, or from GetAccessKeyLastUsed when
//! no single slot is that key. Without a readable report every user gets
//! every listing, GetAccessKeyLastUsed per key and GetLoginProfile. The
//! optional per-type listings record a gap when refused; everything else
//! failing makes the source unknown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_iam::types::{EntityType, StatusType};
use aws_sdk_iam::Client;
use futures_util::stream::{self, StreamExt};
use nhi_contract::{
    Coverage, Credential, CredentialKind, Entitlement, Federation, FederationKind, Gap, Grant,
    Identity, IdentityKind, Inventory, InventorySource, Provider, SourceError, Timestamp, Trust,
    Unseen, Usage,
};

use crate::config::AwsConfig;
use crate::last_accessed;
use crate::org;
use crate::policy::{self, PolicyDocument};
use crate::sdk::{self, source_error, ts, CallStats};

/// The AWS [`InventorySource`].
pub struct AwsSource {
    config: AwsConfig,
    sdk: Option<SdkConfig>,
    calls: CallStats,
    /// The last organisation discovery, for targeted reads between scans.
    discovery: org::Cache,
}

/// An account's client and what was read through it.
type AccountResult = (Client, Result<(Inventory, AccountRead), SourceError>);

/// One account a scan reads.
struct Target {
    /// The role assumed to read it (none: the source's own credentials).
    role: Option<String>,
    /// The id prefix of its principals, when the account is known before
    /// it is read: a failure holds just them.
    subjects: Option<String>,
}

impl AwsSource {
    /// A source that loads credentials from the standard AWS chain.
    pub fn new(config: AwsConfig) -> AwsSource {
        AwsSource {
            config,
            sdk: None,
            calls: CallStats::default(),
            discovery: org::Cache::default(),
        }
    }

    /// A source over an already built SDK config (tests, embedding).
    pub fn with_sdk_config(config: AwsConfig, sdk: SdkConfig) -> AwsSource {
        AwsSource {
            config,
            sdk: Some(sdk),
            calls: CallStats::default(),
            discovery: org::Cache::default(),
        }
    }

    /// IAM calls made so far, by operation.
    pub fn calls(&self) -> &CallStats {
        &self.calls
    }

    /// The accounts that are ours: those read, those of the configured
    /// member roles (read or not: an account that failed this pass is
    /// still ours, never a third party) and those the config lists as
    /// trusted. A role trusting any other account trusts a third party.
    fn estate_accounts(&self, scanned: &BTreeSet<String>) -> BTreeSet<String> {
        let members = self
            .config
            .assume_roles
            .iter()
            .filter_map(|r| sdk::arn_account(r));
        scanned
            .iter()
            .map(String::as_str)
            .chain(members)
            .chain(self.config.trusted_accounts.iter().map(String::as_str))
            .map(str::to_string)
            .collect()
    }

    /// The accounts to read: the source's own, each of `assume_roles`, or
    /// the organisation's accounts in scope (discovered afresh each scan,
    /// and kept for targeted reads).
    async fn targets(
        &self,
        base: &SdkConfig,
    ) -> Result<(Vec<Target>, Option<Arc<org::Discovery>>), SourceError> {
        if let Some(o) = &self.config.organization {
            let d = Arc::new(org::discover(base, &self.config, o, &self.calls).await?);
            self.discovery.put(d.clone()).await;
            let targets = d
                .members
                .iter()
                .map(|m| Target {
                    role: Some(m.role.clone()),
                    subjects: Some(m.subjects()),
                })
                .collect();
            return Ok((targets, Some(d)));
        }
        if self.config.assume_roles.is_empty() {
            return Ok((
                vec![Target {
                    role: None,
                    subjects: None,
                }],
                None,
            ));
        }
        let targets = self
            .config
            .assume_roles
            .iter()
            .map(|r| Target {
                role: Some(r.clone()),
                subjects: sdk::arn_account(r)
                    .map(|a| format!("arn:{}:iam::{a}:", arn_partition(r))),
            })
            .collect();
        Ok((targets, None))
    }

    /// The role reading `account` for a targeted read: the configured one
    /// in that account, or the organisation's member role while the
    /// account is in scope. `Ok(None)`: the source's own credentials.
    async fn role_for(
        &self,
        base: &SdkConfig,
        account: &str,
    ) -> Result<Option<String>, SourceError> {
        if let Some(o) = &self.config.organization {
            let d = self
                .discovery
                .get(base, &self.config, o, &self.calls)
                .await?;
            return d
                .role_for(account)
                .map(|r| Some(r.to_string()))
                .ok_or_else(|| SourceError::Invalid {
                    location: self.config.name.clone(),
                    message: format!(
                        "account {account} is not among the organisation accounts in scope"
                    ),
                });
        }
        Ok(self
            .config
            .assume_roles
            .iter()
            .find(|r| sdk::arn_account(r) == Some(account))
            .cloned())
    }

    /// Read one account through `role` (none: the source's credentials).
    fn read_account<'a>(
        &'a self,
        base: &'a SdkConfig,
        role: Option<String>,
    ) -> futures_util::future::BoxFuture<'a, AccountResult> {
        Box::pin(async move {
            let client = sdk::client_for(base, &self.config, role.as_deref()).await;
            let scan = Scan {
                client: &client,
                cfg: &self.config,
                calls: &self.calls,
                refused: Default::default(),
            };
            let read = scan.account().await;
            (client, read)
        })
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
        let (targets, discovery) = self.targets(&base).await?;
        let mut out = Inventory::default();
        let mut failures: Vec<(Unseen, SourceError)> = Vec::new();
        if let Some(d) = &discovery {
            for (m, why) in &d.unknown {
                let what = Unseen::Account {
                    via_role: Some(m.role.clone()),
                    subjects: Some(m.subjects()),
                };
                tracing::error!(source = %self.config.name, %what, error = %why, "organisation account not placed");
                failures.push((what, SourceError::Unavailable(why.clone())));
            }
        }
        let mut principals: Vec<Evaluated> = Vec::new();
        let mut scanned: BTreeSet<String> = BTreeSet::new();
        // Accounts are read concurrently (each with its own bounded per-user
        // concurrency) and taken in order, so what follows is deterministic.
        let parallel = self
            .config
            .organization
            .as_ref()
            .map_or(1, |o| o.max_accounts_concurrency.max(1));
        let roles: Vec<Option<String>> = targets.iter().map(|t| t.role.clone()).collect();
        let reads: Vec<_> = stream::iter(roles)
            .map(|role| self.read_account(&base, role))
            .buffered(parallel)
            .collect()
            .await;
        let budget = last_accessed::Budget::new(self.config.last_accessed.max_calls);
        let mut read_ok = 0usize;
        for (t, (client, read)) in targets.iter().zip(reads) {
            match read {
                Ok((mut inv, read)) => {
                    read_ok += 1;
                    // One budget over the accounts, spent in their order.
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
                        via_role: t.role.clone(),
                        subjects: t.subjects.clone(),
                    };
                    tracing::error!(source = %self.config.name, %what, error = %e, "account scan failed");
                    failures.push((what, e));
                }
            }
        }
        // One account failing leaves the others known: the source is partial.
        // All failing is a failed source.
        if read_ok == 0 && !failures.is_empty() {
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
        let mut ours = self.estate_accounts(&scanned);
        if let Some(d) = &discovery {
            // Every account of the organisation is ours, read or not.
            ours.extend(d.accounts.iter().cloned());
        }
        out.credentials
            .extend(principal_trust_credentials(&principals, &ours));
        tracing::info!(source = %self.config.name, accounts = scanned.len(), calls = self.calls.total(), "aws scan done");
        Ok(out)
    }

    async fn refresh(
        &self,
        base: &Inventory,
        subjects: &[String],
    ) -> Result<Option<Inventory>, SourceError> {
        // In IAM only users carry credentials to re-read; a role's federated
        // credentials come from its trust policy, read by the full scan.
        let users: Vec<&nhi_contract::Identity> = base
            .identities
            .iter()
            .filter(|i| i.kind == IdentityKind::User && subjects.contains(&i.id))
            .collect();
        if users.is_empty() {
            return Ok(None);
        }
        let mut out = base.clone();
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
            // The account's client: the role reading that account, if any.
            let role = self.role_for(&sdk_base, &user.account).await?;
            let client = sdk::client_for(&sdk_base, &self.config, role.as_deref()).await;
            let scan = Scan {
                client: &client,
                cfg: &self.config,
                calls: &self.calls,
                refused: std::sync::Mutex::new(refused.clone()),
            };
            // A targeted read asks everything of the user: no report.
            let plan = UserPlan {
                tokens: true,
                ..UserPlan::default()
            };
            let fresh = scan
                .user_credentials(user.id.clone(), user.name.clone(), plan)
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
        Ok(Some(out))
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
    /// A service-linked role (path `/aws-service-role/`): AWS owns it.
    service_linked: bool,
    /// ARNs of the instance profiles holding the role (EC2 wears it).
    instance_profiles: Vec<String>,
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
    /// A user's access-key slots that hold a key; `None` when the row does
    /// not say clearly (missing column, unexpected value): then its keys
    /// are listed and each asked for its last use, as without a report.
    keys: Option<Vec<KeySlot>>,
    /// Whether the row shows a signing certificate; `None` when it does
    /// not say clearly (then they are listed).
    certs: Option<bool>,
}

/// One `access_key_N_*` slot of a user's report row that holds a key.
#[derive(Debug, Clone, PartialEq)]
struct KeySlot {
    /// `access_key_N_last_rotated`: when the slot's key was created.
    created: Timestamp,
    active: bool,
    /// Its last use when the row gives all of it (date, service, region,
    /// or "never"); `None` sends the key to GetAccessKeyLastUsed.
    usage: Option<Usage>,
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

/// A listed access key with its last use.
fn access_key(id: &str, k: &aws_sdk_iam::types::AccessKeyMetadata, usage: Usage) -> Credential {
    Credential {
        id: id.to_string(),
        identity: String::new(),
        kind: CredentialKind::AccessKey,
        created: k.create_date().and_then(ts),
        expires: None,
        usage,
        active: k.status().is_some_and(active),
        name: None,
        federation: None,
    }
}

/// A service-specific credential of `user` (the only AWS `token` kind).
fn service_credential(
    user: &str,
    c: &aws_sdk_iam::types::ServiceSpecificCredentialMetadata,
) -> Credential {
    Credential {
        id: c.service_specific_credential_id().to_string(),
        identity: user.to_string(),
        kind: CredentialKind::Token,
        created: ts(c.create_date()),
        expires: c.expiration_date().and_then(ts),
        usage: Usage::Unknown,
        active: active(c.status()),
        name: Some(format!("{} credential", c.service_name())),
        federation: None,
    }
}

/// Which per-user calls one user needs.
#[derive(Clone, Copy, Default)]
struct UserPlan<'r> {
    /// The user's credential-report row: what it shows is not asked again
    /// (no keys → no ListAccessKeys; a key's last use; no certificate → no
    /// ListSigningCertificates). `None`: every listing, as without a report.
    report: Option<&'r ReportRow>,
    /// List its service-specific credentials (not listed for every user at
    /// once).
    tokens: bool,
    /// Ask whether it has a console password (no credential report).
    console: bool,
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
        let mut users: Vec<(String, String)> = details
            .principals
            .iter()
            .filter(|p| p.kind == IdentityKind::User)
            .map(|p| (p.arn.clone(), p.name.clone()))
            .collect();
        let tokens = self.all_service_credentials(&users).await;
        let plan = |arn: &str| UserPlan {
            report: report.as_ref().and_then(|r| r.get(arn)),
            tokens: tokens.is_none(),
            console: report.is_none(),
        };
        // The first user alone probes which optional listings the endpoint
        // supports; the rest fan out. The probe is one that needs every
        // listing, if any user does, so a refused one is asked once.
        let needs = |arn: &str| {
            let p = plan(arn);
            (p.report.and_then(|r| r.certs) != Some(false)) as u8 + p.tokens as u8
        };
        if let Some(first) = (0..users.len()).max_by_key(|&i| (needs(&users[i].0), usize::MAX - i))
        {
            users.swap(0, first);
        }
        let mut users = users.into_iter();
        let mut per_user: Vec<UserResult> = Vec::with_capacity(users.len());
        if let Some((arn, name)) = users.next() {
            let p = plan(&arn);
            per_user.push(self.user_credentials(arn, name, p).await);
        }
        per_user.extend(
            stream::iter(users)
                .map(|(arn, name)| {
                    let p = plan(&arn);
                    self.user_credentials(arn, name, p)
                })
                .buffer_unordered(self.cfg.max_concurrency.max(1))
                .collect::<Vec<_>>()
                .await,
        );
        let mut tokens = tokens.unwrap_or_default();
        let mut creds_by_user: HashMap<String, Vec<Credential>> = HashMap::new();
        let mut console_fallback: HashMap<String, bool> = HashMap::new();
        for r in per_user {
            let mut uc = r?;
            if let Some(has) = uc.console_password {
                console_fallback.insert(uc.user.clone(), has);
            }
            uc.credentials
                .extend(tokens.remove(&uc.user).unwrap_or_default());
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
                    service_linked: false,
                    instance_profiles: Vec::new(),
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
                    service_linked: r
                        .path()
                        .is_some_and(|p| p.starts_with("/aws-service-role/")),
                    instance_profiles: r
                        .instance_profile_list()
                        .iter()
                        .map(|ip| ip.arn().to_string())
                        .collect(),
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

    /// Every user's service-specific credentials in one listing
    /// (`AllUsers`, all pages), by user ARN. `None`: list them per user —
    /// the endpoint refused `AllUsers` (a 4xx: the per-user calls may still
    /// be allowed; the first user probes them), or the kind is refused
    /// altogether (a gap, recorded here: any other failure, as per user).
    async fn all_service_credentials(
        &self,
        users: &[(String, String)],
    ) -> Option<HashMap<String, Vec<Credential>>> {
        // No user, no credential to list (and no gap for a call not needed).
        if users.is_empty() {
            return Some(HashMap::new());
        }
        let by_name: HashMap<&str, &str> = users
            .iter()
            .map(|(arn, name)| (name.as_str(), arn.as_str()))
            .collect();
        let mut out: HashMap<String, Vec<Credential>> = HashMap::new();
        let mut marker: Option<String> = None;
        // Bounded: a marker that never ends is an endpoint bug, not a reason
        // to loop for ever.
        for _ in 0..10_000 {
            self.calls.count("ListServiceSpecificCredentials");
            let page = match self
                .client
                .list_service_specific_credentials()
                .all_users(true)
                .set_marker(marker.take())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    let e = source_error("ListServiceSpecificCredentials", e);
                    if status.is_some_and(|s| (400..500).contains(&s)) {
                        tracing::info!(error = %e, "service-specific credentials of all users refused: listed per user");
                    } else {
                        self.refuse(CredentialKind::Token, e);
                    }
                    return None;
                }
            };
            for c in page.service_specific_credentials() {
                // Credentials of a user not in the details (created since)
                // belong to no identity read: left for the next pass.
                let Some(arn) = by_name.get(c.user_name()) else {
                    continue;
                };
                out.entry((*arn).to_string())
                    .or_default()
                    .push(service_credential(arn, c));
            }
            match page.marker() {
                Some(m) if page.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
                _ => return Some(out),
            }
        }
        self.refuse(
            CredentialKind::Token,
            SourceError::Unavailable(
                "ListServiceSpecificCredentials: pagination did not end".into(),
            ),
        );
        None
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
        plan: UserPlan<'_>,
    ) -> Result<UserCreds, SourceError> {
        let mut credentials = Vec::new();
        let mut console_password = None;
        let slots = plan.report.and_then(|r| r.keys.as_deref());
        // Access keys: exact per key id. A failure here is not a gap: keys
        // are what gets disabled, so not seeing them makes the source unknown.
        // A user the report shows without keys has none to list.
        let mut keys = Vec::new();
        if slots.is_none_or(|s| !s.is_empty()) {
            let mut pages = self
                .client
                .list_access_keys()
                .user_name(&user)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                self.calls.count("ListAccessKeys");
                let page = page.map_err(|e| source_error("ListAccessKeys", e))?;
                keys.extend(page.access_key_metadata().iter().cloned());
            }
        }
        let listed: Vec<(Option<i64>, bool)> = keys
            .iter()
            .map(|k| {
                (
                    k.create_date().map(|d| d.secs()),
                    k.status().is_some_and(active),
                )
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let Some(id) = k.access_key_id() else {
                continue;
            };
            if let Some(usage) = slots.and_then(|s| usage_from_report(s, &listed, i)) {
                credentials.push(access_key(id, k, usage));
                continue;
            }
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
            credentials.push(access_key(id, k, usage));
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
        let no_certs = plan.report.and_then(|r| r.certs) == Some(false);
        let certs = if no_certs || self.is_refused(CredentialKind::Certificate) {
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
        let tokens = if !plan.tokens || self.is_refused(CredentialKind::Token) {
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
            Some(Ok(out)) => credentials.extend(
                out.service_specific_credentials()
                    .iter()
                    .map(|c| service_credential(&arn, c)),
            ),
            // Service-specific credentials are the only AWS `token` kind.
            Some(Err(e)) => self.refuse(
                CredentialKind::Token,
                source_error("ListServiceSpecificCredentials", e),
            ),
        }
        if plan.console {
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
                .cloned()
                .or_else(|| service_linked_owner(p));
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
                // IAM reports a role's last use over a trailing 400 days
                // (`RoleLastUsed`): none recorded is no use within them.
                IdentityKind::Role => match &p.last_used {
                    Some((at, region)) => Usage::Used {
                        at: *at,
                        service: Some("sts".into()),
                        region: region.clone(),
                    },
                    None => Usage::Never,
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
                // A role whose trust admits nobody cannot be assumed; one
                // whose trust could not be read is taken as assumable.
                enabled: ev.trust.as_ref().is_none_or(policy::trust_admits_anyone),
                tags: p.tags.clone(),
                human_login,
                human_login_last_used: human_last,
                privilege: Some(privilege),
                privilege_reason,
                provider_managed: p.service_linked,
                attached_to: p.instance_profiles.clone(),
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
                    provider_managed: false,
                    attached_to: Vec::new(),
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
            federation: Some(Box::new(Federation {
                issuer: format!("https://{}", t.host),
                subjects: t.subjects,
                audiences: t.audiences,
                expression: None,
                ..Federation::default()
            })),
        })
        .collect()
}

/// A service-linked role's owner: AWS, for the service its path names
/// (`/aws-service-role/elasticbeanstalk.amazonaws.com/`).
fn service_linked_owner(p: &Principal) -> Option<String> {
    if !p.service_linked {
        return None;
    }
    let service = p
        .arn
        .split(":role/aws-service-role/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("an AWS service");
    Some(format!("AWS (service-linked role of {service})"))
}

/// Each role's trust to another account or to anyone as a federated
/// credential (`{role}#trust/{account}`, `{role}#trust/*`): whoever that
/// account lets call `sts:AssumeRole` — or anyone — becomes the role, with
/// no secret of the role's own. Each carries the condition keys the trust
/// requires and whether the account is outside `ours` (the estate's
/// accounts). Read, never remediated, like the OIDC trusts.
fn principal_trust_credentials(
    principals: &[Evaluated],
    ours: &BTreeSet<String>,
) -> Vec<Credential> {
    let mut out = Vec::new();
    for role in principals.iter().filter(|p| p.kind == IdentityKind::Role) {
        let Some(trust) = &role.trust else { continue };
        for t in policy::principal_trusts(trust, &role.account) {
            let (suffix, kind, issuer) = match &t.account {
                Some(a) => (
                    a.as_str(),
                    FederationKind::Account,
                    format!("arn:{}:iam::{a}:root", arn_partition(&role.arn)),
                ),
                None => ("*", FederationKind::Public, "*".to_string()),
            };
            out.push(Credential {
                id: format!("{}#trust/{suffix}", role.arn),
                identity: role.arn.clone(),
                kind: CredentialKind::Federated,
                created: None,
                expires: None,
                usage: Usage::Unknown,
                active: true,
                name: Some(t.principals.join(", ")),
                federation: Some(Box::new(Federation {
                    issuer,
                    subjects: t.principals,
                    audiences: Vec::new(),
                    expression: None,
                    kind,
                    outside_estate: t.account.as_ref().map(|a| !ours.contains(a)),
                    account: t.account,
                    conditions: t.required,
                })),
            });
        }
    }
    out
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
    let date = |v: Option<&str>| -> Option<Timestamp> { report_date(v?) };
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
            keys: None,
            certs: None,
        };
        if !arn.ends_with(":root") {
            row.keys = key_slots(get);
            row.certs = shows_certs(get);
        } else {
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

/// A report date (ISO 8601 with offset); anything else (`N/A`,
/// `no_information`, `not_supported`) is none.
fn report_date(v: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

/// `true` / `false` (the documentation writes them upper case, AWS and
/// moto lower case); anything else is none.
fn report_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A user row's access-key slots that hold a key (see [`ReportRow::keys`]).
fn key_slots<'r>(get: impl Fn(&str) -> Option<&'r str>) -> Option<Vec<KeySlot>> {
    // `N/A` is AWS's "not applicable"; a value the report cannot give
    // (moto writes `not_supported` for service and region) leaves the
    // last use to GetAccessKeyLastUsed.
    let field = |name: String| -> Option<Option<String>> {
        match get(&name)? {
            "N/A" => Some(None),
            "" | "not_supported" | "no_information" => None,
            v => Some(Some(v.to_string())),
        }
    };
    let mut out = Vec::new();
    for slot in ["access_key_1", "access_key_2"] {
        let active = report_bool(get(&format!("{slot}_active"))?)?;
        let created = match get(&format!("{slot}_last_rotated"))? {
            "N/A" if !active => continue,
            v => report_date(v)?,
        };
        let usage = match get(&format!("{slot}_last_used_date")) {
            Some("N/A") => Some(Usage::Never),
            Some(v) => report_date(v).and_then(|at| {
                Some(Usage::Used {
                    at,
                    service: field(format!("{slot}_last_used_service"))?,
                    region: field(format!("{slot}_last_used_region"))?,
                })
            }),
            None => None,
        };
        out.push(KeySlot {
            created,
            active,
            usage,
        });
    }
    Some(out)
}

/// Whether a user row shows a signing certificate (see [`ReportRow::certs`]).
fn shows_certs<'r>(get: impl Fn(&str) -> Option<&'r str>) -> Option<bool> {
    let mut shown = false;
    for slot in ["cert_1", "cert_2"] {
        let active = report_bool(get(&format!("{slot}_active"))?)?;
        shown |= active || get(&format!("{slot}_last_rotated"))? != "N/A";
    }
    Some(shown)
}

/// A listed key's last use as the report gives it, when exactly one slot is
/// that key: created in the same second (the report's precision), no other
/// listed key created in that second, the same status. Otherwise `None`,
/// and the key is asked of GetAccessKeyLastUsed: two keys created in the
/// same second cannot be told apart by the report, and a slot is never
/// guessed. `listed` is every listed key's (creation second, active).
fn usage_from_report(
    slots: &[KeySlot],
    listed: &[(Option<i64>, bool)],
    key: usize,
) -> Option<Usage> {
    let (created, active) = *listed.get(key)?;
    let created = created?;
    if listed.iter().filter(|(c, _)| *c == Some(created)).count() != 1 {
        return None;
    }
    let mut matching = slots.iter().filter(|s| s.created.timestamp() == created);
    let slot = matching.next()?;
    if matching.next().is_some() || slot.active != active {
        return None;
    }
    slot.usage.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estate_is_what_was_read_configured_or_trusted() {
        let mut cfg = AwsConfig::named("aws");
        cfg.assume_roles = vec!["arn:aws:iam::210987654321:role/nhi-scan".into()];
        cfg.trusted_accounts = vec!["444455556666".into()];
        let read: BTreeSet<String> = ["123456789012".to_string()].into();
        let ours = AwsSource::new(cfg).estate_accounts(&read);
        let want: BTreeSet<String> = ["123456789012", "210987654321", "444455556666"]
            .map(String::from)
            .into();
        assert_eq!(ours, want);
    }

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

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    fn row(line: &str) -> ReportRow {
        let csv = format!("{HEADER}\n{line}\n");
        let r = parse_report(csv.as_bytes()).expect("parses");
        r.into_values().next().expect("one row")
    }

    fn at(s: &str) -> Timestamp {
        report_date(s).expect("date")
    }

    #[test]
    fn report_user_rows_give_key_slots_and_certificates() {
        // AWS's shape: a used key with service and region, an inactive
        // never-used one, an inactive certificate with its date.
        let aws = row(
            "ci,arn:aws:iam::1:user/ci,2020-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,\
true,2021-01-01T00:00:00+00:00,2026-01-02T03:04:05+00:00,eu-west-1,s3,\
false,2022-01-01T00:00:00+00:00,N/A,N/A,N/A,false,2023-01-01T00:00:00+00:00,false,N/A",
        );
        assert_eq!(
            aws.keys,
            Some(vec![
                KeySlot {
                    created: at("2021-01-01T00:00:00+00:00"),
                    active: true,
                    usage: Some(Usage::Used {
                        at: at("2026-01-02T03:04:05+00:00"),
                        service: Some("s3".into()),
                        region: Some("eu-west-1".into()),
                    }),
                },
                KeySlot {
                    created: at("2022-01-01T00:00:00+00:00"),
                    active: false,
                    usage: Some(Usage::Never),
                },
            ])
        );
        assert_eq!(aws.certs, Some(true));
        // moto's shape: no service or region for a used key (asked of
        // GetAccessKeyLastUsed), an active certificate without a date.
        let moto = row("m,arn:aws:iam::1:user/m,2020-01-01T00:00:00+00:00,false,not_supported,2020-01-01T00:00:00+00:00,not_supported,false,\
true,2021-01-01T00:00:00+00:00,2026-01-02T03:04:05+00:00,not_supported,not_supported,\
false,N/A,N/A,not_supported,not_supported,true,N/A,false,N/A");
        let slots = moto.keys.expect("slots");
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].usage, None);
        assert_eq!(moto.certs, Some(true));
        // Nothing at all: no keys, no certificates.
        let none = row(
            "n,arn:aws:iam::1:user/n,2020-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,\
false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        );
        assert_eq!(none.keys, Some(vec![]));
        assert_eq!(none.certs, Some(false));
        // An active slot without a date, or a value the report does not
        // define: unknown, so everything is listed.
        let odd = row(
            "o,arn:aws:iam::1:user/o,2020-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,\
true,N/A,N/A,N/A,N/A,maybe,N/A,N/A,N/A,N/A,yes,N/A,false,N/A",
        );
        assert_eq!(odd.keys, None);
        assert_eq!(odd.certs, None);
        // Columns missing: unknown too.
        let r = parse_report(b"user,arn,password_enabled\nx,arn:aws:iam::1:user/x,false\n")
            .expect("parses");
        let x = &r["arn:aws:iam::1:user/x"];
        assert_eq!((x.keys.clone(), x.certs), (None, None));
    }

    #[test]
    fn a_key_takes_the_report_slot_created_in_its_second_and_never_a_guess() {
        let slot = |created: &str, active: bool, used: Option<&str>| KeySlot {
            created: at(created),
            active,
            usage: Some(match used {
                Some(u) => Usage::Used {
                    at: at(u),
                    service: Some("s3".into()),
                    region: None,
                },
                None => Usage::Never,
            }),
        };
        let t1 = at("2025-01-01T00:00:00+00:00").timestamp();
        let t2 = at("2025-06-01T00:00:00+00:00").timestamp();
        let slots = vec![
            slot(
                "2025-01-01T00:00:00+00:00",
                true,
                Some("2026-01-01T00:00:00+00:00"),
            ),
            slot("2025-06-01T00:00:00+00:00", true, None),
        ];
        // Listed in the other order than the slots: matched by date.
        let listed = [(Some(t2), true), (Some(t1), true)];
        assert_eq!(usage_from_report(&slots, &listed, 0), Some(Usage::Never));
        assert!(matches!(
            usage_from_report(&slots, &listed, 1),
            Some(Usage::Used { .. })
        ));
        // Status changed since the report: not the same slot for sure.
        let listed = [(Some(t1), false)];
        assert_eq!(usage_from_report(&slots, &listed, 0), None);
        // Created after the report: no slot.
        let listed = [(Some(t2 + 1), true)];
        assert_eq!(usage_from_report(&slots, &listed, 0), None);
        // Two keys created in the same second: the report cannot say which
        // slot is which, whichever the guess would be.
        let same = vec![
            slot(
                "2025-01-01T00:00:00+00:00",
                true,
                Some("2026-01-01T00:00:00+00:00"),
            ),
            slot("2025-01-01T00:00:00+00:00", true, None),
        ];
        let listed = [(Some(t1), true), (Some(t1), true)];
        assert_eq!(usage_from_report(&same, &listed, 0), None);
        assert_eq!(usage_from_report(&same, &listed, 1), None);
        // One listed key but two slots of its second (the other deleted
        // since): ambiguous as well.
        assert_eq!(usage_from_report(&same, &listed[..1], 0), None);
        // A slot whose last use the report does not give in full.
        let partial = vec![KeySlot {
            usage: None,
            ..slot("2025-01-01T00:00:00+00:00", true, None)
        }];
        assert_eq!(usage_from_report(&partial, &[(Some(t1), true)], 0), None);
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
