//! A small estate builder for plan and pipeline tests: one clean world that
//! fires nothing, which each test bends until exactly one rule should fire.
//! The rules' own cases use the same world as data: `rules/clean-world.yaml`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, TimeZone, Utc};
use nhi_assure::engine;
use nhi_assure::engine::estate::Estate;
use nhi_assure::engine::plan::Protected;
use nhi_assure::engine::rules::{Kind, RuleSet, RulesConfig};
use nhi_contract::{
    Approval, Credential, CredentialKind, Entitlement, Grant, Identity, IdentityKind, Inventory,
    PrivilegeLevel, Provider, Scope, Timestamp, Trust, Usage,
};

pub const USER: &str = "arn:aws:iam::111122223333:user/ci";
pub const KEY: &str = "AKIAAAAAAAAAAAAAAAA1";
pub const READ_POLICY: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";

pub fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0)
        .single()
        .expect("valid date")
}

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

/// A world: one inventory plus approvals, evaluated at [`now`].
pub struct World {
    pub inv: Inventory,
    pub approvals: Vec<Approval>,
    pub failed: bool,
}

pub fn identity(id: &str, kind: IdentityKind) -> Identity {
    Identity {
        provider: Provider::Aws,
        id: id.to_string(),
        kind,
        name: id.rsplit('/').next().unwrap_or(id).to_string(),
        account: "111122223333".into(),
        owner: Some("payments@example.com".into()),
        created: Some(now() - days(200)),
        usage: Usage::Unknown,
        enabled: true,
        tags: BTreeMap::new(),
        human_login: false,
        human_login_last_used: None,
        privilege: None,
        privilege_reason: None,
        provider_managed: false,
        attached_to: Vec::new(),
    }
}

pub fn key(id: &str, identity: &str) -> Credential {
    Credential {
        id: id.to_string(),
        identity: identity.to_string(),
        kind: CredentialKind::AccessKey,
        created: Some(now() - days(10)),
        expires: None,
        usage: Usage::Used {
            at: now() - days(1),
            service: Some("s3".into()),
            region: Some("eu-west-1".into()),
        },
        active: true,
        name: None,
        federation: None,
    }
}

pub fn policy(id: &str, actions: &[&str], privilege: PrivilegeLevel) -> Entitlement {
    Entitlement {
        id: id.to_string(),
        name: id.rsplit('/').next().unwrap_or(id).to_string(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        resources: vec!["*".into()],
        privilege,
    }
}

pub fn grant(identity: &str, entitlement: &str) -> Grant {
    Grant {
        identity: identity.to_string(),
        entitlement: entitlement.to_string(),
        via: None,
        eligible: false,
        last_used: None,
    }
}

pub fn approval(id: &str, subject: &str) -> Approval {
    Approval {
        id: id.to_string(),
        subject: subject.to_string(),
        credentials: Vec::new(),
        scope: Scope {
            actions: vec!["s3:Get*".into(), "s3:List*".into()],
            entitlements: Vec::new(),
            assume: Vec::new(),
            services: vec!["s3".into()],
            regions: vec!["eu-west-1".into()],
        },
        requester: "alice@example.com".into(),
        approver: "bob@example.com".into(),
        approved_at: now() - days(30),
        starts_at: None,
        expires_at: now() + days(100),
        revoked_at: None,
        reference: Some("CHG-1".into()),
        emergency: None,
        source: "test".into(),
        url: None,
        assignee: None,
        role: None,
        issue_to: None,
    }
}

pub fn trust(from: &str, to: &str) -> Trust {
    Trust {
        from: from.to_string(),
        to: to.to_string(),
    }
}

/// One owned user, one fresh key used yesterday within scope, a read-only
/// policy, a valid approval: fires nothing.
pub fn clean() -> World {
    World {
        inv: Inventory {
            identities: vec![identity(USER, IdentityKind::User)],
            credentials: vec![key(KEY, USER)],
            entitlements: vec![policy(
                READ_POLICY,
                &["s3:GetObject", "s3:ListBucket"],
                PrivilegeLevel::Read,
            )],
            grants: vec![grant(USER, READ_POLICY)],
            trusts: Vec::new(),
            approvals: Vec::new(),
            coverage: Default::default(),
        },
        approvals: vec![approval("APR-1", USER)],
        failed: false,
    }
}

impl World {
    pub fn cred(&mut self, id: &str) -> &mut Credential {
        self.inv
            .credentials
            .iter_mut()
            .find(|c| c.id == id)
            .expect("credential in world")
    }

    pub fn ident(&mut self, id: &str) -> &mut Identity {
        self.inv
            .identities
            .iter_mut()
            .find(|c| c.id == id)
            .expect("identity in world")
    }

    pub fn appr(&mut self, id: &str) -> &mut Approval {
        self.approvals
            .iter_mut()
            .find(|c| c.id == id)
            .expect("approval in world")
    }

    pub fn estate(&self) -> Estate {
        let mut e = Estate {
            approvals: self.approvals.clone(),
            ..Estate::default()
        };
        if self.failed {
            e.add_failed("aws", Provider::Aws, "timeout".into());
        } else {
            e.add_inventory("aws", Provider::Aws, self.inv.clone());
        }
        e
    }

    /// (rule id, subject) pairs that fire; the subject is the credential id,
    /// identity id or approval id depending on the rule's kind.
    pub fn fired_with(&self, cfg: &RulesConfig) -> BTreeSet<(String, String)> {
        let rules = RuleSet::load(cfg, std::path::Path::new(".")).expect("built-in rules load");
        let estate = self.estate();
        let eval = engine::evaluate(&estate, &rules, &Protected::default(), now());
        eval.hits
            .iter()
            .map(|h| {
                let r = &rules.rules[h.rule as usize];
                let s = h.subject as usize;
                let subject = match r.subject {
                    Kind::Credential => estate.credentials[s].id.clone(),
                    Kind::Identity => estate.identities[s].id.clone(),
                    Kind::Approval => estate.approvals[s].id.clone(),
                };
                (r.id.clone(), subject)
            })
            .collect()
    }

    pub fn fired(&self) -> BTreeSet<(String, String)> {
        self.fired_with(&RulesConfig::default())
    }

    /// Whether `rule` fires on `subject`.
    pub fn fires(&self, rule: &str, subject: &str) -> bool {
        self.fired()
            .contains(&(rule.to_string(), subject.to_string()))
    }

    /// Rules that fire at all.
    pub fn rules_fired(&self) -> BTreeSet<String> {
        self.fired().into_iter().map(|(r, _)| r).collect()
    }
}
