//! The fact schema rules are written against: which `root.field` names
//! exist for each subject kind, their types, how to read them, and what
//! each reads beyond its subject.
//!
//! A field exists only if its table ([`CREDENTIAL`], [`IDENTITY`],
//! [`APPROVAL`]) declares it with its [`Facets`]: what a source's gap
//! could hide from it (last use → [`Facets::USAGE`], who holds what →
//! [`Facets::PRIVILEGE`], ...; [`Facets::NONE`] for what the subject itself
//! carries: ids, kinds, expiry, approvals, owner). A rule depends on the
//! facets of every field its condition reads, collected when it is
//! compiled, so a gap holds exactly the findings and actions that read what
//! it blinds. A new field is declared in its table with its facets; a name
//! the accessor knows but the table does not is not a field.
//!
//! `rules/README.md` documents the same table for rule authors; a test
//! checks that every field documented there compiles.

use nhi_contract::{CredentialKind, Usage};

use super::compile::{bf, intf, sf, Typed};
use crate::engine::estate::Estate;
use crate::engine::facets::Facets;
use crate::engine::facts::Facts;

/// Facts reached through assume-role chains: who holds what, and who the
/// identities reached are (an identity kind a source could not list may be
/// on the path).
const VIA_ASSUME: Facets = Facets::PRIVILEGE.with(Facets::ALL_IDENTITY_KINDS);
/// Counts of an identity's access keys.
const ACCESS_KEYS: Facets = Facets::credential_kind(CredentialKind::AccessKey);
/// Which entitlements go unused: their last use, and who holds them.
const UNUSED: Facets = Facets::ENTITLEMENT_USAGE.with(Facets::PRIVILEGE);

/// What a rule is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One credential (variables `credential`, `identity`, `params`).
    Credential,
    /// One identity (variables `identity`, `params`).
    Identity,
    /// One approval record (variables `approval`, `params`).
    Approval,
}

impl Kind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Credential => "credential",
            Kind::Identity => "identity",
            Kind::Approval => "approval",
        }
    }
}

/// What compiled conditions read: the estate and its facts.
pub struct Env<'a> {
    /// The merged inventories.
    pub estate: &'a Estate,
    /// The computed facts.
    pub facts: &'a Facts,
}

fn usage_str(u: &Usage) -> &'static str {
    match u {
        Usage::Unknown => "unknown",
        Usage::Never => "never",
        Usage::Used { .. } => "used",
    }
}

macro_rules! b {
    ($f:expr) => {
        Typed::Bool(bf($f))
    };
}
macro_rules! i {
    ($f:expr) => {
        Typed::Int(intf($f))
    };
}
macro_rules! s {
    ($f:expr) => {
        Typed::Str(sf($f))
    };
}

/// The declared fields of `root` in a rule of `kind`.
fn table(kind: Kind, root: &str) -> Option<&'static [(&'static str, Facets)]> {
    match (kind, root) {
        (Kind::Credential, "credential") => Some(CREDENTIAL),
        (Kind::Credential | Kind::Identity, "identity") => Some(IDENTITY),
        (Kind::Approval, "approval") => Some(APPROVAL),
        _ => None,
    }
}

/// What `root.name` in a rule of `kind` reads beyond its subject, if the
/// field exists.
pub fn facets(kind: Kind, root: &str, name: &str) -> Option<Facets> {
    table(kind, root)?
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// The typed accessor for `root.name` in a rule of `kind`, if it exists
/// (is declared in its table).
pub fn field(kind: Kind, root: &str, name: &str) -> Option<Typed> {
    facets(kind, root, name)?;
    match (kind, root) {
        (Kind::Credential, "credential") => credential_field(name),
        (Kind::Credential, "identity") => {
            // Lift an identity accessor through the credential's identity.
            // A credential whose identity is unknown reads as unknown/false.
            Some(match identity_field(name)? {
                Typed::Bool(f) => b!(move |e: &Env<'_>, c: u32| {
                    e.facts.credentials[c as usize]
                        .identity
                        .is_some_and(|i| f(e, i))
                }),
                Typed::Int(f) => i!(move |e: &Env<'_>, c: u32| {
                    e.facts.credentials[c as usize]
                        .identity
                        .and_then(|i| f(e, i))
                }),
                Typed::Str(f) => s!(move |e: &Env<'_>, c: u32| {
                    e.facts.credentials[c as usize]
                        .identity
                        .and_then(|i| f(e, i))
                }),
                other => other,
            })
        }
        (Kind::Identity, "identity") => identity_field(name),
        (Kind::Approval, "approval") => approval_field(name),
        _ => None,
    }
}

/// Every `root.field` name valid for `kind`, for documentation and tests.
pub fn names(kind: Kind) -> Vec<String> {
    let roots: &[(&str, &[(&str, Facets)])] = match kind {
        Kind::Credential => &[("credential", CREDENTIAL), ("identity", IDENTITY)],
        Kind::Identity => &[("identity", IDENTITY)],
        Kind::Approval => &[("approval", APPROVAL)],
    };
    roots
        .iter()
        .flat_map(|(r, fs)| fs.iter().map(move |(f, _)| format!("{r}.{f}")))
        .collect()
}

/// Credential facts (`credential.*`), each with what it reads beyond the
/// credential (see the module doc).
const CREDENTIAL: &[(&str, Facets)] = &[
    ("id", Facets::NONE),
    ("kind", Facets::NONE),
    ("name", Facets::NONE),
    ("provider", Facets::NONE),
    ("active", Facets::NONE),
    ("secret_bearing", Facets::NONE),
    ("has_expiry", Facets::NONE),
    ("age_days", Facets::NONE),
    ("expires_in_days", Facets::NONE),
    ("lifetime_days", Facets::NONE),
    ("usage", Facets::USAGE),
    ("days_since_last_use", Facets::USAGE),
    ("last_used_service", Facets::USAGE),
    ("last_used_region", Facets::USAGE),
    ("approval_state", Facets::NONE),
    ("approval_id", Facets::NONE),
    ("approval_count", Facets::NONE),
    ("approval_expires_in_days", Facets::NONE),
    ("approval_emergency", Facets::NONE),
    ("approval_issuance", Facets::NONE),
    ("approval_role", Facets::NONE),
    ("used_outside_scope", Facets::USAGE),
    ("expired", Facets::NONE),
    ("days_since_expiry", Facets::NONE),
    ("federated_issuer", Facets::NONE),
    ("federated_issuer_host", Facets::NONE),
    ("federated_subjects", Facets::NONE),
    ("federation_broad", Facets::NONE),
    ("federation_broad_reason", Facets::NONE),
    ("federation_kind", Facets::NONE),
    ("trusted_account", Facets::NONE),
    ("trust_outside_estate", Facets::NONE),
    ("trust_requires_external_id", Facets::NONE),
    ("trust_restricted", Facets::NONE),
    ("trust_conditions", Facets::NONE),
];

fn credential_field(name: &str) -> Option<Typed> {
    fn cred<'e>(e: &'e Env<'e>, c: u32) -> &'e nhi_contract::Credential {
        &e.estate.credentials[c as usize]
    }
    fn facts<'e>(e: &'e Env<'e>, c: u32) -> &'e crate::engine::facts::CredentialFacts {
        &e.facts.credentials[c as usize]
    }
    fn fed<'e>(e: &'e Env<'e>, c: u32) -> Option<&'e crate::engine::facts::FederationFacts> {
        facts(e, c).federation.as_deref()
    }
    Some(match name {
        "id" => s!(|e, c| Some(cred(e, c).id.as_str())),
        "kind" => s!(|e, c| Some(cred(e, c).kind.as_str())),
        "name" => s!(|e, c| cred(e, c).name.as_deref()),
        "provider" => s!(|e, c| facts(e, c)
            .identity
            .map(|i| e.estate.identities[i as usize].provider.as_str())),
        // An expired credential does not authenticate, whatever the
        // provider's flag says: rules about live credentials never see it.
        "active" => b!(|e, c| cred(e, c).active && !facts(e, c).expired),
        "secret_bearing" => b!(|e, c| cred(e, c).kind.is_secret_bearing()),
        "has_expiry" => b!(|e, c| cred(e, c).expires.is_some()),
        "age_days" => i!(|e, c| facts(e, c).age_days.map(i64::from)),
        "expires_in_days" => i!(|e, c| facts(e, c).expires_in_days.map(i64::from)),
        "lifetime_days" => i!(|e, c| facts(e, c).lifetime_days.map(i64::from)),
        "usage" => s!(|e, c| Some(usage_str(&cred(e, c).usage))),
        "days_since_last_use" => i!(|e, c| facts(e, c).days_since_last_use.map(i64::from)),
        "last_used_service" => s!(|e, c| match &cred(e, c).usage {
            Usage::Used { service, .. } => service.as_deref(),
            _ => None,
        }),
        "last_used_region" => s!(|e, c| match &cred(e, c).usage {
            Usage::Used { region, .. } => region.as_deref(),
            _ => None,
        }),
        "approval_state" => s!(|e, c| Some(facts(e, c).approval_state.as_str())),
        "approval_id" => s!(|e, c| facts(e, c)
            .approval
            .map(|a| e.estate.approvals[a as usize].id.as_str())),
        "approval_count" => i!(|e, c| Some(i64::from(facts(e, c).approval_count))),
        "approval_expires_in_days" => {
            i!(|e, c| facts(e, c).approval_expires_in_days.map(i64::from))
        }
        "approval_emergency" => b!(|e, c| facts(e, c)
            .approval
            .is_some_and(|a| e.estate.approvals[a as usize].emergency.is_some())),
        "approval_issuance" => s!(|e, c| facts(e, c)
            .approval
            .and_then(|a| e.estate.approvals[a as usize].issuance())
            .map(nhi_contract::Issuance::as_str)),
        "approval_role" => s!(|e, c| facts(e, c)
            .approval
            .and_then(|a| e.estate.approvals[a as usize].role.as_deref())),
        "used_outside_scope" => b!(|e, c| facts(e, c).used_outside_scope),
        "expired" => b!(|e, c| facts(e, c).expired),
        "days_since_expiry" => i!(|e, c| facts(e, c).days_since_expiry.map(i64::from)),
        "federated_issuer" => s!(|e, c| cred(e, c).federation.as_ref().map(|f| f.issuer.as_str())),
        "federated_issuer_host" => s!(|e, c| fed(e, c).and_then(|f| f.issuer_host.as_deref())),
        "federated_subjects" => s!(|e, c| fed(e, c).map(|f| f.subjects.as_str())),
        "federation_broad" => b!(|e, c| fed(e, c).is_some_and(|f| f.broad.is_some())),
        "federation_broad_reason" => s!(|e, c| fed(e, c).and_then(|f| f.broad.as_deref())),
        "federation_kind" => s!(|e, c| cred(e, c).federation.as_ref().map(|f| f.kind.as_str())),
        "trusted_account" => s!(|e, c| cred(e, c)
            .federation
            .as_ref()
            .and_then(|f| f.account.as_deref())),
        "trust_outside_estate" => b!(|e, c| cred(e, c)
            .federation
            .as_ref()
            .is_some_and(|f| f.outside_estate == Some(true))),
        "trust_requires_external_id" => {
            b!(|e, c| fed(e, c).is_some_and(|f| f.requires_external_id))
        }
        "trust_restricted" => b!(|e, c| fed(e, c).is_some_and(|f| f.restricted)),
        "trust_conditions" => s!(|e, c| fed(e, c).map(|f| f.conditions.as_str())),
        _ => return None,
    })
}

/// Identity facts (`identity.*`), each with what it reads beyond the
/// identity.
const IDENTITY: &[(&str, Facets)] = &[
    ("id", Facets::NONE),
    ("kind", Facets::NONE),
    ("name", Facets::NONE),
    ("provider", Facets::NONE),
    ("account", Facets::NONE),
    ("owner", Facets::NONE),
    ("source", Facets::NONE),
    ("enabled", Facets::NONE),
    ("human_login", Facets::HUMAN_LOGIN),
    ("has_owner", Facets::NONE),
    ("age_days", Facets::NONE),
    ("usage", Facets::USAGE),
    ("days_since_last_use", Facets::USAGE),
    ("active_credentials", Facets::ALL_CREDENTIAL_KINDS),
    ("active_access_keys", ACCESS_KEYS),
    ("admin", VIA_ASSUME),
    ("admin_direct", Facets::PRIVILEGE),
    ("privilege", VIA_ASSUME),
    ("approved", Facets::NONE),
    ("approval_count", Facets::NONE),
    ("overscope_direct", Facets::PRIVILEGE),
    ("overscope_transitive", VIA_ASSUME),
    ("assumable", VIA_ASSUME),
    ("provider_managed", Facets::NONE),
    ("attachments", Facets::NONE),
    ("entitlement_unused_days", UNUSED),
];

fn identity_field(name: &str) -> Option<Typed> {
    fn ident<'e>(e: &'e Env<'e>, i: u32) -> &'e nhi_contract::Identity {
        &e.estate.identities[i as usize]
    }
    fn facts<'e>(e: &'e Env<'e>, i: u32) -> &'e crate::engine::facts::IdentityFacts {
        &e.facts.identities[i as usize]
    }
    Some(match name {
        "id" => s!(|e, i| Some(ident(e, i).id.as_str())),
        "kind" => s!(|e, i| Some(ident(e, i).kind.as_str())),
        "name" => s!(|e, i| Some(ident(e, i).name.as_str())),
        "provider" => s!(|e, i| Some(ident(e, i).provider.as_str())),
        "account" => s!(|e, i| Some(ident(e, i).account.as_str())),
        "owner" => s!(|e, i| ident(e, i).owner.as_deref()),
        "source" => s!(|e, i| e
            .estate
            .sources
            .get(e.estate.identity_source[i as usize] as usize)
            .map(|s| s.name.as_str())),
        "enabled" => b!(|e, i| ident(e, i).enabled),
        "human_login" => b!(|e, i| ident(e, i).human_login),
        "has_owner" => b!(|e, i| facts(e, i).has_owner),
        "age_days" => i!(|e, i| facts(e, i).age_days),
        "usage" => s!(|e, i| Some(usage_str(&ident(e, i).usage))),
        "days_since_last_use" => i!(|e, i| facts(e, i).days_since_last_use),
        "active_credentials" => i!(|e, i| Some(facts(e, i).active_credentials)),
        "active_access_keys" => i!(|e, i| Some(facts(e, i).active_access_keys)),
        "admin" => b!(|e, i| facts(e, i).admin),
        "admin_direct" => b!(|e, i| facts(e, i).admin_direct),
        "privilege" => s!(|e, i| Some(facts(e, i).privilege.as_str())),
        "approved" => b!(|e, i| facts(e, i).approved),
        "approval_count" => i!(|e, i| Some(facts(e, i).approval_count)),
        "overscope_direct" => i!(|e, i| Some(facts(e, i).overscope_direct.len() as i64)),
        "overscope_transitive" => i!(|e, i| Some(facts(e, i).overscope_transitive.len() as i64)),
        "assumable" => i!(|e, i| Some(facts(e, i).assumable)),
        "provider_managed" => b!(|e, i| ident(e, i).provider_managed),
        "attachments" => i!(|e, i| Some(ident(e, i).attached_to.len() as i64)),
        "entitlement_unused_days" => i!(|e, i| facts(e, i).entitlement_unused_days),
        _ => return None,
    })
}

/// Approval facts (`approval.*`), each with what it reads beyond the
/// approval record.
const APPROVAL: &[(&str, Facets)] = &[
    ("id", Facets::NONE),
    ("subject", Facets::NONE),
    ("requester", Facets::NONE),
    ("approver", Facets::NONE),
    ("assignee", Facets::NONE),
    ("reference", Facets::NONE),
    ("url", Facets::NONE),
    ("source", Facets::NONE),
    ("state", Facets::NONE),
    ("valid", Facets::NONE),
    ("subject_known", Facets::ALL_IDENTITY_KINDS),
    ("self_approved", Facets::NONE),
    ("approver_is_assignee", Facets::NONE),
    ("emergency", Facets::NONE),
    ("emergency_ended", Facets::NONE),
    ("active_after_emergency", Facets::NONE),
    ("duration_hours", Facets::NONE),
    ("expires_in_days", Facets::NONE),
    ("credential_count", Facets::NONE),
];

fn approval_field(name: &str) -> Option<Typed> {
    fn appr<'e>(e: &'e Env<'e>, a: u32) -> &'e nhi_contract::Approval {
        &e.estate.approvals[a as usize]
    }
    fn facts<'e>(e: &'e Env<'e>, a: u32) -> &'e crate::engine::facts::ApprovalFacts {
        &e.facts.approvals[a as usize]
    }
    Some(match name {
        "id" => s!(|e, a| Some(appr(e, a).id.as_str())),
        "subject" => s!(|e, a| Some(appr(e, a).subject.as_str())),
        "requester" => s!(|e, a| Some(appr(e, a).requester.as_str())),
        "approver" => s!(|e, a| Some(appr(e, a).approver.as_str())),
        "assignee" => s!(|e, a| appr(e, a).assignee.as_deref()),
        "reference" => s!(|e, a| appr(e, a).reference.as_deref()),
        "url" => s!(|e, a| appr(e, a).url.as_deref()),
        "source" => s!(|e, a| Some(appr(e, a).source.as_str())),
        "state" => s!(|e, a| Some(facts(e, a).state.as_str())),
        "valid" => b!(|e, a| facts(e, a).state == crate::engine::facts::ApprovalState::Valid),
        "subject_known" => b!(|e, a| facts(e, a).identity.is_some()),
        "self_approved" => b!(|e, a| facts(e, a).self_approved),
        "approver_is_assignee" => b!(|e, a| facts(e, a).approver_is_assignee),
        "emergency" => b!(|e, a| appr(e, a).emergency.is_some()),
        "emergency_ended" => b!(|e, a| facts(e, a).emergency_ended),
        "active_after_emergency" => b!(|e, a| facts(e, a).active_after_emergency),
        "duration_hours" => i!(|e, a| Some(facts(e, a).duration_hours)),
        "expires_in_days" => i!(|e, a| Some(facts(e, a).expires_in_days)),
        "credential_count" => i!(|e, a| Some(appr(e, a).credentials.len() as i64)),
        _ => return None,
    })
}
