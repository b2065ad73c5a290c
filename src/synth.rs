//! A reproducible synthetic estate, for the benchmark and for load tests.
//!
//! Deterministic for a given seed (a SplitMix64 stream, so the output does
//! not change with a dependency's version). The mix is meant to look like a
//! large AWS organisation: users with one or two keys, roles with trust
//! chains (a few reaching admin roles), shared managed policies, approvals
//! in every state, usage known / never / unknown.

use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use nhi_contract::{
    Approval, Credential, CredentialKind, Entitlement, Grant, Identity, IdentityKind, Inventory,
    PrivilegeLevel, Provider, Scope, Timestamp, Trust, Usage,
};

/// Size of the estate to generate.
#[derive(Debug, Clone, Copy)]
pub struct SynthSpec {
    /// Identities.
    pub identities: usize,
    /// Credentials (spread over the non-role identities).
    pub credentials: usize,
    /// Seed of the random stream.
    pub seed: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SERVICES: &[&str] = &[
    "s3", "ec2", "dynamodb", "sqs", "sns", "kms", "lambda", "logs", "iam", "sts",
];
const VERBS: &[&str] = &[
    "Get*",
    "List*",
    "Describe*",
    "Put*",
    "Create*",
    "Delete*",
    "Update*",
];
const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"];

/// The evaluation instant the synthetic dates are relative to.
pub fn synth_now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Generate the inventory and the approvals.
pub fn generate(spec: SynthSpec) -> (Inventory, Vec<Approval>) {
    let mut r = Rng(spec.seed);
    let now = synth_now();
    let days_ago = |r: &mut Rng, max: u64| now - Duration::days(r.below(max) as i64);

    // Shared managed policies; a few are admin-equivalent.
    let n_policies = 2_000usize;
    let mut entitlements = Vec::with_capacity(n_policies);
    for p in 0..n_policies {
        let (actions, privilege) = if p.is_multiple_of(400) {
            (vec!["*".to_string()], PrivilegeLevel::Admin)
        } else {
            let n = 2 + r.below(4) as usize;
            let acts: Vec<String> = (0..n)
                .map(|_| {
                    format!(
                        "{}:{}",
                        SERVICES[r.below(8) as usize],
                        VERBS[r.below(VERBS.len() as u64) as usize]
                    )
                })
                .collect();
            let write = acts
                .iter()
                .any(|a| !a.contains(":Get") && !a.contains(":List") && !a.contains(":Describe"));
            (
                acts,
                if write {
                    PrivilegeLevel::Write
                } else {
                    PrivilegeLevel::Read
                },
            )
        };
        entitlements.push(Entitlement {
            id: format!("arn:aws:iam::aws:policy/synth-{p}"),
            name: format!("synth-{p}"),
            actions,
            resources: vec!["*".into()],
            privilege,
        });
    }

    let n = spec.identities;
    let n_roles = n / 5;
    let mut identities = Vec::with_capacity(n);
    let mut grants = Vec::with_capacity(n * 2);
    let mut trusts = Vec::new();
    for i in 0..n {
        let account = 100_000_000_000u64 + (i as u64 % 50);
        let role = i < n_roles;
        let id = if role {
            format!("arn:aws:iam::{account}:role/synth-role-{i}")
        } else {
            format!("arn:aws:iam::{account}:user/synth-svc-{i}")
        };
        let mut tags = BTreeMap::new();
        if i % 10 == 0 {
            tags.insert("team".to_string(), format!("team-{}", i % 97));
        }
        identities.push(Identity {
            provider: Provider::Aws,
            id: id.clone(),
            kind: if role {
                IdentityKind::Role
            } else {
                IdentityKind::User
            },
            name: format!("synth-{i}"),
            account: account.to_string(),
            owner: (!r.chance(3)).then(|| format!("team-{}@example.com", i % 97)),
            created: Some(days_ago(&mut r, 1500)),
            usage: Usage::Unknown,
            enabled: true,
            tags,
            human_login: !role && r.chance(2),
            human_login_last_used: None,
            privilege: None,
            privilege_reason: None,
            provider_managed: false,
            attached_to: Vec::new(),
        });
        for _ in 0..(1 + r.below(3)) {
            // Admin policies are rare: skip them in random picks.
            let mut p = r.below(n_policies as u64) as usize;
            if p.is_multiple_of(400) {
                p += 1;
            }
            grants.push(Grant {
                identity: id.clone(),
                entitlement: entitlements[p].id.clone(),
                via: None,
                eligible: false,
                last_used: None,
            });
        }
        if role && i.is_multiple_of(1000) {
            grants.push(Grant {
                identity: id.clone(),
                entitlement: entitlements[0].id.clone(),
                via: None,
                eligible: false,
                last_used: None,
            });
        }
        // Users may assume roles; roles chain to other roles.
        if (!role && r.chance(10)) || (role && r.chance(20)) {
            for _ in 0..(1 + r.below(2)) {
                let target = r.below(n_roles.max(1) as u64) as usize;
                if target != i {
                    trusts.push(Trust {
                        from: id.clone(),
                        to: format!(
                            "arn:aws:iam::{}:role/synth-role-{target}",
                            100_000_000_000u64 + (target as u64 % 50)
                        ),
                    });
                }
            }
        }
    }

    let users = n - n_roles;
    let mut credentials = Vec::with_capacity(spec.credentials);
    for c in 0..spec.credentials {
        let owner = n_roles + (c % users.max(1));
        let kind = match r.below(20) {
            0 => CredentialKind::SshKey,
            1 => CredentialKind::Certificate,
            2 | 3 => CredentialKind::ClientSecret,
            4 => CredentialKind::Token,
            _ => CredentialKind::AccessKey,
        };
        // Mostly healthy: rotated within 120 days, used within a month.
        let created = if r.chance(85) {
            days_ago(&mut r, 120)
        } else {
            days_ago(&mut r, 900)
        };
        let usage = match r.below(100) {
            0..=6 => Usage::Never,
            7..=14 => Usage::Unknown,
            15..=19 => Usage::Used {
                at: now - Duration::days(30 + r.below(170) as i64),
                service: None,
                region: None,
            },
            _ => Usage::Used {
                at: now - Duration::days(r.below(30) as i64),
                service: r
                    .chance(30)
                    .then(|| SERVICES[r.below(SERVICES.len() as u64) as usize].to_string()),
                region: r
                    .chance(30)
                    .then(|| REGIONS[r.below(REGIONS.len() as u64) as usize].to_string()),
            },
        };
        let expires = matches!(
            kind,
            CredentialKind::ClientSecret | CredentialKind::Certificate | CredentialKind::Token
        )
        .then(|| created + Duration::days(90 + r.below(900) as i64))
        .filter(|_| !r.chance(20));
        credentials.push(Credential {
            id: format!("AKIA{c:016X}"),
            identity: identities[owner].id.clone(),
            kind,
            created: Some(created),
            expires,
            usage,
            active: !r.chance(5),
            name: None,
            federation: None,
        });
    }

    // Approvals: most identities have one; states vary.
    let mut approvals = Vec::with_capacity(n);
    for (i, ident) in identities.iter().enumerate() {
        if r.chance(10) {
            continue;
        }
        let approved_at = days_ago(&mut r, 380);
        let expires_at = approved_at + Duration::days(365);
        let actions = (0..(1 + r.below(3)))
            .map(|_| format!("{}:*", SERVICES[r.below(8) as usize]))
            .collect();
        approvals.push(Approval {
            id: format!("APR-{i}"),
            subject: ident.id.clone(),
            credentials: Vec::new(),
            scope: Scope {
                actions,
                entitlements: Vec::new(),
                assume: Vec::new(),
                services: if r.chance(20) {
                    vec!["s3".into()]
                } else {
                    Vec::new()
                },
                regions: Vec::new(),
            },
            requester: format!("dev-{}@example.com", i % 500),
            approver: if r.chance(1) {
                format!("dev-{}@example.com", i % 500)
            } else {
                format!("lead-{}@example.com", i % 50)
            },
            approved_at,
            starts_at: None,
            expires_at,
            revoked_at: r.chance(1).then(|| approved_at + Duration::days(10)),
            reference: Some(format!("CHG-{i}")),
            emergency: None,
            source: "synthetic".into(),
            url: None,
            assignee: None,
            role: None,
            issue_to: None,
        });
    }

    let inv = Inventory {
        identities,
        credentials,
        entitlements,
        grants,
        trusts,
        approvals: Vec::new(),
        coverage: Default::default(),
    };
    (inv, approvals)
}
