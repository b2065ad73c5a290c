//! Pure IAM policy-document analysis: parsing (URL-encoded or plain JSON),
//! effective permissions of a principal (identity policies ∩ permissions
//! boundary, minus explicit denies of either, across all its documents),
//! admin-equivalence through the escalation methods of [`METHODS`], taking
//! over one named principal ([`acts_as`]) and role trust evaluation. No AWS
//! SDK types.
//!
//! Resources are patterns matched against patterns: `arn:aws:*:*:*:*` is
//! every resource, `arn:aws:iam::ACCT:user/*` every user of the account. A
//! method applies when the allowed (action, resource) pairs cover what it
//! needs, never by looking for a literal `*`.
//!
//! Judgment calls (all towards reporting more access, never less):
//! - Conditions are assumed satisfiable on Allow statements and assumed *not*
//!   to apply on Deny statements; so a conditional Allow of `*:*` is still
//!   admin-equivalent (the reason says "conditional"), and a conditional Deny
//!   never subtracts anything.
//! - Where a method needs a whole target (every user), a Deny on any part of
//!   it breaks that method; where it needs only some (a Lambda function the
//!   holder creates), only a Deny of all of it does. An Allow with
//!   `NotResource` covers a target its exclusions do not touch.
//! - `${aws:username}` is resolved for users; other policy variables stay
//!   literal and match nothing (a self-service policy is not read as
//!   covering everyone).
//! - `NotPrincipal` statements are not evaluated (their principals are not
//!   kept): they neither admit nor deny in trust evaluation.
//! - Service control policies and resource policies are not read.

use nhi_contract::pattern::Syntax;
use nhi_contract::PrivilegeLevel;
use serde_json::{Map, Value};

/// A parsed IAM policy document (identity policy or role trust policy).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyDocument {
    /// The statements, in document order.
    pub statements: Vec<Statement>,
}

/// One statement of a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Allow or Deny.
    pub effect: Effect,
    /// From `Action` (`Only`) or `NotAction` (`AllBut`).
    pub actions: Spec,
    /// From `Resource` or `NotResource`; absent (trust policies) => `Only(["*"])`.
    pub resources: Spec,
    /// From `Principal`; `None` when absent or when `NotPrincipal` is used.
    pub principals: Option<Principals>,
    /// Whether the statement used `NotPrincipal`.
    pub not_principal: bool,
    /// Whether a (non-empty) `Condition` is present.
    pub has_condition: bool,
    /// The conditions it could read, one per operator and key, in document
    /// order (what is unreadable is left out; `has_condition` still says
    /// a condition exists).
    pub conditions: Vec<Condition>,
    /// Positions of the `Action` patterns by lower-case service, and those
    /// whose service part has a wildcard: a policy like ReadOnlyAccess holds
    /// thousands of patterns, and each escalation question names one service.
    by_service: ServiceIndex,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct ServiceIndex {
    services: std::collections::BTreeMap<String, Vec<usize>>,
    wild: Vec<usize>,
}

impl ServiceIndex {
    fn of(spec: &Spec) -> ServiceIndex {
        let mut ix = ServiceIndex::default();
        if let Spec::Only(ps) = spec {
            for (i, p) in ps.iter().enumerate() {
                match p.split_once(':') {
                    Some((svc, _)) if !svc.contains(['*', '?']) => ix
                        .services
                        .entry(svc.to_ascii_lowercase())
                        .or_default()
                        .push(i),
                    _ => ix.wild.push(i),
                }
            }
        }
        ix
    }
}

impl Statement {
    /// The `Action` patterns that can concern `action` (a pattern): those of
    /// its service and those with a wildcard service; all of them when the
    /// action's service is itself a pattern.
    fn action_patterns<'s>(&'s self, ps: &'s [String], action: &str) -> Vec<&'s str> {
        match action.split_once(':') {
            Some((svc, _)) if !svc.contains(['*', '?']) => {
                let own = self
                    .by_service
                    .services
                    .get(&svc.to_ascii_lowercase())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                own.iter()
                    .chain(&self.by_service.wild)
                    .filter_map(|&i| ps.get(i).map(String::as_str))
                    .collect()
            }
            _ => ps.iter().map(String::as_str).collect(),
        }
    }

    /// Allow side: it allows every action the pattern names.
    fn actions_cover(&self, action: &str) -> bool {
        match &self.actions {
            Spec::Only(ps) => self
                .action_patterns(ps, action)
                .iter()
                .any(|p| ACTION.covers(p, action)),
            Spec::AllBut(xs) => !xs.iter().any(|x| ACTION.overlaps(x, action)),
        }
    }

    /// Deny side: it denies at least one action the pattern names.
    fn actions_touch(&self, action: &str) -> bool {
        match &self.actions {
            Spec::Only(ps) => self
                .action_patterns(ps, action)
                .iter()
                .any(|p| ACTION.overlaps(p, action)),
            Spec::AllBut(xs) => !xs.iter().any(|x| ACTION.covers(x, action)),
        }
    }
}

/// One condition of a statement: `{"StringLike": {"host:sub": ["a", "b"]}}`
/// is operator `StringLike`, key `host:sub`, values `a`, `b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The operator as written, with any `ForAnyValue:` / `ForAllValues:`
    /// qualifier and `IfExists` suffix.
    pub operator: String,
    /// The condition key as written (keys compare case-insensitively).
    pub key: String,
    /// The values, as strings (a bool or number written bare is its text).
    pub values: Vec<String>,
}

impl Condition {
    /// Whether it admits only values matching its own (`StringEquals`,
    /// `StringLike`, `StringEqualsIgnoreCase`, with their set qualifiers
    /// and `IfExists`), so its values bound the key: the negated and other
    /// operators do not.
    pub fn admits_only_its_values(&self) -> bool {
        let op = self
            .operator
            .strip_prefix("ForAnyValue:")
            .or_else(|| self.operator.strip_prefix("ForAllValues:"))
            .unwrap_or(&self.operator);
        let op = op.strip_suffix("IfExists").unwrap_or(op);
        matches!(op, "StringEquals" | "StringLike" | "StringEqualsIgnoreCase")
    }
}

/// The effect of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `"Effect": "Allow"`.
    Allow,
    /// `"Effect": "Deny"`.
    Deny,
}

/// `Only(patterns)` for Action/Resource, `AllBut(patterns)` for NotAction/NotResource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// Matches values matched by any of the patterns.
    Only(Vec<String>),
    /// Matches values matched by none of the patterns.
    AllBut(Vec<String>),
}

/// Principals of a statement: "*" is `any = true`; {"AWS": .., "Service": .., "Federated": ..} each string or array.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principals {
    /// `"Principal": "*"` (everyone).
    pub any: bool,
    /// `AWS` principals: ARNs, account ids or `*`.
    pub aws: Vec<String>,
    /// `Service` principals, e.g. `ec2.amazonaws.com`.
    pub service: Vec<String>,
    /// `Federated` principals (SAML/OIDC providers).
    pub federated: Vec<String>,
}

/// Errors from parsing a policy document.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The document is not a valid IAM policy document.
    #[error("policy document: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(msg.into())
}

/// Parse a document as IAM returns it: URL-encoded JSON or plain JSON.
pub fn parse(doc: &str) -> Result<PolicyDocument, PolicyError> {
    let trimmed = doc.trim();
    let looks_encoded = !trimmed.starts_with('{')
        && (trimmed
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("%7B"))
            || trimmed.contains("%22"));
    let value: Value = if looks_encoded {
        // IAM uses RFC 3986 encoding: '+' is a literal plus, not a space.
        let decoded = percent_encoding::percent_decode_str(trimmed)
            .decode_utf8()
            .map_err(|e| invalid(format!("URL-decoded text is not UTF-8: {e}")))?;
        serde_json::from_str(&decoded).map_err(|e| invalid(format!("invalid JSON: {e}")))?
    } else {
        serde_json::from_str(trimmed).map_err(|e| invalid(format!("invalid JSON: {e}")))?
    };
    parse_value(&value)
}

/// Parse an already-decoded JSON policy document.
pub fn parse_value(v: &Value) -> Result<PolicyDocument, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("document is not a JSON object"))?;
    let stmts = obj
        .get("Statement")
        .ok_or_else(|| invalid("missing Statement"))?;
    let statements = match stmts {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, s)| parse_statement(s).map_err(|e| with_index(e, i)))
            .collect::<Result<Vec<_>, _>>()?,
        Value::Object(_) => vec![parse_statement(stmts)?],
        _ => return Err(invalid("Statement must be an object or an array")),
    };
    Ok(PolicyDocument { statements })
}

fn with_index(e: PolicyError, i: usize) -> PolicyError {
    match e {
        PolicyError::Invalid(m) => invalid(format!("Statement[{i}]: {m}")),
    }
}

fn parse_statement(v: &Value) -> Result<Statement, PolicyError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("statement is not an object"))?;
    let effect = match obj.get("Effect") {
        Some(Value::String(s)) if s == "Allow" => Effect::Allow,
        Some(Value::String(s)) if s == "Deny" => Effect::Deny,
        Some(other) => return Err(invalid(format!("invalid Effect {other}"))),
        None => return Err(invalid("missing Effect")),
    };
    let actions = parse_spec(obj, "Action", "NotAction")?
        .ok_or_else(|| invalid("statement has neither Action nor NotAction"))?;
    let resources = parse_spec(obj, "Resource", "NotResource")?
        .unwrap_or_else(|| Spec::Only(vec!["*".to_string()]));
    let (principals, not_principal) = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(invalid("both Principal and NotPrincipal")),
        (Some(p), None) => (Some(parse_principals(p)?), false),
        (None, Some(_)) => (None, true),
        (None, None) => (None, false),
    };
    let has_condition = match obj.get("Condition") {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(_) => true,
    };
    let conditions = match obj.get("Condition") {
        Some(Value::Object(m)) => parse_conditions(m),
        _ => Vec::new(),
    };
    Ok(Statement {
        effect,
        by_service: ServiceIndex::of(&actions),
        actions,
        resources,
        principals,
        not_principal,
        has_condition,
        conditions,
    })
}

/// The readable part of a `Condition` block; IAM itself rejects malformed
/// blocks, so what is skipped here is what this analysis does not need.
fn parse_conditions(block: &Map<String, Value>) -> Vec<Condition> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    for (operator, keys) in block {
        let Value::Object(keys) = keys else { continue };
        for (key, values) in keys {
            let values = match values {
                Value::Array(items) => items.iter().filter_map(text).collect(),
                v => text(v).into_iter().collect(),
            };
            out.push(Condition {
                operator: operator.clone(),
                key: key.clone(),
                values,
            });
        }
    }
    out
}

fn parse_spec(
    obj: &Map<String, Value>,
    only: &str,
    all_but: &str,
) -> Result<Option<Spec>, PolicyError> {
    match (obj.get(only), obj.get(all_but)) {
        (Some(_), Some(_)) => Err(invalid(format!("both {only} and {all_but}"))),
        (Some(v), None) => Ok(Some(Spec::Only(string_list(v, only)?))),
        (None, Some(v)) => Ok(Some(Spec::AllBut(string_list(v, all_but)?))),
        (None, None) => Ok(None),
    }
}

fn string_list(v: &Value, key: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("{key} entries must be strings")))
            })
            .collect(),
        _ => Err(invalid(format!(
            "{key} must be a string or an array of strings"
        ))),
    }
}

fn parse_principals(v: &Value) -> Result<Principals, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals {
            any: true,
            ..Principals::default()
        }),
        Value::Object(m) => {
            let get = |k: &str| -> Result<Vec<String>, PolicyError> {
                m.get(k)
                    .map(|v| string_list(v, &format!("Principal.{k}")))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            Ok(Principals {
                any: false,
                aws: get("AWS")?,
                service: get("Service")?,
                federated: get("Federated")?,
            })
        }
        _ => Err(invalid("Principal must be \"*\" or an object")),
    }
}

// ---------------------------------------------------------------------------
// Patterns: one implementation for the engine and this analysis
// ---------------------------------------------------------------------------

/// Action names: `*` and `?`, case-insensitive.
const ACTION: Syntax = Syntax::IAM_ACTION;
/// Resources and principal ARNs: `*` and `?`, case-sensitive.
const RESOURCE: Syntax = Syntax::IAM_RESOURCE;

fn spec_matches(spec: &Spec, value: &str, syntax: Syntax) -> bool {
    match spec {
        Spec::Only(ps) => ps.iter().any(|p| syntax.matches(p, value)),
        Spec::AllBut(ps) => !ps.iter().any(|p| syntax.matches(p, value)),
    }
}

/// Resource side of an Allow. `all`: it must reach every resource the target
/// names; otherwise one is enough (creating *some* Lambda function).
fn resources_reach(spec: &Spec, target: &str, all: bool) -> bool {
    match spec {
        Spec::Only(ps) if all => ps.iter().any(|p| RESOURCE.covers(p, target)),
        Spec::Only(ps) => ps.iter().any(|p| RESOURCE.overlaps(p, target)),
        Spec::AllBut(xs) if all => !xs.iter().any(|x| RESOURCE.overlaps(x, target)),
        Spec::AllBut(xs) => !xs.iter().any(|x| RESOURCE.covers(x, target)),
    }
}

/// Resource side of a Deny: whether it breaks a grant on `target`. When the
/// whole target is needed (`all`), denying any of it does; otherwise only
/// denying all of it does.
fn resources_deny(spec: &Spec, target: &str, all: bool) -> bool {
    match spec {
        Spec::Only(ps) if all => ps.iter().any(|p| RESOURCE.overlaps(p, target)),
        Spec::Only(ps) => ps.iter().any(|p| RESOURCE.covers(p, target)),
        Spec::AllBut(xs) if all => !xs.iter().any(|x| RESOURCE.covers(x, target)),
        Spec::AllBut(xs) => !xs.iter().any(|x| RESOURCE.overlaps(x, target)),
    }
}

/// Resource side of a Deny: it denies every resource the target names.
fn resources_cover(spec: &Spec, target: &str) -> bool {
    resources_deny(spec, target, false)
}

// ---------------------------------------------------------------------------
// Effective permissions: identity policies, boundary, explicit denies
// ---------------------------------------------------------------------------

/// Whom documents are evaluated for: fills the targets of escalation
/// methods (`{self}`, its groups, the policies it holds) and the
/// `${aws:username}` policy variable. [`Subject::default`] is a policy on its
/// own: partition `aws`, any account, no self.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// `aws`, `aws-cn`, …; empty means `aws`.
    pub partition: &'a str,
    /// The account the escalation targets live in; empty means any (`*`).
    pub account: &'a str,
    /// The identity's own ARN.
    pub arn: Option<&'a str>,
    /// The user name, for `${aws:username}` (users only).
    pub user_name: Option<&'a str>,
    /// ARNs of the groups it is a member of.
    pub groups: &'a [String],
    /// ARNs of the managed policies it holds (directly or through groups).
    pub policies: &'a [String],
    /// ARNs of the groups of its account whose policies are
    /// admin-equivalent for any member (`{admin_group}`).
    pub admin_groups: &'a [String],
}

impl Subject<'_> {
    fn partition(&self) -> &str {
        if self.partition.is_empty() {
            "aws"
        } else {
            self.partition
        }
    }

    fn account(&self) -> &str {
        if self.account.is_empty() {
            "*"
        } else {
            self.account
        }
    }

    /// `arn:<partition>:*:*:*:*`: every resource of the partition.
    fn every_resource(&self) -> String {
        format!("arn:{}:*:*:*:*", self.partition())
    }

    /// Concrete resource patterns for a method target template.
    fn targets(&self, on: &str) -> Vec<String> {
        match on {
            "{self}" => self.arn.map(str::to_string).into_iter().collect(),
            "{group}" => self.groups.to_vec(),
            "{held}" => self.policies.to_vec(),
            "{admin_group}" => self.admin_groups.to_vec(),
            "{all}" => vec![self.every_resource()],
            t => vec![t
                .replace("{p}", self.partition())
                .replace("{a}", self.account())],
        }
    }

    /// Resource patterns with the policy variables we can resolve
    /// (`${aws:username}`); others stay literal and match nothing.
    fn resolve_spec<'s>(&self, spec: &'s Spec) -> std::borrow::Cow<'s, Spec> {
        let resolve = |ps: &[String]| -> Vec<String> {
            ps.iter()
                .map(|p| match self.user_name {
                    Some(u) => p.replace("${aws:username}", u),
                    None => p.clone(),
                })
                .collect()
        };
        let has_var = |ps: &[String]| ps.iter().any(|p| p.contains("${"));
        match spec {
            Spec::Only(ps) if has_var(ps) => std::borrow::Cow::Owned(Spec::Only(resolve(ps))),
            Spec::AllBut(ps) if has_var(ps) => std::borrow::Cow::Owned(Spec::AllBut(resolve(ps))),
            _ => std::borrow::Cow::Borrowed(spec),
        }
    }
}

/// Everything one identity holds, and its permissions boundary: what
/// effective-permission questions are asked of. The effective allow is
/// (identity policies) ∩ (boundary), minus every unconditional explicit Deny
/// of either.
#[derive(Debug, Clone, Copy)]
pub struct Permissions<'a> {
    /// Every identity policy: inline, managed, and those of its groups
    /// (borrowed: principals share documents).
    pub policies: &'a [&'a PolicyDocument],
    /// The permissions boundary's document, if one is set.
    pub boundary: Option<&'a PolicyDocument>,
    /// Who holds them.
    pub subject: Subject<'a>,
}

impl<'a> Permissions<'a> {
    /// Documents on their own, no boundary, no subject.
    pub fn of(policies: &'a [&'a PolicyDocument]) -> Permissions<'a> {
        Permissions {
            policies,
            boundary: None,
            subject: Subject::default(),
        }
    }

    fn statements(&self) -> impl Iterator<Item = &'a Statement> + 'a {
        self.policies
            .iter()
            .copied()
            .chain(self.boundary)
            .flat_map(|d| &d.statements)
    }

    /// Whether an Allow in `docs` grants `action` (a pattern) on `target`:
    /// `Some(conditional)`, preferring an unconditional statement.
    fn allowed_in<'d>(
        &self,
        docs: impl Iterator<Item = &'d PolicyDocument>,
        action: &str,
        target: &str,
        all: bool,
    ) -> Option<bool> {
        let mut best = None;
        for s in docs.flat_map(|d| &d.statements) {
            if s.effect != Effect::Allow || !s.actions_cover(action) {
                continue;
            }
            let reach = resources_reach(&self.subject.resolve_spec(&s.resources), target, all);
            if reach {
                if !s.has_condition {
                    return Some(false);
                }
                best = Some(true);
            }
        }
        best
    }

    /// Whether `action` (a pattern) is effectively allowed on `target` (a
    /// resource pattern): on all of it when `all`, else on some of it.
    /// `Some(true)` when only conditional Allow statements grant it.
    pub fn grant(&self, action: &str, target: &str, all: bool) -> Option<bool> {
        let mut conditional =
            self.allowed_in(self.policies.iter().copied(), action, target, all)?;
        if let Some(b) = self.boundary {
            conditional |= self.allowed_in(std::iter::once(b), action, target, all)?;
        }
        let denied = self.statements().any(|s| {
            s.effect == Effect::Deny
                && !s.has_condition
                && s.actions_touch(action)
                && resources_deny(&self.subject.resolve_spec(&s.resources), target, all)
        });
        (!denied).then_some(conditional)
    }

    /// Whether `action` is effectively allowed on every resource `target` names.
    pub fn allows(&self, action: &str, target: &str) -> bool {
        self.grant(action, target, true).is_some()
    }
}

// ---------------------------------------------------------------------------
// Privilege-escalation methods
// ---------------------------------------------------------------------------

/// One (action, resource) alternative of a [`Method`] step.
#[derive(Debug)]
pub struct Alt {
    /// The IAM action (or `*:*`).
    pub action: &'static str,
    /// Target template: `{self}`, `{group}` (any of its groups), `{held}`
    /// (any managed policy it holds), `{admin_group}` (any admin-equivalent
    /// group of its account), `{all}` (every resource), or a
    /// resource pattern where `{p}` is the partition and `{a}` the account.
    pub on: &'static str,
    /// Whether the whole target must be allowed (IAM objects the holder does
    /// not choose) or some of it is enough (a compute resource it creates).
    pub all: bool,
}

/// A published way to become administrator: every step must be
/// effectively allowed; a step is when any of its alternatives is.
#[derive(Debug)]
pub struct Method {
    /// What findings say made the identity admin-equivalent.
    pub name: &'static str,
    /// The steps.
    pub steps: &'static [&'static [Alt]],
}

const fn on(action: &'static str, on: &'static str) -> Alt {
    Alt {
        action,
        on,
        all: true,
    }
}

const fn some(action: &'static str, on: &'static str) -> Alt {
    Alt {
        action,
        on,
        all: false,
    }
}

const USERS: &str = "arn:{p}:iam::{a}:user/*";
const GROUPS: &str = "arn:{p}:iam::{a}:group/*";
const ROLES: &str = "arn:{p}:iam::{a}:role/*";
const POLICIES: &str = "arn:{p}:iam::{a}:policy/*";
/// Passing any role of the account to a service that runs code under it.
const PASS_ROLE: &[Alt] = &[on("iam:PassRole", ROLES)];

/// Admin-equivalence, as data: full access first, then the IAM
/// privilege-escalation methods (Rhino Security Labs' list and its
/// successors). Targets are chosen so that a method applies when its
/// resource scope reaches what the escalation needs:
/// - policy and boundary changes count on the identity itself (`{self}`,
///   its groups, the policies it holds) or on every object of the kind;
/// - acting as *another* principal (access keys, login profiles, trust
///   changes) counts only on every object of the kind: one named user or
///   role is that principal's privilege, not admin (see [`acts_as`]);
/// - joining a group counts on every group, or on one whose policies are
///   admin-equivalent;
/// - `iam:PassRole` must cover every role of the account; the compute step
///   only needs to reach some resource of the service (the holder creates
///   it). `iam:PassRole` alone, or a compute action alone, is never admin.
pub const METHODS: &[Method] = &[
    Method {
        name: "*:* on every resource",
        steps: &[&[on("*:*", "{all}")]],
    },
    Method {
        name: "iam:CreatePolicyVersion",
        steps: &[&[
            on("iam:CreatePolicyVersion", "{held}"),
            on("iam:CreatePolicyVersion", POLICIES),
        ]],
    },
    Method {
        name: "iam:SetDefaultPolicyVersion",
        steps: &[&[
            on("iam:SetDefaultPolicyVersion", "{held}"),
            on("iam:SetDefaultPolicyVersion", POLICIES),
        ]],
    },
    Method {
        name: "iam:PutUserPolicy",
        steps: &[&[
            on("iam:PutUserPolicy", "{self}"),
            on("iam:PutUserPolicy", USERS),
        ]],
    },
    Method {
        name: "iam:PutGroupPolicy",
        steps: &[&[
            on("iam:PutGroupPolicy", "{group}"),
            on("iam:PutGroupPolicy", GROUPS),
        ]],
    },
    Method {
        name: "iam:PutRolePolicy",
        steps: &[&[
            on("iam:PutRolePolicy", "{self}"),
            on("iam:PutRolePolicy", ROLES),
        ]],
    },
    Method {
        name: "iam:AttachUserPolicy",
        steps: &[&[
            on("iam:AttachUserPolicy", "{self}"),
            on("iam:AttachUserPolicy", USERS),
        ]],
    },
    Method {
        name: "iam:AttachGroupPolicy",
        steps: &[&[
            on("iam:AttachGroupPolicy", "{group}"),
            on("iam:AttachGroupPolicy", GROUPS),
        ]],
    },
    Method {
        name: "iam:AttachRolePolicy",
        steps: &[&[
            on("iam:AttachRolePolicy", "{self}"),
            on("iam:AttachRolePolicy", ROLES),
        ]],
    },
    Method {
        name: "iam:AddUserToGroup",
        steps: &[&[
            on("iam:AddUserToGroup", "{admin_group}"),
            on("iam:AddUserToGroup", GROUPS),
        ]],
    },
    Method {
        name: "iam:CreateLoginProfile",
        steps: &[&[on("iam:CreateLoginProfile", USERS)]],
    },
    Method {
        name: "iam:UpdateLoginProfile",
        steps: &[&[on("iam:UpdateLoginProfile", USERS)]],
    },
    Method {
        name: "iam:CreateAccessKey",
        steps: &[&[on("iam:CreateAccessKey", USERS)]],
    },
    Method {
        name: "iam:UpdateAssumeRolePolicy",
        steps: &[&[on("iam:UpdateAssumeRolePolicy", ROLES)]],
    },
    Method {
        name: "iam:PutUserPermissionsBoundary",
        steps: &[&[
            on("iam:PutUserPermissionsBoundary", "{self}"),
            on("iam:PutUserPermissionsBoundary", USERS),
        ]],
    },
    Method {
        name: "iam:DeleteUserPermissionsBoundary",
        steps: &[&[
            on("iam:DeleteUserPermissionsBoundary", "{self}"),
            on("iam:DeleteUserPermissionsBoundary", USERS),
        ]],
    },
    Method {
        name: "iam:PutRolePermissionsBoundary",
        steps: &[&[
            on("iam:PutRolePermissionsBoundary", "{self}"),
            on("iam:PutRolePermissionsBoundary", ROLES),
        ]],
    },
    Method {
        name: "iam:DeleteRolePermissionsBoundary",
        steps: &[&[
            on("iam:DeleteRolePermissionsBoundary", "{self}"),
            on("iam:DeleteRolePermissionsBoundary", ROLES),
        ]],
    },
    Method {
        name: "iam:PassRole + lambda:CreateFunction + lambda:InvokeFunction or lambda:CreateEventSourceMapping",
        steps: &[
            PASS_ROLE,
            &[some("lambda:CreateFunction", "arn:{p}:lambda:*:{a}:function:*")],
            &[
                some("lambda:InvokeFunction", "arn:{p}:lambda:*:{a}:function:*"),
                some(
                    "lambda:CreateEventSourceMapping",
                    "arn:{p}:lambda:*:{a}:event-source-mapping:*",
                ),
            ],
        ],
    },
    Method {
        name: "iam:PassRole + ec2:RunInstances",
        steps: &[
            PASS_ROLE,
            &[some("ec2:RunInstances", "arn:{p}:ec2:*:{a}:instance/*")],
        ],
    },
    Method {
        name: "iam:PassRole + glue:CreateDevEndpoint",
        steps: &[
            PASS_ROLE,
            &[some("glue:CreateDevEndpoint", "arn:{p}:glue:*:{a}:devEndpoint/*")],
        ],
    },
    Method {
        name: "iam:PassRole + glue:CreateJob + glue:StartJobRun or glue:CreateTrigger",
        steps: &[
            PASS_ROLE,
            &[some("glue:CreateJob", "arn:{p}:glue:*:{a}:job/*")],
            &[
                some("glue:StartJobRun", "arn:{p}:glue:*:{a}:job/*"),
                some("glue:CreateTrigger", "arn:{p}:glue:*:{a}:trigger/*"),
            ],
        ],
    },
    Method {
        name: "iam:PassRole + cloudformation:CreateStack",
        steps: &[
            PASS_ROLE,
            &[some(
                "cloudformation:CreateStack",
                "arn:{p}:cloudformation:*:{a}:stack/*",
            )],
        ],
    },
    Method {
        name: "iam:PassRole + codebuild:CreateProject + codebuild:StartBuild",
        steps: &[
            PASS_ROLE,
            &[some("codebuild:CreateProject", "arn:{p}:codebuild:*:{a}:project/*")],
            &[
                some("codebuild:StartBuild", "arn:{p}:codebuild:*:{a}:project/*"),
                some("codebuild:StartBuildBatch", "arn:{p}:codebuild:*:{a}:project/*"),
            ],
        ],
    },
    Method {
        name: "iam:PassRole + sagemaker:CreateNotebookInstance",
        steps: &[
            PASS_ROLE,
            &[some(
                "sagemaker:CreateNotebookInstance",
                "arn:{p}:sagemaker:*:{a}:notebook-instance/*",
            )],
        ],
    },
    Method {
        name: "iam:PassRole + sagemaker:CreateTrainingJob",
        steps: &[
            PASS_ROLE,
            &[some(
                "sagemaker:CreateTrainingJob",
                "arn:{p}:sagemaker:*:{a}:training-job/*",
            )],
        ],
    },
    Method {
        name: "iam:PassRole + sagemaker:CreateProcessingJob",
        steps: &[
            PASS_ROLE,
            &[some(
                "sagemaker:CreateProcessingJob",
                "arn:{p}:sagemaker:*:{a}:processing-job/*",
            )],
        ],
    },
    Method {
        name: "iam:PassRole + ecs:RunTask or ecs:StartTask",
        steps: &[
            PASS_ROLE,
            &[
                some("ecs:RunTask", "arn:{p}:ecs:*:{a}:task-definition/*"),
                some("ecs:StartTask", "arn:{p}:ecs:*:{a}:task-definition/*"),
            ],
        ],
    },
    Method {
        name: "iam:PassRole + ecs:RegisterTaskDefinition + ecs:CreateService",
        steps: &[
            PASS_ROLE,
            &[some(
                "ecs:RegisterTaskDefinition",
                "arn:{p}:ecs:*:{a}:task-definition/*",
            )],
            &[some("ecs:CreateService", "arn:{p}:ecs:*:{a}:service/*")],
        ],
    },
    Method {
        name: "iam:PassRole + datapipeline:CreatePipeline + datapipeline:PutPipelineDefinition",
        steps: &[
            PASS_ROLE,
            &[some(
                "datapipeline:CreatePipeline",
                "arn:{p}:datapipeline:*:{a}:pipeline/*",
            )],
            &[some(
                "datapipeline:PutPipelineDefinition",
                "arn:{p}:datapipeline:*:{a}:pipeline/*",
            )],
        ],
    },
];

/// Whether `method` is effectively allowed: `Some(conditional)`.
fn method_grant(perms: &Permissions, method: &Method) -> Option<bool> {
    let mut conditional = false;
    for step in method.steps {
        let mut best: Option<bool> = None;
        'alts: for alt in *step {
            for target in perms.subject.targets(alt.on) {
                if let Some(c) = perms.grant(alt.action, &target, alt.all) {
                    best = Some(best.map_or(c, |b| b && c));
                    if !c {
                        break 'alts;
                    }
                }
            }
        }
        conditional |= best?;
    }
    Some(conditional)
}

/// Actions that hand their holder a credential of one named user.
const ACT_AS_USER: &[&str] = &[
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
];

/// Whether the permissions could take over *some* principal of the
/// account: (a user, a role). A cheap filter before [`acts_as`] per target.
pub fn could_act_as(perms: &Permissions) -> (bool, bool) {
    let some = |action: &str, on: &str| {
        perms
            .subject
            .targets(on)
            .iter()
            .any(|t| perms.grant(action, t, false).is_some())
    };
    let users = ACT_AS_USER.iter().any(|a| some(a, USERS));
    let roles = some("iam:UpdateAssumeRolePolicy", ROLES) || some("iam:PassRole", ROLES);
    (users, roles)
}

/// How the permissions let their holder act as one named principal of its
/// account (`target`, a user when `is_user`): a credential of the user
/// ([`ACT_AS_USER`]); for a role, rewriting its trust policy, or passing it
/// to a service that runs code (`iam:PassRole` on it plus the compute steps
/// of a PassRole method of [`METHODS`]). The action or method name, if any.
/// This is acting as that principal, with its privilege: a trust edge, not
/// admin-equivalence in itself.
pub fn acts_as(perms: &Permissions, target: &str, is_user: bool) -> Option<&'static str> {
    if is_user {
        return ACT_AS_USER
            .iter()
            .copied()
            .find(|a| perms.grant(a, target, true).is_some());
    }
    if perms
        .grant("iam:UpdateAssumeRolePolicy", target, true)
        .is_some()
    {
        return Some("iam:UpdateAssumeRolePolicy");
    }
    perms.grant("iam:PassRole", target, true)?;
    METHODS
        .iter()
        .filter(|m| m.name.starts_with("iam:PassRole + "))
        .find(|m| {
            let compute = Method {
                name: m.name,
                steps: m.steps.get(1..).unwrap_or_default(),
            };
            method_grant(perms, &compute).is_some()
        })
        .map(|m| m.name)
}

/// The first method of [`METHODS`] the permissions allow (unconditionally
/// if any is), and whether only conditional statements allow it.
pub fn escalation(perms: &Permissions) -> Option<(&'static Method, bool)> {
    let mut conditional = None;
    for m in METHODS {
        match method_grant(perms, m) {
            Some(false) => return Some((m, false)),
            Some(true) if conditional.is_none() => conditional = Some((m, true)),
            _ => {}
        }
    }
    conditional
}

// ---------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------

/// Action-name prefixes (after the service colon) that are read-only.
const READ_PREFIXES: &[&str] = &[
    "get", "list", "describe", "view", "read", "search", "lookup", "batchget", "select",
];

/// What a set of identity policies (everything one principal holds) allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Allowed action patterns after explicit unconditional every-resource Deny subtraction (`*` for NotAction allows); sorted, deduplicated.
    pub actions: Vec<String>,
    /// Resource patterns of the Allow statements that still allow something (dedup, sorted).
    pub resources: Vec<String>,
    /// Read, Write or Admin.
    pub privilege: PrivilegeLevel,
    /// Why it is admin-equivalent, naming the [`Method`]; None unless Admin.
    pub admin_reason: Option<String>,
}

/// Unconditional Deny statements on every resource: the ones that subtract
/// from the listed actions.
fn hard_denies<'a>(stmts: impl Iterator<Item = &'a Statement>, every: &str) -> Vec<&'a Statement> {
    stmts
        .filter(|s| {
            s.effect == Effect::Deny && !s.has_condition && resources_cover(&s.resources, every)
        })
        .collect()
}

/// Whether allowed action pattern `p` is fully removed by one of `denies`.
fn pattern_denied(p: &str, denies: &[&Statement]) -> bool {
    denies.iter().any(|d| match &d.actions {
        Spec::Only(ds) => ds.iter().any(|dp| ACTION.covers(dp, p)),
        // "Deny everything except X" removes `p` when no X can name what it does.
        Spec::AllBut(xs) => !xs.iter().any(|x| ACTION.overlaps(x, p)),
    })
}

fn is_read_only(pattern: &str) -> bool {
    let Some((_, name)) = pattern.split_once(':') else {
        return false;
    };
    let name = name.to_lowercase();
    READ_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn admin_reason(method: &Method, conditional: bool) -> String {
    let suffix = if conditional { " (conditional)" } else { "" };
    format!("admin-equivalent via {}{suffix}", method.name)
}

/// Analyse a policy (or several) on their own, for a holder in no
/// particular account: see [`analyse_for`].
pub fn analyse(docs: &[PolicyDocument]) -> Analysis {
    let refs: Vec<&PolicyDocument> = docs.iter().collect();
    analyse_for(&Permissions::of(&refs))
}

/// Analyse what `perms` allow: the allowed actions and resources (of the
/// identity policies, boundary not applied), and the privilege level with
/// the boundary and every explicit Deny applied: Admin when an escalation
/// [`Method`] is effectively allowed; Write when some non-read action is.
pub fn analyse_for(perms: &Permissions) -> Analysis {
    let every = perms.subject.every_resource();
    let denies = hard_denies(perms.statements(), &every);
    let mut actions = Vec::new();
    let mut resources = Vec::new();
    let mut write = false;
    for stmt in perms.policies.iter().flat_map(|d| &d.statements) {
        if stmt.effect != Effect::Allow {
            continue;
        }
        let raw: Vec<String> = match &stmt.actions {
            Spec::Only(ps) => ps.clone(),
            Spec::AllBut(_) => vec!["*".to_string()],
        };
        let surviving: Vec<String> = raw
            .into_iter()
            .filter(|p| !pattern_denied(p, &denies))
            .collect();
        if surviving.is_empty() {
            continue;
        }
        write |= surviving
            .iter()
            .any(|p| within_boundary(perms.boundary, p).any(|q| !is_read_only(&q)));
        actions.extend(surviving);
        match &stmt.resources {
            Spec::Only(rs) => resources.extend(rs.iter().cloned()),
            Spec::AllBut(_) => resources.push("*".to_string()),
        }
    }
    actions.sort();
    actions.dedup();
    resources.sort();
    resources.dedup();
    let (privilege, admin_reason) = match escalation(perms) {
        Some((m, conditional)) => (PrivilegeLevel::Admin, Some(admin_reason(m, conditional))),
        None if write => (PrivilegeLevel::Write, None),
        None => (PrivilegeLevel::Read, None),
    };
    Analysis {
        actions,
        resources,
        privilege,
        admin_reason,
    }
}

/// The privilege level of `perms` and why it is admin, without listing
/// actions: what a principal as a whole is assessed by (see [`analyse_for`]).
pub fn assess(perms: &Permissions) -> (PrivilegeLevel, Option<String>) {
    if let Some((m, conditional)) = escalation(perms) {
        return (PrivilegeLevel::Admin, Some(admin_reason(m, conditional)));
    }
    let every = perms.subject.every_resource();
    let denies = hard_denies(perms.statements(), &every);
    let write = perms
        .policies
        .iter()
        .flat_map(|d| &d.statements)
        .filter(|s| s.effect == Effect::Allow)
        .flat_map(|s| match &s.actions {
            Spec::Only(ps) => ps.iter().map(String::as_str).collect::<Vec<_>>(),
            Spec::AllBut(_) => vec!["*"],
        })
        .any(|p| {
            !is_read_only(p)
                && !pattern_denied(p, &denies)
                && within_boundary(perms.boundary, p).any(|q| !is_read_only(&q))
        });
    let level = if write {
        PrivilegeLevel::Write
    } else {
        PrivilegeLevel::Read
    };
    (level, None)
}

/// What is left of allowed action pattern `p` inside the boundary's Allow
/// statements: the narrower of two nested patterns, `p` itself when they
/// merely overlap (an over-approximation), nothing when disjoint.
fn within_boundary<'a>(
    boundary: Option<&'a PolicyDocument>,
    p: &'a str,
) -> Box<dyn Iterator<Item = String> + 'a> {
    let Some(b) = boundary else {
        return Box::new(std::iter::once(p.to_string()));
    };
    Box::new(
        b.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .flat_map(move |s| match &s.actions {
                Spec::Only(bs) => bs
                    .iter()
                    .filter(|q| ACTION.overlaps(q, p))
                    .map(|q| {
                        if ACTION.covers(p, q) {
                            q.clone()
                        } else {
                            p.to_string()
                        }
                    })
                    .collect::<Vec<_>>(),
                Spec::AllBut(xs) if !xs.iter().any(|x| ACTION.covers(x, p)) => vec![p.to_string()],
                Spec::AllBut(_) => Vec::new(),
            }),
    )
}

/// Whether the documents allow `action` on `resource` (an ARN); conditions assumed met on Allow, ignored on Deny.
pub fn allows(docs: &[PolicyDocument], action: &str, resource: &str) -> bool {
    let refs: Vec<&PolicyDocument> = docs.iter().collect();
    Permissions::of(&refs).allows(action, resource)
}

// ---------------------------------------------------------------------------
// Trust policies
// ---------------------------------------------------------------------------

const ASSUME_ROLE: &str = "sts:AssumeRole";

/// How a statement's principals match a given principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrustMatch {
    /// Does not match.
    None,
    /// Matches via `*`, the account id or the account root ARN.
    AccountWide,
    /// Names the principal (exact ARN or an ARN pattern matching it).
    Named,
}

/// Whether `entry` is `arn:<partition>:iam::<account>:root`.
fn is_account_root(entry: &str, account: &str) -> bool {
    let parts: Vec<&str> = entry.split(':').collect();
    matches!(parts.as_slice(), ["arn", _, "iam", "", acct, "root"] if *acct == account)
}

fn principal_match(stmt: &Statement, principal_arn: &str, account: &str) -> TrustMatch {
    let Some(p) = &stmt.principals else {
        return TrustMatch::None;
    };
    let mut result = if p.any {
        TrustMatch::AccountWide
    } else {
        TrustMatch::None
    };
    for entry in &p.aws {
        if entry.contains(':') && RESOURCE.matches(entry, principal_arn) {
            return TrustMatch::Named;
        }
        if entry == "*" || entry == account || is_account_root(entry, account) {
            result = TrustMatch::AccountWide;
        }
    }
    result
}

/// Best match among admitting Allow statements, or None if denied / not admitted.
fn trust_match(trust: &PolicyDocument, principal_arn: &str, account: &str) -> TrustMatch {
    let relevant = |s: &&Statement| spec_matches(&s.actions, ASSUME_ROLE, ACTION);
    let denied = trust
        .statements
        .iter()
        .filter(relevant)
        .filter(|s| s.effect == Effect::Deny && !s.has_condition)
        .any(|s| principal_match(s, principal_arn, account) != TrustMatch::None);
    if denied {
        return TrustMatch::None;
    }
    trust
        .statements
        .iter()
        .filter(relevant)
        .filter(|s| s.effect == Effect::Allow)
        .map(|s| principal_match(s, principal_arn, account))
        .fold(TrustMatch::None, |acc, m| match (acc, m) {
            (TrustMatch::Named, _) | (_, TrustMatch::Named) => TrustMatch::Named,
            (TrustMatch::AccountWide, _) | (_, TrustMatch::AccountWide) => TrustMatch::AccountWide,
            _ => TrustMatch::None,
        })
}

/// Whether a role trust policy lets `principal_arn` (in `principal_account`) call sts:AssumeRole.
pub fn trust_admits(trust: &PolicyDocument, principal_arn: &str, principal_account: &str) -> bool {
    trust_match(trust, principal_arn, principal_account) != TrustMatch::None
}

/// Whether the trust admits the principal only account-wide (via `*`, account id or `:root`), not by name.
pub fn trust_is_account_wide(
    trust: &PolicyDocument,
    principal_arn: &str,
    principal_account: &str,
) -> bool {
    trust_match(trust, principal_arn, principal_account) == TrustMatch::AccountWide
}

/// What a role's trust admits through one OIDC identity provider for
/// `sts:AssumeRoleWithWebIdentity`: the role's federated credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentityTrust {
    /// The `Federated` principal as written: the provider's ARN
    /// (`arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com`)
    /// or a well-known provider's name (`accounts.google.com`).
    pub provider: String,
    /// The provider's host and path, the prefix of its condition keys
    /// (`token.actions.githubusercontent.com`,
    /// `oidc.eks.eu-west-1.amazonaws.com/id/ABC`).
    pub host: String,
    /// Subjects admitted (`{host}:sub` values, `*`/`?` wildcards under
    /// `StringLike`); empty: the subject is not constrained.
    pub subjects: Vec<String>,
    /// Audiences admitted (`{host}:aud`); empty: not constrained.
    pub audiences: Vec<String>,
}

/// The OIDC providers a trust policy admits for web identity, one entry per
/// provider, statements for the same provider merged: if any statement
/// leaves the subject (or audience) unconstrained, so does the trust.
/// SAML providers are not OIDC and are left out; so are Deny statements (a
/// deny can only narrow, so the trust reported is never narrower than the
/// real one).
pub fn web_identity_trusts(trust: &PolicyDocument) -> Vec<WebIdentityTrust> {
    const ACTION_NAME: &str = "sts:AssumeRoleWithWebIdentity";
    let mut out: Vec<(WebIdentityTrust, bool, bool)> = Vec::new();
    for s in trust
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
    {
        let Some(p) = &s.principals else { continue };
        if !spec_matches(&s.actions, ACTION_NAME, ACTION) {
            continue;
        }
        for provider in &p.federated {
            let host = match provider.split_once(":oidc-provider/") {
                Some((_, host)) if provider.starts_with("arn:") => host,
                _ if provider.starts_with("arn:") => continue,
                _ => provider.as_str(),
            };
            if host.is_empty() {
                continue;
            }
            let bound = |claim: &str| -> Option<Vec<String>> {
                let key = format!("{host}:{claim}");
                let mut values: Option<Vec<String>> = None;
                for c in s
                    .conditions
                    .iter()
                    .filter(|c| c.key.eq_ignore_ascii_case(&key) && c.admits_only_its_values())
                {
                    values.get_or_insert_with(Vec::new).extend(c.values.clone());
                }
                values
            };
            let (subjects, audiences) = (bound("sub"), bound("aud"));
            // A bound with no value admits nothing: the statement grants nothing.
            if subjects.as_ref().is_some_and(Vec::is_empty)
                || audiences.as_ref().is_some_and(Vec::is_empty)
            {
                continue;
            }
            let at = match out.iter().position(|(t, _, _)| t.provider == *provider) {
                Some(i) => i,
                None => {
                    out.push((
                        WebIdentityTrust {
                            provider: provider.clone(),
                            host: host.to_string(),
                            subjects: Vec::new(),
                            audiences: Vec::new(),
                        },
                        false,
                        false,
                    ));
                    out.len() - 1
                }
            };
            let (t, sub_open, aud_open) = &mut out[at];
            match subjects {
                Some(v) => t.subjects.extend(v),
                None => *sub_open = true,
            }
            match audiences {
                Some(v) => t.audiences.extend(v),
                None => *aud_open = true,
            }
        }
    }
    out.into_iter()
        .map(|(mut t, sub_open, aud_open)| {
            for (open, list) in [(sub_open, &mut t.subjects), (aud_open, &mut t.audiences)] {
                if open {
                    list.clear();
                } else {
                    list.sort();
                    list.dedup();
                }
            }
            t
        })
        .collect()
}

/// What a role's trust admits through `sts:AssumeRole` from beyond its own
/// account: the principals of another account, or anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalTrust {
    /// The account trusted; `None`: anyone (`"Principal": "*"`,
    /// `{"AWS": "*"}`, an Allow with `NotPrincipal`).
    pub account: Option<String>,
    /// The principals admitted, as written (`arn:aws:iam::999988887777:root`,
    /// an account id, a role ARN, `*`), sorted.
    pub principals: Vec<String>,
    /// Condition keys every admitting statement requires a value of, as
    /// first written (see [`requires_value`]), sorted.
    pub required: Vec<String>,
}

/// Whether a condition makes its key required: a positive match
/// (`StringEquals`, `StringLike`, `StringEqualsIgnoreCase`, `ArnEquals`,
/// `ArnLike`, alone or `ForAnyValue:`) whose every value is more than
/// wildcards — for an ARN, more than wildcards in its account too.
/// `...IfExists` admits callers without the key, `ForAllValues:` admits an
/// empty set, a negated operator admits every other value, a bare `*` any
/// value and `arn:aws:iam::*:role/x` that role name in any account: none
/// of them requires anything.
pub fn requires_value(c: &Condition) -> bool {
    if c.operator.ends_with("IfExists") || c.operator.starts_with("ForAllValues:") {
        return false;
    }
    let op = c
        .operator
        .strip_prefix("ForAnyValue:")
        .unwrap_or(&c.operator);
    matches!(
        op,
        "StringEquals" | "StringLike" | "StringEqualsIgnoreCase" | "ArnEquals" | "ArnLike"
    ) && !c.values.is_empty()
        && c.values.iter().all(|v| {
            let wild = |part: &str| part.chars().all(|ch| ch == '*' || ch == '?');
            let any_account = v.starts_with("arn:") && v.split(':').nth(4).is_none_or(wild);
            !wild(v) && !any_account
        })
}

/// The trusts of a role (in `own_account`) to other accounts and to anyone
/// for `sts:AssumeRole`, one entry per account (and one for anyone),
/// statements merged: a key is required only if every statement admitting
/// that account requires it. Trusts to the role's own account are the
/// account's own principals (assume-role edges), not federation; Deny
/// statements are left out (a deny can only narrow, so the trust reported
/// is never narrower than the real one). A principal ARN whose account is
/// a wildcard counts as anyone.
pub fn principal_trusts(trust: &PolicyDocument, own_account: &str) -> Vec<PrincipalTrust> {
    let mut out: Vec<PrincipalTrust> = Vec::new();
    for s in trust
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
        .filter(|s| spec_matches(&s.actions, ASSUME_ROLE, ACTION))
    {
        let mut admitted: Vec<(Option<String>, String)> = Vec::new();
        if s.not_principal {
            admitted.push((None, "NotPrincipal".into()));
        }
        if let Some(p) = &s.principals {
            if p.any {
                admitted.push((None, "*".into()));
            }
            for entry in &p.aws {
                let is_id = entry.len() == 12 && entry.bytes().all(|b| b.is_ascii_digit());
                let account = if entry == "*" {
                    None
                } else if is_id {
                    Some(entry.clone())
                } else {
                    match entry.split(':').nth(4) {
                        Some(a) if a.contains(['*', '?']) => None,
                        Some(a) if !a.is_empty() => Some(a.to_string()),
                        // Not an ARN IAM accepts (a unique id of a deleted
                        // principal, `AIDA…`): it admits nobody new.
                        _ => continue,
                    }
                };
                if account.as_deref() == Some(own_account) {
                    continue;
                }
                admitted.push((account, entry.clone()));
            }
        }
        let required: Vec<String> = s
            .conditions
            .iter()
            .filter(|c| requires_value(c))
            .map(|c| c.key.clone())
            .collect();
        for (account, principal) in admitted {
            match out.iter_mut().find(|t| t.account == account) {
                Some(t) => {
                    t.principals.push(principal);
                    t.required
                        .retain(|k| required.iter().any(|r| r.eq_ignore_ascii_case(k)));
                }
                None => out.push(PrincipalTrust {
                    account,
                    principals: vec![principal],
                    required: required.clone(),
                }),
            }
        }
    }
    for t in &mut out {
        t.principals.sort();
        t.principals.dedup();
        t.required.sort_by_key(|k| k.to_ascii_lowercase());
        t.required.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    }
    out
}

/// Whether a role's trust admits anyone at all: an Allow statement for one
/// of the `sts:AssumeRole*` actions with a principal (or `NotPrincipal`).
/// A role whose trust admits nobody cannot be assumed.
pub fn trust_admits_anyone(trust: &PolicyDocument) -> bool {
    const ACTIONS: [&str; 3] = [
        ASSUME_ROLE,
        "sts:AssumeRoleWithWebIdentity",
        "sts:AssumeRoleWithSAML",
    ];
    trust.statements.iter().any(|s| {
        s.effect == Effect::Allow
            && ACTIONS.iter().any(|a| spec_matches(&s.actions, a, ACTION))
            && (s.not_principal
                || s.principals.as_ref().is_some_and(|p| {
                    p.any || !p.aws.is_empty() || !p.service.is_empty() || !p.federated.is_empty()
                }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCT: &str = "123456789012";
    const USER: &str = "arn:aws:iam::123456789012:user/ci-bot";
    const ROLE: &str = "arn:aws:iam::123456789012:role/deployer";

    fn doc(v: Value) -> PolicyDocument {
        parse_value(&v).expect("valid test policy")
    }

    fn allow(action: Value, resource: Value) -> PolicyDocument {
        doc(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": action, "Resource": resource}
        ]}))
    }

    fn trust(principal: Value) -> PolicyDocument {
        doc(json!({"Statement": [
            {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
        ]}))
    }

    // --- parsing -----------------------------------------------------------

    #[test]
    fn url_encoded_administrator_access_is_admin() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
        let d = parse(encoded).expect("parses");
        assert_eq!(d.statements.len(), 1);
        let a = analyse(&[d]);
        assert_eq!(a.privilege, PrivilegeLevel::Admin);
        assert_eq!(
            a.admin_reason.as_deref(),
            Some("admin-equivalent via *:* on every resource")
        );
        assert_eq!(a.actions, vec!["*"]);
        assert_eq!(a.resources, vec!["*"]);
    }

    #[test]
    fn url_decoding_keeps_plus() {
        let encoded = "%7B%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGetObject%22%2C%22Resource%22%3A%22arn%3Aaws%3As3%3A%3A%3Aa+b%2Fc%22%7D%7D";
        let d = parse(encoded).expect("parses");
        assert_eq!(
            d.statements[0].resources,
            Spec::Only(vec!["arn:aws:s3:::a+b/c".into()])
        );
    }

    #[test]
    fn plain_json_parses_and_is_not_decoded() {
        // A literal "%22" inside plain JSON must survive untouched.
        let d = parse(
            r#" {"Statement":{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::x%22y"}}"#,
        )
        .expect("parses");
        assert_eq!(d.statements[0].effect, Effect::Deny);
        assert_eq!(
            d.statements[0].resources,
            Spec::Only(vec!["arn:aws:s3:::x%22y".into()])
        );
    }

    #[test]
    fn string_and_array_forms_are_equivalent() {
        let s = allow(json!("s3:GetObject"), json!("arn:aws:s3:::b/*"));
        let a = allow(json!(["s3:GetObject"]), json!(["arn:aws:s3:::b/*"]));
        assert_eq!(s, a);
        assert_eq!(
            s.statements[0].actions,
            Spec::Only(vec!["s3:GetObject".into()])
        );
    }

    #[test]
    fn statement_object_and_array_forms_are_equivalent() {
        let stmt = json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"});
        let obj = doc(json!({"Statement": stmt.clone()}));
        let arr = doc(json!({"Statement": [stmt]}));
        assert_eq!(obj, arr);
        assert_eq!(obj.statements.len(), 1);
    }

    #[test]
    fn not_action_not_resource_and_defaults() {
        let d = doc(json!({"Statement": [{
            "Effect": "Allow", "NotAction": "iam:*", "NotResource": ["arn:aws:s3:::secret"],
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
        }, {
            "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"
        }, {
            "Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "sts:AssumeRole"
        }]}));
        let s = &d.statements;
        assert_eq!(s[0].actions, Spec::AllBut(vec!["iam:*".into()]));
        assert_eq!(
            s[0].resources,
            Spec::AllBut(vec!["arn:aws:s3:::secret".into()])
        );
        assert!(s[0].has_condition);
        assert_eq!(s[1].resources, Spec::Only(vec!["*".into()]));
        assert_eq!(
            s[1].principals.as_ref().map(|p| p.service.clone()),
            Some(vec!["ec2.amazonaws.com".to_string()])
        );
        assert!(!s[1].has_condition);
        assert!(s[2].not_principal);
        assert_eq!(s[2].principals, None);
    }

    #[test]
    fn web_identity_trusts_read_subjects_and_audiences_per_provider() {
        const GH: &str =
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com";
        const EKS: &str =
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Principal": {"Federated": GH},
             "Action": "sts:AssumeRoleWithWebIdentity",
             "Condition": {
                "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
                "StringLike": {"Token.Actions.GithubUserContent.com:sub": ["repo:org/app:ref:refs/heads/main"]}}},
            {"Effect": "Allow", "Principal": {"Federated": GH},
             "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
             "Condition": {"ForAnyValue:StringLike": {"token.actions.githubusercontent.com:sub": ["repo:org/*", 7]}}},
            {"Effect": "Allow", "Principal": {"Federated": [EKS, "arn:aws:iam::123456789012:saml-provider/okta"]},
             "Action": "sts:AssumeRoleWithWebIdentity",
             "Condition": {"StringNotEquals": {"oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub": "system:serviceaccount:kube-system:x"}}},
            {"Effect": "Allow", "Principal": {"Federated": "accounts.google.com"},
             "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"AWS": USER}, "Action": "sts:AssumeRole"}
        ]}));
        assert_eq!(
            d.statements[0].conditions[0],
            Condition {
                operator: "StringEquals".into(),
                key: "token.actions.githubusercontent.com:aud".into(),
                values: vec!["sts.amazonaws.com".into()],
            }
        );
        let t = web_identity_trusts(&d);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[0].provider, GH);
        assert_eq!(t[0].host, "token.actions.githubusercontent.com");
        assert_eq!(
            t[0].subjects,
            vec!["7", "repo:org/*", "repo:org/app:ref:refs/heads/main"]
        );
        // The second statement constrains no audience: neither does the trust.
        assert!(t[0].audiences.is_empty());
        // Only a negated condition on the subject: unconstrained.
        assert_eq!(t[1].host, "oidc.eks.eu-west-1.amazonaws.com/id/ABC");
        assert!(t[1].subjects.is_empty());
    }

    #[test]
    fn missing_or_bad_effect_is_error() {
        let missing = parse(r#"{"Statement":[{"Action":"s3:*","Resource":"*"}]}"#);
        assert!(matches!(missing, Err(PolicyError::Invalid(m)) if m.contains("missing Effect")));
        let bad = parse(r#"{"Statement":[{"Effect":"Maybe","Action":"s3:*"}]}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn statement_without_action_is_error() {
        assert!(parse(r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#).is_err());
        assert!(parse(r#"{"Statement":{"Effect":"Allow","Action":7}}"#).is_err());
        assert!(parse(r#"{"Statement":{"Effect":"Allow","Action":["s3:*",1]}}"#).is_err());
        assert!(parse("not json").is_err());
        assert!(parse("%7B%22oops").is_err());
        assert!(parse("[]").is_err());
    }

    // --- glob helpers ------------------------------------------------------

    #[test]
    fn glob_and_covers() {
        assert!(ACTION.matches("S3:get*", "s3:GetObject"));
        assert!(ACTION.matches("s3:Get?bject", "s3:GetObject"));
        assert!(!ACTION.matches("s3:Get", "s3:GetObject"));
        assert!(!RESOURCE.matches("arn:aws:s3:::B/*", "arn:aws:s3:::b/k"));
        assert!(ACTION.covers("s3:*", "s3:Get*"));
        assert!(ACTION.covers("*", "s3:*"));
        assert!(ACTION.covers("S3:GET*", "s3:GetObject"));
        assert!(!ACTION.covers("s3:GetObject", "s3:Get*"));
        assert!(!ACTION.covers("s3:Get*", "s3:*"));
        assert!(ACTION.covers("s3:Get?bject", "s3:GetObject"));
        assert!(!ACTION.covers("s3:Get?bject", "s3:Get*bject"));
        assert!(ACTION.covers("iam:*Policy", "iam:Put*Policy"));
    }

    // --- analyse -----------------------------------------------------------

    #[test]
    fn deny_covering_allow_removes_it() {
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
        ]}));
        let a = analyse(&[d]);
        assert!(a.actions.is_empty());
        assert!(a.resources.is_empty());
        assert_eq!(a.privilege, PrivilegeLevel::Read);
        assert_eq!(a.admin_reason, None);
    }

    #[test]
    fn partial_deny_keeps_pattern() {
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
        ]}));
        let a = analyse(&[d]);
        assert_eq!(a.actions, vec!["s3:*"]);
        assert_eq!(a.privilege, PrivilegeLevel::Write);
    }

    #[test]
    fn conditional_or_scoped_deny_does_not_subtract() {
        let cond = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
        ]}));
        assert_eq!(analyse(&[cond]).actions, vec!["s3:*"]);
        let scoped = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b"}
        ]}));
        assert_eq!(analyse(&[scoped]).actions, vec!["s3:*"]);
    }

    #[test]
    fn deny_in_one_document_subtracts_from_another() {
        let a = analyse(&[
            allow(json!(["s3:GetObject", "ec2:StartInstances"]), json!("*")),
            doc(json!({"Statement": {"Effect": "Deny", "Action": "ec2:*", "Resource": "*"}})),
        ]);
        assert_eq!(a.actions, vec!["s3:GetObject"]);
        assert_eq!(a.privilege, PrivilegeLevel::Read);
    }

    #[test]
    fn pass_role_alone_is_not_admin() {
        let a = analyse(&[allow(json!("iam:PassRole"), json!("*"))]);
        assert_eq!(a.privilege, PrivilegeLevel::Write);
        assert_eq!(a.admin_reason, None);
    }

    #[test]
    fn escalation_via_wildcard_pattern_is_admin() {
        let a = analyse(&[allow(json!("iam:Put*"), json!("*"))]);
        assert_eq!(a.privilege, PrivilegeLevel::Admin);
        assert_eq!(
            a.admin_reason.as_deref(),
            Some("admin-equivalent via iam:PutUserPolicy")
        );
    }

    #[test]
    fn iam_star_is_admin() {
        let a = analyse(&[allow(json!("iam:*"), json!("*"))]);
        assert_eq!(
            a.admin_reason.as_deref(),
            Some("admin-equivalent via iam:CreatePolicyVersion")
        );
    }

    #[test]
    fn pass_role_on_specific_role_is_write_not_admin() {
        let a = analyse(&[allow(json!("iam:PassRole"), json!(ROLE))]);
        assert_eq!(a.privilege, PrivilegeLevel::Write);
        assert_eq!(a.admin_reason, None);
        assert_eq!(a.resources, vec![ROLE]);
    }

    #[test]
    fn denied_escalation_is_not_admin() {
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}
        ]}));
        let a = analyse(&[d]);
        assert_eq!(a.actions, vec!["*"]);
        assert_eq!(a.privilege, PrivilegeLevel::Write);
    }

    #[test]
    fn not_action_excluding_iam_is_write() {
        let d = doc(json!({"Statement": {
            "Effect": "Allow", "NotAction": ["iam:*", "organizations:*"], "Resource": "*"
        }}));
        let a = analyse(&[d]);
        assert_eq!(a.privilege, PrivilegeLevel::Write);
        assert_eq!(a.actions, vec!["*"]);
    }

    #[test]
    fn not_action_without_iam_exclusion_is_admin() {
        let d = doc(json!({"Statement": {
            "Effect": "Allow", "NotAction": ["s3:*"], "Resource": "*"
        }}));
        let a = analyse(&[d]);
        assert_eq!(a.privilege, PrivilegeLevel::Admin);
        assert_eq!(
            a.admin_reason.as_deref(),
            Some("admin-equivalent via iam:CreatePolicyVersion")
        );
        assert_eq!(a.actions, vec!["*"]);
    }

    #[test]
    fn read_only_policy_is_read() {
        let a = analyse(&[allow(
            json!([
                "s3:List*",
                "s3:Get*",
                "dynamodb:BatchGetItem",
                "ec2:describeInstances"
            ]),
            json!(["arn:aws:s3:::b", "arn:aws:s3:::b/*", "arn:aws:s3:::b"]),
        )]);
        assert_eq!(a.privilege, PrivilegeLevel::Read);
        assert_eq!(
            a.actions,
            vec![
                "dynamodb:BatchGetItem",
                "ec2:describeInstances",
                "s3:Get*",
                "s3:List*"
            ]
        );
        assert_eq!(a.resources, vec!["arn:aws:s3:::b", "arn:aws:s3:::b/*"]);
    }

    #[test]
    fn wildcard_service_action_is_write() {
        assert_eq!(
            analyse(&[allow(json!("s3:G*"), json!("*"))]).privilege,
            PrivilegeLevel::Write
        );
    }

    #[test]
    fn empty_input_is_read_with_nothing() {
        let a = analyse(&[]);
        assert_eq!(a.privilege, PrivilegeLevel::Read);
        assert!(a.actions.is_empty() && a.resources.is_empty());
    }

    /// Choice: a conditional Allow of `*:*` is still Admin-equivalent. The
    /// condition (MFA, source IP, time) is usually satisfiable by the holder,
    /// and under-reporting an admin is worse than over-reporting one. The
    /// reason says it was conditional.
    #[test]
    fn conditional_allow_star_is_still_admin() {
        let d = doc(json!({"Statement": {
            "Effect": "Allow", "Action": "*:*", "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
        }}));
        let a = analyse(&[d]);
        assert_eq!(a.privilege, PrivilegeLevel::Admin);
        assert_eq!(
            a.admin_reason.as_deref(),
            Some("admin-equivalent via *:* on every resource (conditional)")
        );
    }

    // --- patterns, denies, boundaries, methods ----------------------------

    fn user_subject(name: &'static str) -> (String, Subject<'static>) {
        let arn = format!("arn:aws:iam::{ACCT}:user/{name}");
        let subject = Subject {
            account: ACCT,
            user_name: Some(name),
            ..Subject::default()
        };
        (arn, subject)
    }

    fn level_of(docs: &[PolicyDocument], boundary: Option<&PolicyDocument>) -> Analysis {
        let (arn, mut subject) = user_subject("ci-bot");
        subject.arn = Some(&arn);
        let refs: Vec<&PolicyDocument> = docs.iter().collect();
        analyse_for(&Permissions {
            policies: &refs,
            boundary,
            subject,
        })
    }

    #[test]
    fn overlaps_is_glob_intersection() {
        assert!(RESOURCE.overlaps("arn:aws:iam::1:user/*", "arn:aws:iam::*:user/a"));
        assert!(ACTION.overlaps("*:Get*", "s3:*"));
        assert!(!ACTION.overlaps("s3:*", "iam:*"));
        assert!(!RESOURCE.overlaps("arn:aws:iam::1:user/*", "arn:aws:iam::1:role/*"));
        assert!(RESOURCE.overlaps("a?c", "*c"));
        assert!(!RESOURCE.overlaps("ab", "a"));
    }

    #[test]
    fn every_resource_is_a_pattern_not_a_literal_star() {
        for r in ["*", "arn:aws:*", "arn:aws:*:*:*:*", "arn:*:*:*:*:*"] {
            let a = analyse(&[allow(json!("*"), json!(r))]);
            assert_eq!(a.privilege, PrivilegeLevel::Admin, "{r}");
        }
        let s3 = analyse(&[allow(json!("*"), json!("arn:aws:s3:::*"))]);
        assert_eq!(s3.privilege, PrivilegeLevel::Write);
    }

    #[test]
    fn iam_methods_on_every_user_of_the_account_are_admin() {
        let docs = [allow(
            json!("iam:AttachUserPolicy"),
            json!("arn:aws:iam::123456789012:user/*"),
        )];
        assert_eq!(level_of(&docs, None).privilege, PrivilegeLevel::Admin);
        // Another account's users are no escalation here.
        let other = [allow(
            json!("iam:AttachUserPolicy"),
            json!("arn:aws:iam::999999999999:user/*"),
        )];
        assert_eq!(level_of(&other, None).privilege, PrivilegeLevel::Write);
        // Acting on oneself through ${aws:username}: policies yes, keys no.
        let own_policy = [allow(
            json!("iam:PutUserPolicy"),
            json!("arn:aws:iam::123456789012:user/${aws:username}"),
        )];
        assert_eq!(level_of(&own_policy, None).privilege, PrivilegeLevel::Admin);
        let own_keys = [allow(
            json!("iam:CreateAccessKey"),
            json!("arn:aws:iam::123456789012:user/${aws:username}"),
        )];
        assert_eq!(level_of(&own_keys, None).privilege, PrivilegeLevel::Write);
    }

    #[test]
    fn pass_role_needs_a_compute_service_and_every_step() {
        let pass = json!({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/*"});
        let lambda = |actions: Value| {
            doc(
                json!({"Statement": [pass.clone(), {"Effect": "Allow", "Action": actions, "Resource": "*"}]}),
            )
        };
        let full = level_of(
            &[lambda(json!([
                "lambda:CreateFunction",
                "lambda:InvokeFunction"
            ]))],
            None,
        );
        assert_eq!(full.privilege, PrivilegeLevel::Admin);
        assert!(full
            .admin_reason
            .is_some_and(|r| r.contains("lambda:CreateFunction")));
        let half = level_of(&[lambda(json!(["lambda:CreateFunction"]))], None);
        assert_eq!(half.privilege, PrivilegeLevel::Write);
        let no_pass = level_of(
            &[allow(
                json!(["lambda:CreateFunction", "lambda:InvokeFunction"]),
                json!("*"),
            )],
            None,
        );
        assert_eq!(no_pass.privilege, PrivilegeLevel::Write);
    }

    #[test]
    fn deny_with_resource_pattern_subtracts_across_documents() {
        let admin = allow(json!("*"), json!("*"));
        let deny_iam = doc(json!({"Statement": {"Effect": "Deny", "Action": "*",
            "Resource": ["arn:aws:iam::*:user/*", "arn:aws:iam::*:group/*",
                         "arn:aws:iam::*:role/*", "arn:aws:iam::*:policy/*"]}}));
        assert_eq!(
            level_of(&[admin.clone(), deny_iam], None).privilege,
            PrivilegeLevel::Write
        );
        // "Deny everything but S3" leaves S3 only.
        let deny_not_s3 = doc(
            json!({"Statement": {"Effect": "Deny", "Action": "*", "NotResource": "arn:aws:s3:::*"}}),
        );
        assert_eq!(
            level_of(&[admin.clone(), deny_not_s3], None).privilege,
            PrivilegeLevel::Write
        );
        // A deny on one bucket leaves IAM open.
        let deny_bucket = doc(
            json!({"Statement": {"Effect": "Deny", "Action": "*", "Resource": "arn:aws:s3:::prod"}}),
        );
        assert_eq!(
            level_of(&[admin, deny_bucket], None).privilege,
            PrivilegeLevel::Admin
        );
    }

    #[test]
    fn boundary_intersects_and_its_denies_subtract() {
        let admin = [allow(json!("*"), json!("*"))];
        let s3 = allow(json!("s3:*"), json!("*"));
        assert_eq!(level_of(&admin, Some(&s3)).privilege, PrivilegeLevel::Write);
        let read = allow(json!(["s3:Get*", "s3:List*"]), json!("*"));
        assert_eq!(
            level_of(&admin, Some(&read)).privilege,
            PrivilegeLevel::Read
        );
        let open = allow(json!("*"), json!("*"));
        assert_eq!(
            level_of(&admin, Some(&open)).privilege,
            PrivilegeLevel::Admin
        );
        // The boundary only limits: what the identity lacks it does not add.
        let reader = [allow(json!("s3:GetObject"), json!("*"))];
        assert_eq!(
            level_of(&reader, Some(&open)).privilege,
            PrivilegeLevel::Read
        );
        // A boundary that lets the holder remove itself is no limit.
        let escape = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:DeleteUserPermissionsBoundary",
             "Resource": "arn:aws:iam::123456789012:user/${aws:username}"}
        ]}));
        let a = level_of(&admin, Some(&escape));
        assert_eq!(a.privilege, PrivilegeLevel::Admin);
        assert_eq!(
            a.admin_reason.as_deref(),
            Some("admin-equivalent via iam:DeleteUserPermissionsBoundary")
        );
        let deny = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}
        ]}));
        assert_ne!(
            level_of(&admin, Some(&deny)).privilege,
            PrivilegeLevel::Admin
        );
    }

    #[test]
    fn not_resource_allow_reaches_what_it_does_not_exclude() {
        let d = doc(
            json!({"Statement": {"Effect": "Allow", "Action": "iam:CreateAccessKey",
            "NotResource": "arn:aws:iam::123456789012:user/break-glass"}}),
        );
        // Every user but one: not every user, so not admin by this method…
        assert_eq!(
            level_of(std::slice::from_ref(&d), None).privilege,
            PrivilegeLevel::Write
        );
        // …but each of the others can be taken over.
        let (arn, mut subject) = user_subject("ci-bot");
        subject.arn = Some(&arn);
        let perms = Permissions {
            policies: &[&d],
            boundary: None,
            subject,
        };
        assert_eq!(
            acts_as(&perms, "arn:aws:iam::123456789012:user/ops", true),
            Some("iam:CreateAccessKey")
        );
        assert_eq!(
            acts_as(&perms, "arn:aws:iam::123456789012:user/break-glass", true),
            None
        );
    }

    // --- allows ------------------------------------------------------------

    #[test]
    fn allows_respects_deny_on_specific_role() {
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/*"},
            {"Effect": "Deny", "Action": "iam:PassRole", "Resource": ROLE}
        ]}));
        let docs = [d];
        assert!(!allows(&docs, "iam:PassRole", ROLE));
        assert!(allows(
            &docs,
            "IAM:passrole",
            "arn:aws:iam::123456789012:role/other"
        ));
        assert!(!allows(
            &docs,
            "iam:PassRole",
            "arn:aws:iam::999999999999:role/x"
        ));
        assert!(!allows(
            &docs,
            "iam:GetRole",
            "arn:aws:iam::123456789012:role/other"
        ));
        // Resources are case-sensitive.
        assert!(!allows(
            &docs,
            "iam:PassRole",
            "arn:aws:iam::123456789012:ROLE/x"
        ));
    }

    #[test]
    fn allows_ignores_conditional_deny_and_handles_not_specs() {
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
        ]}));
        let docs = [d];
        assert!(allows(&docs, "s3:GetObject", "arn:aws:s3:::public"));
        assert!(!allows(&docs, "s3:GetObject", "arn:aws:s3:::secret"));
        assert!(!allows(&docs, "iam:CreateUser", "*"));
    }

    // --- trust -------------------------------------------------------------

    #[test]
    fn trust_account_root_admits_account_wide() {
        let t = trust(json!({"AWS": "arn:aws:iam::123456789012:root"}));
        assert!(trust_admits(&t, USER, ACCT));
        assert!(trust_is_account_wide(&t, USER, ACCT));
    }

    #[test]
    fn trust_account_id_admits_account_wide() {
        let t = trust(json!({"AWS": ["123456789012"]}));
        assert!(trust_admits(&t, ROLE, ACCT));
        assert!(trust_is_account_wide(&t, ROLE, ACCT));
    }

    #[test]
    fn trust_exact_arn_admits_by_name() {
        let t = trust(json!({"AWS": [ROLE, "arn:aws:iam::123456789012:root"]}));
        assert!(trust_admits(&t, ROLE, ACCT));
        assert!(!trust_is_account_wide(&t, ROLE, ACCT));
        // The root entry still admits other principals of the account.
        assert!(trust_is_account_wide(&t, USER, ACCT));
    }

    #[test]
    fn trust_wildcard_arn_admits_by_name() {
        let t = trust(json!({"AWS": "arn:aws:iam::123456789012:user/*"}));
        assert!(trust_admits(&t, USER, ACCT));
        assert!(!trust_is_account_wide(&t, USER, ACCT));
        assert!(!trust_admits(&t, ROLE, ACCT));
    }

    #[test]
    fn trust_other_account_does_not_admit() {
        let t = trust(json!({"AWS": ["arn:aws:iam::999999999999:root", "999999999999"]}));
        assert!(!trust_admits(&t, USER, ACCT));
        assert!(!trust_is_account_wide(&t, USER, ACCT));
    }

    #[test]
    fn trust_star_principal_admits() {
        for p in [json!("*"), json!({"AWS": "*"})] {
            let t = trust(p);
            assert!(trust_admits(&t, USER, ACCT));
            assert!(trust_is_account_wide(&t, USER, ACCT));
        }
    }

    #[test]
    fn trust_service_only_does_not_admit_user() {
        let t = trust(json!({"Service": "lambda.amazonaws.com"}));
        assert!(!trust_admits(&t, USER, ACCT));
        let fed = trust(json!({"Federated": "arn:aws:iam::123456789012:oidc-provider/x"}));
        assert!(!trust_admits(&fed, USER, ACCT));
    }

    #[test]
    fn trust_requires_assume_role_action() {
        let t = doc(json!({"Statement": {
            "Effect": "Allow", "Principal": {"AWS": USER}, "Action": "sts:AssumeRoleWithWebIdentity"
        }}));
        assert!(!trust_admits(&t, USER, ACCT));
        let wildcard = doc(json!({"Statement": {
            "Effect": "Allow", "Principal": {"AWS": USER}, "Action": "sts:*"
        }}));
        assert!(trust_admits(&wildcard, USER, ACCT));
    }

    #[test]
    fn trust_deny_blocks_unless_conditional() {
        let t = doc(json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"},
            {"Effect": "Deny", "Principal": {"AWS": USER}, "Action": "sts:AssumeRole"}
        ]}));
        assert!(!trust_admits(&t, USER, ACCT));
        assert!(!trust_is_account_wide(&t, USER, ACCT));
        assert!(trust_admits(&t, ROLE, ACCT));

        let cond = doc(json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": USER}, "Action": "sts:AssumeRole"},
            {"Effect": "Deny", "Principal": {"AWS": USER}, "Action": "sts:AssumeRole",
             "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}
        ]}));
        assert!(trust_admits(&cond, USER, ACCT));
    }

    // --- trust to other accounts and to anyone -----------------------------

    #[test]
    fn trusts_to_other_accounts_carry_their_required_keys() {
        let t = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": ["arn:aws:iam::999988887777:root", "arn:aws:iam::123456789012:root"]},
             "Condition": {"StringEquals": {"sts:ExternalId": "c0ffee"}}},
            {"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": "444455556666"}},
            {"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": "arn:aws:iam::999988887777:role/vendor"},
             "Condition": {"StringEquals": {"STS:externalid": "c0ffee", "aws:SourceAccount": "1"}}}
        ]}));
        let got = principal_trusts(&t, ACCT);
        assert_eq!(
            got,
            vec![
                PrincipalTrust {
                    account: Some("999988887777".into()),
                    principals: vec![
                        "arn:aws:iam::999988887777:role/vendor".into(),
                        "arn:aws:iam::999988887777:root".into()
                    ],
                    required: vec!["sts:ExternalId".into()],
                },
                PrincipalTrust {
                    account: Some("444455556666".into()),
                    principals: vec!["444455556666".into()],
                    required: vec![],
                },
            ]
        );
    }

    #[test]
    fn a_statement_without_the_key_leaves_it_unrequired() {
        let t = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": "999988887777"},
             "Condition": {"StringEquals": {"sts:ExternalId": "c0ffee"}}},
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": "999988887777"}}
        ]}));
        assert!(principal_trusts(&t, ACCT)[0].required.is_empty());
    }

    #[test]
    fn weak_conditions_require_nothing() {
        for cond in [
            json!({"StringEqualsIfExists": {"sts:ExternalId": "x"}}),
            json!({"StringNotEquals": {"sts:ExternalId": "x"}}),
            json!({"StringLike": {"sts:ExternalId": "*"}}),
            json!({"ForAllValues:StringEquals": {"sts:ExternalId": ["x"]}}),
            json!({"Null": {"sts:ExternalId": "false"}}),
            json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/auditor"}}),
            json!({"ArnLike": {"aws:SourceArn": ["arn:aws:s3:::logs", "arn:aws:iam::*:role/x"]}}),
        ] {
            let t = doc(
                json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"AWS": "999988887777"}, "Condition": cond}}),
            );
            assert!(principal_trusts(&t, ACCT)[0].required.is_empty(), "{cond}");
        }
        let t = doc(
            json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": "999988887777"},
            "Condition": {"ForAnyValue:StringEquals": {"sts:ExternalId": ["x"]}}}}),
        );
        assert_eq!(
            principal_trusts(&t, ACCT)[0].required,
            vec!["sts:ExternalId"]
        );
        let pinned = doc(
            json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::999988887777:role/*"}}}}),
        );
        assert_eq!(
            principal_trusts(&pinned, ACCT)[0].required,
            vec!["aws:PrincipalArn"]
        );
    }

    #[test]
    fn anyone_is_one_trust_whatever_the_spelling() {
        for p in [
            json!("*"),
            json!({"AWS": "*"}),
            json!({"AWS": "arn:aws:iam::*:root"}),
        ] {
            let t = doc(
                json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": p, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}}}),
            );
            let got = principal_trusts(&t, ACCT);
            assert_eq!(got.len(), 1, "{p}");
            assert_eq!(got[0].account, None, "{p}");
            assert_eq!(got[0].required, vec!["aws:PrincipalOrgID"], "{p}");
        }
        let np = doc(
            json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
            "NotPrincipal": {"AWS": USER}}}),
        );
        assert_eq!(principal_trusts(&np, ACCT)[0].account, None);
    }

    #[test]
    fn own_account_services_oidc_and_denies_are_not_principal_trusts() {
        let t = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"AWS": ["arn:aws:iam::123456789012:root", ROLE, ACCT]}},
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}},
            {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
             "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/x"}},
            {"Effect": "Deny", "Action": "sts:AssumeRole", "Principal": "*"}
        ]}));
        assert!(principal_trusts(&t, ACCT).is_empty());
    }

    #[test]
    fn a_trust_admitting_nobody_cannot_be_assumed() {
        assert!(trust_admits_anyone(&trust(
            json!({"Service": "ec2.amazonaws.com"})
        )));
        assert!(trust_admits_anyone(&trust(json!({"AWS": USER}))));
        let deny = doc(
            json!({"Statement": {"Effect": "Deny", "Action": "sts:AssumeRole", "Principal": "*"}}),
        );
        assert!(!trust_admits_anyone(&deny));
        let other = doc(
            json!({"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Principal": "*"}}),
        );
        assert!(!trust_admits_anyone(&other));
        assert!(!trust_admits_anyone(&PolicyDocument::default()));
    }
}
