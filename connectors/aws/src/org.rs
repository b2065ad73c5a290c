//! Organisation discovery: the accounts of an AWS organisation, from the
//! management account or a delegated administrator, filtered by id, OU and
//! tag, each with the member role the scan assumes in it.
//!
//! Calls: ListAccounts (all pages); with OU filters, ListParents once per
//! candidate account and once per OU on the way up to the root (cached);
//! with tag filters, ListTagsForResource per candidate still in scope. The
//! cheap filters run first so the per-account calls are only made for
//! accounts that could still be in scope.
//!
//! Listing the accounts failing, or listing none, makes the source unknown:
//! it never reads as an empty organisation. An account whose OU or tags
//! cannot be read may be in scope: it is `unknown` and held like an account
//! whose role cannot be assumed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_organizations::types::{AccountState, AccountStatus, ParentType};
use aws_sdk_organizations::Client;
use nhi_contract::SourceError;

use crate::config::{AwsConfig, OrganizationConfig};
use crate::sdk::{self, source_error, CallStats};

/// How long the remediator and targeted reads trust a discovery: long
/// enough for one pass and its enforcement, short enough that an account
/// moved out of scope stops being acted on within minutes.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(600);

/// One account to read and the member role that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The 12-digit account id.
    pub account: String,
    /// The member role's ARN.
    pub role: String,
}

impl Member {
    /// The id prefix of every IAM principal of the account.
    pub(crate) fn subjects(&self) -> String {
        let partition = self.role.split(':').nth(1).unwrap_or("aws");
        format!("arn:{partition}:iam::{}:", self.account)
    }
}

/// What discovery found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovery {
    /// Accounts in scope, in the order the organisation listed them.
    pub members: Vec<Member>,
    /// Accounts that may be in scope but whose OU or tags could not be
    /// read, and why: unknown this pass.
    pub unknown: Vec<(Member, String)>,
    /// Every account of the organisation, in scope or not, active or not:
    /// a trust to any of them stays inside the estate.
    pub accounts: BTreeSet<String>,
}

impl Discovery {
    /// The member role reading `account`, if it is in scope.
    pub(crate) fn role_for(&self, account: &str) -> Option<&str> {
        self.members
            .iter()
            .chain(self.unknown.iter().map(|(m, _)| m))
            .find(|m| m.account == account)
            .map(|m| m.role.as_str())
    }
}

/// A discovery shared between passes for `CACHE_TTL`.
#[derive(Debug, Default)]
pub(crate) struct Cache(tokio::sync::Mutex<Option<(Instant, Arc<Discovery>)>>);

impl Cache {
    /// Keep `d` as the latest discovery.
    pub(crate) async fn put(&self, d: Arc<Discovery>) {
        *self.0.lock().await = Some((Instant::now(), d));
    }

    /// The cached discovery while fresh, else a new one.
    pub(crate) async fn get(
        &self,
        base: &SdkConfig,
        cfg: &AwsConfig,
        org: &OrganizationConfig,
        calls: &CallStats,
    ) -> Result<Arc<Discovery>, SourceError> {
        let mut slot = self.0.lock().await;
        if let Some((at, d)) = slot.as_ref() {
            if at.elapsed() < CACHE_TTL {
                return Ok(d.clone());
            }
        }
        let d = Arc::new(discover(base, cfg, org, calls).await?);
        *slot = Some((Instant::now(), d.clone()));
        Ok(d)
    }
}

/// One listed account, as far as discovery needs it.
struct Listed {
    id: String,
    partition: String,
    active: bool,
}

/// List the organisation's accounts and keep those in scope.
pub(crate) async fn discover(
    base: &SdkConfig,
    cfg: &AwsConfig,
    org: &OrganizationConfig,
    calls: &CallStats,
) -> Result<Discovery, SourceError> {
    let conf = sdk::assumed(base, cfg, org.discovery_role.as_deref()).await;
    let client = Client::new(&conf);
    let listed = list_accounts(&client, org, calls).await?;
    let mut out = Discovery {
        accounts: listed.iter().map(|a| a.id.clone()).collect(),
        ..Discovery::default()
    };
    let member = |a: &Listed| Member {
        account: a.id.clone(),
        role: format!("arn:{}:iam::{}:role/{}", a.partition, a.id, org.role_name),
    };
    let included = |id: &str| {
        (org.include_accounts.is_empty() || org.include_accounts.iter().any(|a| a == id))
            && !org.exclude_accounts.iter().any(|a| a == id)
    };
    let mut parents = Parents::default();
    for a in &listed {
        if !a.active {
            // A suspended or closing account cannot be read and holds
            // nothing usable: out of scope, said in the log.
            tracing::info!(source = %cfg.name, account = %a.id, "organisation account not active: not read");
            continue;
        }
        if !included(&a.id) {
            continue;
        }
        if !org.include_ous.is_empty() || !org.exclude_ous.is_empty() {
            match parents.ancestors(&client, &a.id, calls).await {
                Ok(up) => {
                    let under = |ous: &[String]| ous.iter().any(|o| up.contains(o));
                    let in_scope = (org.include_ous.is_empty() || under(&org.include_ous))
                        && !under(&org.exclude_ous);
                    if !in_scope {
                        continue;
                    }
                }
                Err(e) => {
                    out.unknown.push((member(a), e.to_string()));
                    continue;
                }
            }
        }
        if !org.include_tags.is_empty() || !org.exclude_tags.is_empty() {
            match tags(&client, &a.id, calls).await {
                Ok(t) => {
                    let has = |(k, v): (&String, &String)| t.get(k) == Some(v);
                    let in_scope =
                        org.include_tags.iter().all(has) && !org.exclude_tags.iter().any(has);
                    if !in_scope {
                        continue;
                    }
                }
                Err(e) => {
                    out.unknown.push((member(a), e.to_string()));
                    continue;
                }
            }
        }
        out.members.push(member(a));
    }
    if out.members.is_empty() && out.unknown.is_empty() {
        // A filter matching nothing must not read as an empty estate: every
        // finding of the source would be resolved by it.
        return Err(invalid(format!(
            "none of the organisation's {} accounts is active and matches the filters",
            listed.len()
        )));
    }
    tracing::info!(
        source = %cfg.name,
        accounts = listed.len(),
        in_scope = out.members.len(),
        unknown = out.unknown.len(),
        "organisation discovered"
    );
    Ok(out)
}

async fn list_accounts(
    client: &Client,
    org: &OrganizationConfig,
    calls: &CallStats,
) -> Result<Vec<Listed>, SourceError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        calls.count("ListAccounts");
        let page = client
            .list_accounts()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| source_error("ListAccounts", e))?;
        for a in page.accounts() {
            let Some(id) = a.id().filter(|id| is_account_id(id)) else {
                // Not an account id: nothing to build an ARN from.
                tracing::warn!(id = ?a.id(), "ListAccounts returned an account without a valid id: skipped");
                continue;
            };
            let partition = a
                .arn()
                .and_then(|arn| arn.split(':').nth(1))
                .filter(|p| {
                    p.starts_with("aws")
                        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
                .unwrap_or("aws");
            // `State` replaces `Status` (retired September 2026): either
            // saying active is enough, as long as the other does not say
            // otherwise.
            let active = match (a.state(), a.status()) {
                (Some(s), _) => *s == AccountState::Active,
                (None, Some(s)) => *s == AccountStatus::Active,
                (None, None) => false,
            };
            out.push(Listed {
                id: id.to_string(),
                partition: partition.to_string(),
                active,
            });
        }
        if out.len() > org.max_accounts {
            return Err(invalid(format!(
                "the organisation lists more than {} accounts (max_accounts)",
                org.max_accounts
            )));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    if out.is_empty() {
        // An organisation always has its management account: none listed
        // is a caller that cannot see it (moto answers a delegated
        // administrator so), never an empty estate.
        return Err(SourceError::Unavailable(
            "ListAccounts listed no account".into(),
        ));
    }
    Ok(out)
}

/// Each child's parent, read once per child (accounts and OUs).
#[derive(Default)]
struct Parents(HashMap<String, Option<String>>);

/// Depth bound: Organizations nests OUs at most five deep.
const MAX_DEPTH: usize = 8;

impl Parents {
    /// Every OU and the root above `account`.
    async fn ancestors(
        &mut self,
        client: &Client,
        account: &str,
        calls: &CallStats,
    ) -> Result<BTreeSet<String>, SourceError> {
        let mut out = BTreeSet::new();
        let mut child = account.to_string();
        for _ in 0..MAX_DEPTH {
            let parent = match self.0.get(&child) {
                Some(p) => p.clone(),
                None => {
                    let p = parent_of(client, &child, calls).await?;
                    self.0.insert(child.clone(), p.clone());
                    p
                }
            };
            let Some(p) = parent else {
                return Ok(out);
            };
            out.insert(p.clone());
            if p.starts_with("r-") {
                return Ok(out);
            }
            child = p;
        }
        Err(invalid(format!(
            "account {account}: OUs nested deeper than {MAX_DEPTH}"
        )))
    }
}

/// The parent of an account or OU: an OU, the root, or none.
async fn parent_of(
    client: &Client,
    child: &str,
    calls: &CallStats,
) -> Result<Option<String>, SourceError> {
    calls.count("ListParents");
    let out = client
        .list_parents()
        .child_id(child)
        .send()
        .await
        .map_err(|e| source_error("ListParents", e))?;
    // Every child has exactly one parent today.
    Ok(out.parents().first().and_then(|p| {
        let id = p.id()?;
        match p.r#type() {
            Some(ParentType::Root) | Some(ParentType::OrganizationalUnit) => Some(id.to_string()),
            _ => None,
        }
    }))
}

async fn tags(
    client: &Client,
    account: &str,
    calls: &CallStats,
) -> Result<BTreeMap<String, String>, SourceError> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        calls.count("ListTagsForResource");
        let page = client
            .list_tags_for_resource()
            .resource_id(account)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| source_error("ListTagsForResource", e))?;
        for t in page.tags() {
            out.insert(t.key().to_string(), t.value().to_string());
        }
        match page.next_token() {
            Some(t) if !t.is_empty() && out.len() < 1_000 => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

fn invalid(message: String) -> SourceError {
    SourceError::Invalid {
        location: "organization".into(),
        message,
    }
}

fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_holds_its_accounts_principals_by_prefix() {
        let m = Member {
            account: "210987654321".into(),
            role: "arn:aws-us-gov:iam::210987654321:role/scan".into(),
        };
        assert_eq!(m.subjects(), "arn:aws-us-gov:iam::210987654321:");
        let d = Discovery {
            members: vec![m.clone()],
            ..Discovery::default()
        };
        assert_eq!(
            d.role_for("210987654321"),
            Some("arn:aws-us-gov:iam::210987654321:role/scan")
        );
        assert_eq!(d.role_for("111111111111"), None);
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(is_account_id("123456789012"));
        assert!(!is_account_id("12345678901"));
        assert!(!is_account_id("12345678901x"));
        assert!(!is_account_id("123456789012:role/x"));
    }
}
