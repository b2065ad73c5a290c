//! The nhi-assure connector contract.
//!
//! This crate is the only thing a connector depends on. It defines the
//! provider-neutral inventory model every connector returns, the approval
//! record every approval source returns, and the three traits the engine
//! drives: [`InventorySource`], [`ApprovalSource`] and [`Remediator`].
//!
//! Invariants every implementation must keep:
//!
//! - **Secrets never leave the provider.** A [`Credential`] carries a stable
//!   id (an access key id, a key id) and metadata, never the secret value.
//! - **Unknown is not empty.** A source that cannot read something says so in
//!   [`Coverage`] (or returns an error); it never returns an empty list in
//!   place of what it could not see.
//!
//! The model is serde-serialisable; its JSON form is the snapshot format
//! documented in `connectors/snapshot/README.md`.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod connector;
pub mod pattern;
pub mod time;

pub use connector::{
    check_range, ApprovalConnector, SecretVariable, SettingProblem, SourceConnector,
};

/// Timestamps are always UTC.
pub type Timestamp = DateTime<Utc>;

/// The cloud or platform an identity lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Amazon Web Services.
    Aws,
    /// Microsoft Entra ID and Azure Resource Manager.
    Azure,
    /// Google Cloud.
    Gcp,
    /// GitHub (apps, machine users, deploy keys, tokens).
    Github,
    /// Kubernetes service accounts.
    Kubernetes,
}

impl Provider {
    /// The lowercase name used in JSON, rules and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Azure => "azure",
            Provider::Gcp => "gcp",
            Provider::Github => "github",
            Provider::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What sort of non-human identity this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A user object used by a machine (AWS IAM user, GitHub machine user).
    User,
    /// An assumable role (AWS IAM role).
    Role,
    /// An application registration (Entra ID app).
    Application,
    /// A service principal (Entra ID).
    ServicePrincipal,
    /// A managed identity (Azure), assigned to a resource.
    ManagedIdentity,
    /// A service account (GCP, Kubernetes).
    ServiceAccount,
    /// A GitHub App installation or OAuth app.
    App,
    /// The account root (AWS root user).
    Root,
    /// An AI agent's own identity (Entra Agent ID `agentIdentity`): acts
    /// autonomously, often before a reviewer catches up.
    Agent,
}

impl IdentityKind {
    /// The snake_case name used in JSON and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::User => "user",
            IdentityKind::Role => "role",
            IdentityKind::Application => "application",
            IdentityKind::ServicePrincipal => "service_principal",
            IdentityKind::ManagedIdentity => "managed_identity",
            IdentityKind::ServiceAccount => "service_account",
            IdentityKind::App => "app",
            IdentityKind::Root => "root",
            IdentityKind::Agent => "agent",
        }
    }
}

/// A non-human identity as a provider reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Which provider it lives in.
    pub provider: Provider,
    /// Stable provider id: an ARN, an object id, a node id. Approvals name this.
    pub id: String,
    /// What sort of identity it is.
    pub kind: IdentityKind,
    /// Display name.
    pub name: String,
    /// Account, tenant, project or organisation it belongs to.
    pub account: String,
    /// Accountable owner (team or person), if the provider records one.
    #[serde(default)]
    pub owner: Option<String>,
    /// When it was created, if known.
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    pub created: Option<Timestamp>,
    /// Last use of the identity itself (sign-in, role assumption).
    #[serde(default)]
    pub usage: Usage,
    /// Whether the provider lets it authenticate at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Provider tags or labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Whether a human can log in interactively with it (console password,
    /// interactive sign-in allowed).
    #[serde(default)]
    pub human_login: bool,
    /// Last interactive (human-style) login, if the provider records it.
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    pub human_login_last_used: Option<Timestamp>,
    /// Privilege of the identity as a whole, when the connector assesses it
    /// over everything the identity holds together (policies combined,
    /// explicit denies across them, a permissions boundary). It replaces the
    /// highest privilege of the entitlements held, which can over-report (a
    /// boundary limits them) or under-report (two policies that are
    /// harmless apart escalate together). None: not assessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privilege: Option<PrivilegeLevel>,
    /// Why `privilege` is what it is, e.g. the escalation method that makes
    /// the identity admin-equivalent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privilege_reason: Option<String>,
    /// Created and managed by the provider itself for one of its services
    /// (an AWS service-linked role, path `/aws-service-role/`): its
    /// permissions and trust are the provider's, so it is never remediated
    /// and its idleness is not the owner's to fix.
    #[serde(default, skip_serializing_if = "is_false")]
    pub provider_managed: bool,
    /// What compute wears it without holding a secret (the ARNs of the AWS
    /// instance profiles holding a role): a workload runs as it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached_to: Vec<String>,
}

fn yes() -> bool {
    true
}

/// What a provider knows about when something was last used.
///
/// "Unknown" and "never" are different facts: a tenant without sign-in
/// reports is unknown, and must never be treated as never used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum Usage {
    /// The provider could not tell.
    #[default]
    Unknown,
    /// The provider records no use at all.
    Never,
    /// Last recorded use.
    Used {
        /// When.
        #[serde(deserialize_with = "time::deserialize")]
        at: Timestamp,
        /// Which service it was used against (`s3`, `graph.microsoft.com`), if recorded.
        #[serde(default)]
        service: Option<String>,
        /// Which region, if recorded.
        #[serde(default)]
        region: Option<String>,
    },
}

impl Usage {
    /// The instant of last use, if any is recorded.
    pub fn last_used_at(&self) -> Option<Timestamp> {
        match self {
            Usage::Used { at, .. } => Some(*at),
            _ => None,
        }
    }
}

/// What sort of credential this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A long-term access key (AWS access key id).
    AccessKey,
    /// A client secret / password credential on an application.
    ClientSecret,
    /// An X.509 certificate or public key credential.
    Certificate,
    /// A bearer token (personal access token, service account token).
    Token,
    /// An SSH public key.
    SshKey,
    /// A federated credential (OIDC trust): no secret exists.
    Federated,
}

impl CredentialKind {
    /// The snake_case name used in JSON and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::AccessKey => "access_key",
            CredentialKind::ClientSecret => "client_secret",
            CredentialKind::Certificate => "certificate",
            CredentialKind::Token => "token",
            CredentialKind::SshKey => "ssh_key",
            CredentialKind::Federated => "federated",
        }
    }

    /// Whether possession of some secret material authenticates (everything
    /// but federation, which relies on an external issuer's token).
    pub fn is_secret_bearing(self) -> bool {
        !matches!(self, CredentialKind::Federated)
    }
}

/// A credential of an identity. Never holds the secret itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Stable id: the access key id, the key id of a secret or certificate.
    pub id: String,
    /// Stable id of the identity it authenticates as.
    pub identity: String,
    /// What sort of credential it is.
    pub kind: CredentialKind,
    /// When it was created, if known.
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    pub created: Option<Timestamp>,
    /// When it stops working, if it has an expiry.
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    pub expires: Option<Timestamp>,
    /// Last use, as precisely as the provider records it.
    #[serde(default)]
    pub usage: Usage,
    /// Whether it currently authenticates (an inactive AWS key is `false`).
    #[serde(default = "yes")]
    pub active: bool,
    /// Display name or description (never the secret).
    #[serde(default)]
    pub name: Option<String>,
    /// For a federated credential: which external tokens it accepts.
    /// Boxed: few credentials are federated, and inline it was nearly half
    /// of every credential's size (140 MiB of a million-credential estate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<Box<Federation>>,
}

/// The external tokens a federated credential (an Entra ID federated
/// identity credential, an AWS role trusting an OIDC provider) accepts.
/// No secret exists: whoever the issuer signs a matching token for *is*
/// the identity, so the breadth of `subjects` is the breadth of the trust.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// Token issuer (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// Subjects admitted, exact or with `*` wildcards
    /// (`repo:contoso/infra:ref:refs/heads/main`). Empty: the trust does not
    /// constrain the subject at all — any token the issuer signs is admitted.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Audiences admitted (empty: not constrained).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A claims-matching expression, verbatim, when the provider admits
    /// subjects by expression (Entra ID flexible federated credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// Who the trust admits: an OIDC issuer's tokens (the default), the
    /// principals of another account, or anyone.
    #[serde(default, skip_serializing_if = "FederationKind::is_oidc")]
    pub kind: FederationKind,
    /// For an account trust: the account trusted (`999988887777`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Condition keys every admitting statement requires a value of
    /// (`sts:ExternalId`, `aws:PrincipalOrgID`, `aws:SourceArn`), as
    /// written. A key only tested with `...IfExists`, a negated operator or
    /// a bare `*` is not required: the trust admits callers without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
    /// For an account trust: whether the account lies outside the estate
    /// (not scanned, not of the organisation, not listed as trusted by the
    /// source). None: the source did not judge it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_estate: Option<bool>,
}

/// Who a federated credential admits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FederationKind {
    /// Tokens an OIDC issuer signs (GitHub Actions, an EKS cluster, Entra
    /// ID federated identity credentials).
    #[default]
    Oidc,
    /// Principals of another account (an AWS role trusting
    /// `arn:aws:iam::999988887777:root` or a role there): whoever that
    /// account lets call `sts:AssumeRole` becomes the identity.
    Account,
    /// Anyone (`"Principal": "*"`, `{"AWS": "*"}`): every principal of
    /// every account, narrowed only by the trust's conditions.
    Public,
}

impl FederationKind {
    /// The snake_case name used in JSON and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            FederationKind::Oidc => "oidc",
            FederationKind::Account => "account",
            FederationKind::Public => "public",
        }
    }

    /// Whether it is the default, an OIDC trust (serde skips it).
    pub fn is_oidc(&self) -> bool {
        *self == FederationKind::Oidc
    }
}

/// How much an entitlement lets its holder do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PrivilegeLevel {
    /// Read-only.
    #[default]
    Read,
    /// Can change resources.
    Write,
    /// Administrator-equivalent: can grant itself anything.
    Admin,
}

impl PrivilegeLevel {
    /// The snake_case name used in JSON and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivilegeLevel::Read => "read",
            PrivilegeLevel::Write => "write",
            PrivilegeLevel::Admin => "admin",
        }
    }
}

/// A permission set an identity can hold: a policy, a role, an app role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entitlement {
    /// Stable id (policy ARN, role definition id, app role id).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Actions it allows (explicit denies already subtracted), with `*`
    /// wildcards, e.g. `s3:GetObject`, `iam:*`, `*`.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Resources the actions apply to, with `*` wildcards.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Privilege level as the connector assessed it.
    #[serde(default)]
    pub privilege: PrivilegeLevel,
}

/// Identity `identity` holds entitlement `entitlement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Stable id of the holder.
    pub identity: String,
    /// Id of the entitlement held.
    pub entitlement: String,
    /// How it is held when not directly (a group, an inline attachment).
    #[serde(default)]
    pub via: Option<String>,
    /// Held as *eligible* (Entra ID PIM): not active until the holder
    /// activates it, which it may do at any time within the schedule — so it
    /// counts for privilege, but removing it is a different call.
    #[serde(default, skip_serializing_if = "is_false")]
    pub eligible: bool,
    /// Latest use of what the entitlement allows by this holder (AWS: the
    /// latest service last-accessed time among the services its actions
    /// name). `None`: not read — unknown, never "unused". `Some(Never)`: no
    /// use of any of its services in the provider's tracking period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Usage>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Identity `from` may assume (act as) identity `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Stable id of the principal that may assume.
    pub from: String,
    /// Stable id of the identity it may become.
    pub to: String,
}

/// What an approval allows. Empty lists mean "nothing of that dimension",
/// except `services` and `regions`, where empty means "not restricted".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Approved actions, with `*` wildcards (`s3:GetObject`, `s3:List*`).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Entitlements approved by id, whatever they contain.
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// Identities it is approved to assume (role ARNs), with `*` wildcards.
    #[serde(default)]
    pub assume: Vec<String>,
    /// Services the credential may be used against; empty = any.
    #[serde(default)]
    pub services: Vec<String>,
    /// Regions the credential may be used in; empty = any.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// Details of an emergency (break-glass) approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emergency {
    /// Incident reference that justified it.
    pub incident: String,
    /// When the emergency was declared over, if it is.
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    pub ended_at: Option<Timestamp>,
}

/// A recorded approval for a non-human identity or some of its credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Unique id of the approval.
    pub id: String,
    /// Stable id of the identity approved.
    pub subject: String,
    /// Credentials it covers by id; empty = every credential of `subject`.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// What it allows.
    #[serde(default)]
    pub scope: Scope,
    /// Who asked.
    pub requester: String,
    /// Who approved.
    pub approver: String,
    /// Who carries out the task the approval is for (a ticket's assignee),
    /// if the record names one: an approver who is also the assignee
    /// approved their own work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// When it was approved.
    #[serde(deserialize_with = "time::deserialize")]
    pub approved_at: Timestamp,
    /// When it starts to apply; `approved_at` if absent.
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    pub starts_at: Option<Timestamp>,
    /// When it ends. Every approval ends.
    #[serde(deserialize_with = "time::deserialize")]
    pub expires_at: Timestamp,
    /// When it was revoked, if it was.
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    pub revoked_at: Option<Timestamp>,
    /// Ticket or document reference (`CHG-1234`, a PR URL).
    #[serde(default)]
    pub reference: Option<String>,
    /// Set when this is an emergency (break-glass) approval.
    #[serde(default)]
    pub emergency: Option<Emergency>,
    /// Where the record came from (`approvals/payments.yaml:12`, `jira:SEC-9`).
    #[serde(default)]
    pub source: String,
    /// Where a reader sees the record itself (the ticket's URL), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The role a just-in-time session is issued for under this approval
    /// (an AWS role ARN, an Azure application id); absent: the approval
    /// covers standing credentials only and nothing is issued under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The workload identity sessions are issued to (an OIDC issuer and
    /// subject); absent: only the CLI, on its operator's own credentials,
    /// can ask for a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_to: Option<Workload>,
}

/// A workload identity as an OIDC token names it: the approval is bound to
/// it, not to a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// The token issuer (`iss`), an https URL
    /// (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// The token subject (`sub`), compared exactly
    /// (`repo:org/app:environment:prod`).
    pub subject: String,
}

/// A time-boxed acceptance of one rule's risk on the subjects it names
/// (exceptions as code): findings it covers are still evaluated and
/// recorded, shown as excepted, and never acted on. It never stands in for
/// an approval: an exception to `credential-unapproved` or
/// `approval-expired` is refused when it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// Unique id of the exception.
    pub id: String,
    /// Id of the rule whose findings it covers.
    pub rule: String,
    /// Identity ids it covers, a pattern (`*` any run of characters,
    /// ASCII case ignored), like protected ids.
    pub subject: String,
    /// Credential ids it covers within those identities, a pattern; absent:
    /// every credential (and the identity's own findings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Why the risk is accepted.
    pub reason: String,
    /// Who asked.
    pub requester: String,
    /// Who accepted the risk (never the requester).
    pub approver: String,
    /// When it was accepted; it applies from then.
    #[serde(deserialize_with = "time::deserialize")]
    pub approved_at: Timestamp,
    /// When it ends: every exception ends.
    #[serde(deserialize_with = "time::deserialize")]
    pub expires_at: Timestamp,
    /// Ticket or document reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Where it was read (`exceptions/vendor.yaml:4:5`).
    #[serde(default)]
    pub source: String,
}

impl Exception {
    /// Whether it applies at `now`: from its acceptance until its end.
    pub fn applies_at(&self, now: Timestamp) -> bool {
        self.approved_at <= now && now < self.expires_at
    }
}

/// A record an approval source found but could not turn into an
/// [`Approval`] (a ticket whose mapped field is missing or malformed). It
/// never causes a revocation: the subjects it may cover are held for the
/// pass, and the run reports it by reference and field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unmapped {
    /// The record's key (`SEC-12`, `RITM0010001`).
    pub reference: String,
    /// Where a reader sees it, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Subjects it names, as far as they could be read. Empty: unknown —
    /// it may cover anyone, so every subject is held.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// What is wrong, naming the field (`customfield_10042: not a date`).
    pub problem: String,
}

/// Everything one approval source read: the approvals, and the records it
/// could not map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApprovalRead {
    /// Approvals read.
    pub approvals: Vec<Approval>,
    /// Records found but not mapped.
    pub unmapped: Vec<Unmapped>,
}

impl Approval {
    /// Start of validity.
    pub fn starts(&self) -> Timestamp {
        self.starts_at.unwrap_or(self.approved_at)
    }

    /// End of validity: the earliest of its expiry, its revocation and the
    /// end of its emergency.
    pub fn ends(&self) -> Timestamp {
        [
            self.revoked_at,
            self.emergency.as_ref().and_then(|e| e.ended_at),
        ]
        .into_iter()
        .flatten()
        .fold(self.expires_at, Timestamp::min)
    }

    /// How access under this approval can be served without a standing
    /// secret, if it says enough: a session on the AWS role it names, or a
    /// federated credential on the Azure application it names for the
    /// workload it is issued to (an application alone names no workload to
    /// federate, so it serves nothing).
    pub fn issuance(&self) -> Option<Issuance> {
        let role = self.role.as_deref()?.trim();
        if role.starts_with("arn:") {
            Some(Issuance::Session)
        } else if !role.is_empty() && self.issue_to.is_some() {
            Some(Issuance::Federation)
        } else {
            None
        }
    }
}

/// How an approval serves access without a standing secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Issuance {
    /// Short-lived STS sessions on an AWS role, scoped to the approval.
    Session,
    /// A federated identity credential on an Azure application for the
    /// approval's workload, for the approval's window.
    Federation,
}

impl Issuance {
    /// The snake_case name used in facts, JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Issuance::Session => "session",
            Issuance::Federation => "federation",
        }
    }
}

/// What a source could and could not see in one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// Things the source could not read this run (a credential type the
    /// provider refused, an account it could not reach). Subjects touched
    /// by a gap are never remediated on the strength of this scan.
    #[serde(default)]
    pub gaps: Vec<Gap>,
}

/// One thing a source could not see, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    /// What was not read.
    pub unseen: Unseen,
    /// Why, in the provider's words.
    pub reason: String,
}

impl Gap {
    /// What the engine cannot judge because of this gap.
    pub fn blinds(&self) -> Vec<Blinds> {
        self.unseen.blinds()
    }
}

/// `what: reason`, as warnings and the run's source states print it.
impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.unseen, self.reason)
    }
}

/// What a source could not read. Each variant says by [`Unseen::blinds`]
/// what the engine may no longer judge, so the engine never reads meaning
/// out of names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Unseen {
    /// Credentials of one kind: their listing was refused or failed (for
    /// every identity, or for some, such as one application's federated
    /// credentials).
    Credentials {
        /// The kind not listed.
        kind: CredentialKind,
    },
    /// Last use (sign-in or activity reports): usage is unknown, never
    /// "never".
    Usage,
    /// The AWS credential report (console passwords, last use of keys and
    /// passwords).
    CredentialReport,
    /// A whole account of a multi-account source.
    Account {
        /// The role assumed to reach it; none for the account of the
        /// source's own credentials.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via_role: Option<String>,
        /// The id prefix every subject of that account starts with
        /// (`arn:aws:iam::210987654321:`), when the source knows it: those
        /// subjects are held — nothing of them acted on or resolved — and
        /// the rest of the source is judged. Without it the whole source is
        /// held.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subjects: Option<String>,
    },
    /// The directory roles the tenant's identities hold (Entra ID).
    DirectoryRoles,
    /// One Azure subscription's role assignments.
    Subscription {
        /// The subscription id.
        id: String,
    },
    /// Group memberships: roles and permissions held through groups.
    GroupMemberships,
    /// Eligible (PIM) role assignments, directory or RBAC.
    EligibleAssignments,
    /// Identities of one kind (a listing refused or failed, such as Entra
    /// agent identities on a tenant without the beta endpoint).
    Identities {
        /// The kind not listed.
        kind: IdentityKind,
    },
    /// The last use of entitlements (AWS service last-accessed data) of
    /// some principals in scope: a call budget spent, a job refused or
    /// failed. Their grants carry no last use.
    EntitlementUsage,
}

impl Unseen {
    /// What the engine cannot judge while this is unseen: findings and
    /// actions that depend on none of it still proceed.
    pub fn blinds(&self) -> Vec<Blinds> {
        match self {
            Unseen::Credentials { kind } => vec![Blinds::CredentialKind(*kind)],
            Unseen::Identities { kind } => vec![Blinds::IdentityKind(*kind)],
            Unseen::Usage => vec![Blinds::Usage],
            // Console passwords and the last use of keys and passwords.
            Unseen::CredentialReport => vec![Blinds::Usage, Blinds::HumanLogin],
            // Roles and permissions: who holds what is incomplete.
            Unseen::DirectoryRoles
            | Unseen::Subscription { .. }
            | Unseen::GroupMemberships
            | Unseen::EligibleAssignments => vec![Blinds::Privilege],
            // Identities themselves are missing: a known account's subjects
            // are held by their id prefix, and who holds what elsewhere may
            // run through trust into the unread account; an unknown account
            // could hold anything of the source.
            Unseen::Account {
                subjects: Some(_), ..
            } => vec![Blinds::Privilege],
            Unseen::Account { subjects: None, .. } => vec![Blinds::WholeSource],
            Unseen::EntitlementUsage => vec![Blinds::EntitlementUsage],
        }
    }
}

/// The short name warnings print (`ssh_key`, `usage`, `subscription <id>`).
impl fmt::Display for Unseen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unseen::Credentials { kind } => f.write_str(kind.as_str()),
            Unseen::Usage => f.write_str("usage"),
            Unseen::CredentialReport => f.write_str("credential_report"),
            Unseen::Account {
                via_role: None,
                subjects: None,
            } => f.write_str("account"),
            Unseen::Account {
                via_role: Some(role),
                subjects: None,
            } => write!(f, "account via {role}"),
            Unseen::Account {
                via_role,
                subjects: Some(prefix),
            } => {
                // The account id, as the prefix names it (`arn:aws:iam::ID:`).
                let id = prefix.split(':').nth(4).filter(|a| !a.is_empty());
                f.write_str("account")?;
                if let Some(id) = id {
                    write!(f, " {id}")?;
                }
                match via_role {
                    Some(role) => write!(f, " via {role}"),
                    None => Ok(()),
                }
            }
            Unseen::DirectoryRoles => f.write_str("directory roles"),
            Unseen::Subscription { id } => write!(f, "subscription {id}"),
            Unseen::GroupMemberships => f.write_str("group memberships"),
            Unseen::EligibleAssignments => f.write_str("eligible assignments"),
            Unseen::Identities { kind } => write!(f, "{} identities", kind.as_str()),
            Unseen::EntitlementUsage => f.write_str("entitlement usage"),
        }
    }
}

/// What a gap leaves the engine unable to judge: findings and actions that
/// depend on it are held (never acted on, never resolved) for the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "kind", rename_all = "snake_case")]
pub enum Blinds {
    /// Credentials of this kind only: the source's identities and its other
    /// credentials are seen.
    CredentialKind(CredentialKind),
    /// Identities of this kind (and their credentials) only.
    IdentityKind(IdentityKind),
    /// Last use: facts derived from usage (stale, never used, used outside
    /// scope) are unknown; existence, expiry and approvals are seen.
    Usage,
    /// Who holds which entitlement: privilege and scope facts are
    /// incomplete; credentials and approvals are seen.
    Privilege,
    /// Interactive (human) logins.
    HumanLogin,
    /// Anything the source holds may depend on it.
    WholeSource,
    /// The last use of held entitlements (which of them go unused):
    /// credentials, identities and who holds what are seen.
    EntitlementUsage,
}

/// Everything one inventory source saw in one scan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Identities.
    #[serde(default)]
    pub identities: Vec<Identity>,
    /// Credentials, each naming its identity.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Entitlement definitions.
    #[serde(default)]
    pub entitlements: Vec<Entitlement>,
    /// Who holds which entitlement.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Who may assume whom.
    #[serde(default)]
    pub trusts: Vec<Trust>,
    /// Approvals the provider itself carries, if any.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// What the scan could not see.
    #[serde(default)]
    pub coverage: Coverage,
}

/// Why a source failed to scan. The engine treats the source as unknown.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Input (a file, a response) was malformed.
    #[error("{location}: {message}")]
    Invalid {
        /// `file:line` or a request description.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// Credentials were refused.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The provider could not be reached or kept failing after retries.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// Local I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A connector that reads identities and credentials from one provider.
#[async_trait]
pub trait InventorySource: Send + Sync {
    /// The configured source name (unique in a config).
    fn name(&self) -> &str;
    /// The provider it reads.
    fn provider(&self) -> Provider;
    /// Read the inventory. An `Err` makes the whole source unknown for the run.
    async fn scan(&self) -> Result<Inventory, SourceError>;

    /// A targeted read: `base` (this source's last full scan) with the
    /// credentials of the identities in `subjects` read again. The daemon
    /// uses it to act on one subject seconds after its approval ends without
    /// re-reading the whole estate. What is not re-read is as of `base`, so
    /// callers act only on `subjects`.
    ///
    /// `Ok(None)` says `base` stands as the source's state for `subjects`
    /// (nothing to re-read, or nothing changed): the caller keeps it without
    /// a copy, which matters when `base` holds a million credentials. The
    /// default re-reads everything.
    async fn refresh(
        &self,
        base: &Inventory,
        subjects: &[String],
    ) -> Result<Option<Inventory>, SourceError> {
        let _ = (base, subjects);
        self.scan().await.map(Some)
    }
}

/// A source of approval records (files, tickets, webhooks).
#[async_trait]
pub trait ApprovalSource: Send + Sync {
    /// The configured source name.
    fn name(&self) -> &str;
    /// Read every approval. Invalid records fail the whole read: a partly
    /// read approval set could make valid credentials look unapproved.
    async fn approvals(&self) -> Result<Vec<Approval>, SourceError>;

    /// Read every approval, and the records found but not mapped (a
    /// ticket source reports an unmappable ticket here rather than failing
    /// every approval it read). The default maps nothing: it is
    /// [`ApprovalSource::approvals`].
    async fn read(&self) -> Result<ApprovalRead, SourceError> {
        Ok(ApprovalRead {
            approvals: self.approvals().await?,
            unmapped: Vec::new(),
        })
    }

    /// [`ApprovalSource::read`] again, or `Ok(None)` when this source can
    /// tell that a read would return exactly what its last successful read
    /// returned (the caller keeps that: a daemon's targeted pass does not
    /// copy 270,000 unchanged approvals). The default always reads.
    async fn reread(&self) -> Result<Option<ApprovalRead>, SourceError> {
        self.read().await.map(Some)
    }

    /// Drop what this source keeps to make its next read cheaper: a
    /// one-shot command reads once, and what a source keeps of a large
    /// approval set is a copy of it. The default keeps nothing.
    fn release(&self) {}

    /// [`ApprovalSource::read`] for a one-shot command: nothing is kept
    /// for a next read, not even for the while of this one (a copy of
    /// 270,000 approvals made only to be released costs a second). The
    /// default reads, then releases.
    async fn read_once(&self) -> Result<ApprovalRead, SourceError> {
        let read = self.read().await;
        self.release();
        read
    }
}

/// What a remediation does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Make a credential stop working, reversibly (deactivate a key).
    DisableCredential,
    /// Delete a credential (irreversible for secrets).
    DeleteCredential,
    /// Disable an identity (service principal `accountEnabled=false`).
    DisableIdentity,
    /// Remove interactive login (delete a console password).
    RemoveLogin,
    /// Detach entitlements beyond the approved scope.
    DetachEntitlements,
    /// Stop the sessions issued under an approval that ended early: an
    /// inline policy on the role (named in `entitlements`) denying every
    /// action to sessions carrying the approval's source identity.
    DenySessions,
    /// Remove that deny once every session it stops has expired anyway.
    LiftSessionDeny,
    /// Trust a workload for an approval's window: a federated identity
    /// credential (named in `credential_id`, issuer and subject in
    /// `federated`) on the application `identity_id`. No secret exists.
    AddFederatedCredential,
    /// Remove that federated identity credential at the approval's end.
    RemoveFederatedCredential,
}

impl Operation {
    /// The snake_case name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::DisableCredential => "disable_credential",
            Operation::DeleteCredential => "delete_credential",
            Operation::DisableIdentity => "disable_identity",
            Operation::RemoveLogin => "remove_login",
            Operation::DetachEntitlements => "detach_entitlements",
            Operation::DenySessions => "deny_sessions",
            Operation::LiftSessionDeny => "lift_session_deny",
            Operation::AddFederatedCredential => "add_federated_credential",
            Operation::RemoveFederatedCredential => "remove_federated_credential",
        }
    }
}

/// One remediation to carry out on one provider object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// What to do.
    pub operation: Operation,
    /// Provider of the target.
    pub provider: Provider,
    /// Identity the target belongs to.
    pub identity_id: String,
    /// Credential targeted, for credential operations.
    pub credential_id: Option<String>,
    /// Kind of the credential targeted (an id alone does not say which API
    /// manages it).
    #[serde(default)]
    pub credential_kind: Option<CredentialKind>,
    /// Entitlements targeted, for `DetachEntitlements`.
    #[serde(default)]
    pub entitlements: Vec<String>,
    /// The workload trusted, for `AddFederatedCredential` and
    /// `RemoveFederatedCredential` (public identifiers, never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<FederatedCredential>,
}

/// A federated identity credential issued for an approval: which token
/// (issuer and subject, compared exactly) the application trusts, and the
/// description written on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedCredential {
    /// The approval it is issued for.
    pub approval: String,
    /// The token issuer (`iss`).
    pub issuer: String,
    /// The token subject (`sub`).
    pub subject: String,
    /// What the credential says it is for (the approval and its end).
    pub description: String,
}

/// What a remediator did and how to reverse it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// Provider state before the call, as read back (ids and metadata only).
    pub before: serde_json::Value,
    /// Provider state after the call, as read back.
    pub after: serde_json::Value,
    /// Opaque data the same remediator needs to undo; `None` if it cannot be undone.
    pub undo: Option<serde_json::Value>,
    /// Plain statement of what cannot be restored, if anything.
    pub irreversible: Option<String>,
    /// Where and as whom it acted (account or tenant, and the role or
    /// credentials used), for the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// Carries out remediations for one provider. Every call must read back the
/// provider state to verify it, and must be idempotent.
#[async_trait]
pub trait Remediator: Send + Sync {
    /// The provider it acts on.
    fn provider(&self) -> Provider;
    /// Carry out one action.
    async fn apply(&self, action: &ActionRequest) -> Result<ActionOutcome, SourceError>;
    /// Reverse an action from the undo data its `apply` returned.
    async fn undo(&self, undo: &serde_json::Value) -> Result<ActionOutcome, SourceError>;
    /// Undo data for `action` known before it runs (journaled with the
    /// intent, so an action interrupted after the provider call can still be
    /// undone). `None` when it depends on state only the call reads.
    fn planned_undo(&self, _action: &ActionRequest) -> Option<serde_json::Value> {
        None
    }
    /// Whether a credential of this kind can be disabled reversibly. When it
    /// cannot (an Entra ID client secret can only be removed), the engine
    /// does not ask for a disable: it holds the action, or removes the
    /// credential where the operator allowed that irreversible step.
    fn can_disable(&self, _kind: CredentialKind) -> bool {
        true
    }
    /// Whether a credential of this kind can be removed through this
    /// remediator. One it can neither disable nor remove (an AWS role's
    /// OIDC trust is a statement of its trust policy) is never acted on:
    /// the engine holds the action and says it is changed by hand.
    fn can_remove(&self, _kind: CredentialKind) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_distinguishes_unknown_from_never() {
        let never: Usage = serde_json_from(r#"{"state":"never"}"#);
        let unknown: Usage = Usage::default();
        assert_ne!(never, unknown);
        assert_eq!(never.last_used_at(), None);
    }

    #[test]
    fn credential_rejects_unknown_fields_such_as_a_secret() {
        let text = r#"{"id":"AKIA1","identity":"u","kind":"access_key","secret":"x"}"#;
        let err = serde_json::from_str::<Credential>(text).unwrap_err();
        assert!(err.to_string().contains("unknown field `secret`"), "{err}");
    }

    #[test]
    fn a_gap_is_typed_and_says_what_it_blinds() {
        let text = r#"{"unseen":{"type":"credentials","kind":"ssh_key"},"reason":"AccessDenied"}"#;
        let gap: Gap = serde_json_from(text);
        assert_eq!(
            gap.unseen,
            Unseen::Credentials {
                kind: CredentialKind::SshKey
            }
        );
        assert_eq!(
            gap.blinds(),
            vec![Blinds::CredentialKind(CredentialKind::SshKey)]
        );
        assert_eq!(gap.to_string(), "ssh_key: AccessDenied");
        assert_eq!(serde_json::to_string(&gap).expect("json"), text);
        let sub: Gap =
            serde_json_from(r#"{"unseen":{"type":"subscription","id":"s1"},"reason":"500"}"#);
        assert_eq!(sub.blinds(), vec![Blinds::Privilege]);
        assert_eq!(sub.to_string(), "subscription s1: 500");
        let account = Unseen::Account {
            via_role: None,
            subjects: None,
        };
        assert_eq!(account.to_string(), "account");
        assert_eq!(account.blinds(), vec![Blinds::WholeSource]);
        let member = Unseen::Account {
            via_role: Some("arn:aws:iam::210987654321:role/scan".into()),
            subjects: Some("arn:aws:iam::210987654321:".into()),
        };
        assert_eq!(
            member.to_string(),
            "account 210987654321 via arn:aws:iam::210987654321:role/scan"
        );
        assert_eq!(member.blinds(), vec![Blinds::Privilege]);
        assert_eq!(
            serde_json::to_string(&account).expect("json"),
            r#"{"type":"account"}"#
        );
        // The untyped form is refused, not read as something else.
        let old = r#"{"what":"ssh_key","reason":"AccessDenied"}"#;
        assert!(serde_json::from_str::<Gap>(old).is_err());
        let unknown = r#"{"unseen":{"type":"subscription","id":"s1","extra":1},"reason":"x"}"#;
        assert!(serde_json::from_str::<Gap>(unknown).is_err());
    }

    fn serde_json_from<T: for<'a> Deserialize<'a>>(s: &str) -> T {
        serde_json::from_str(s).expect("valid json")
    }
}
