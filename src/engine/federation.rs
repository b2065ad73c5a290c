//! How broad a federated credential's trust is: whether tokens from
//! workloads nobody meant to trust would be admitted. Computed here, in
//! Rust, so rules read one bool and the reason as evidence instead of
//! re-deriving subject syntax in CEL.

use nhi_contract::{Federation, FederationKind};

/// GitHub Actions' token issuer host (github.com and GHEC's per-enterprise
/// issuers under the same host).
const GITHUB_ACTIONS: &str = "token.actions.githubusercontent.com";

/// Why an OIDC trust is broad, if it is: the first reason found. Trusts
/// to accounts and to anyone are judged by [`restricted`] and
/// [`requires_external_id`] instead: `None` for them.
///
/// Broad means any of: no subject constraint at all (no subjects and no
/// claims expression), a `*` anywhere in a subject or in the claims
/// expression, a GitHub Actions subject naming a repository without a
/// `ref`, `environment` or `pull_request` qualifier (`repo:org/app`), or
/// no audience constraint (a token the issuer minted for another relying
/// party is admitted): each admits tokens of workloads the trust's author
/// did not single out.
pub fn broad(f: &Federation) -> Option<String> {
    if f.kind != FederationKind::Oidc {
        return None;
    }
    if let Some(expr) = &f.expression {
        if expr.contains('*') {
            return Some(format!("claims expression with a wildcard: {expr}"));
        }
    }
    if f.subjects.is_empty() {
        if f.expression.is_some() {
            return None;
        }
        return Some("no subject constraint: any token the issuer signs is admitted".into());
    }
    let github = issuer_host(&f.issuer).is_some_and(|h| h == GITHUB_ACTIONS);
    for s in &f.subjects {
        if s.contains('*') {
            return Some(format!("wildcard subject {s}"));
        }
        if github && github_unqualified(s) {
            return Some(format!(
                "GitHub Actions subject {s} names no ref, environment or pull_request"
            ));
        }
    }
    if f.audiences.is_empty() {
        return Some("no audience constraint: tokens minted for any audience are admitted".into());
    }
    None
}

/// Condition keys that pin who may use a trust to an organisation, an
/// account, or one principal or resource (AWS global condition keys).
const RESTRICTING_KEYS: &[&str] = &[
    "aws:PrincipalOrgID",
    "aws:PrincipalOrgPaths",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "aws:SourceAccount",
    "aws:SourceArn",
    "aws:SourceOrgID",
    "aws:SourceOrgPaths",
];

/// Whether the trust requires a condition that pins its caller to an
/// organisation, an account or a principal (`aws:PrincipalOrgID`,
/// `aws:SourceArn`, …). `sts:ExternalId` does not: it is a shared value,
/// not an identity.
pub fn restricted(f: &Federation) -> bool {
    f.conditions
        .iter()
        .any(|k| RESTRICTING_KEYS.iter().any(|r| r.eq_ignore_ascii_case(k)))
}

/// Whether the trust requires an `sts:ExternalId` value: what keeps a
/// third party's account from being used as a confused deputy.
pub fn requires_external_id(f: &Federation) -> bool {
    f.conditions
        .iter()
        .any(|k| k.eq_ignore_ascii_case("sts:ExternalId"))
}

/// `repo:OWNER/REPO` with nothing after it (or an empty qualifier).
fn github_unqualified(subject: &str) -> bool {
    let Some(rest) = subject.strip_prefix("repo:") else {
        return false;
    };
    match rest.split_once(':') {
        None => true,
        Some((_, qualifier)) => qualifier.trim().is_empty(),
    }
}

/// The lowercase host of an `https://` issuer URL, if it is one with a
/// plain DNS host. Anything else (another scheme, credentials or odd
/// characters in the authority) has no host, so it matches no allow-list
/// entry: an issuer that cannot be read is not trusted.
pub fn issuer_host(issuer: &str) -> Option<String> {
    let scheme = issuer.get(..8)?;
    if !scheme.eq_ignore_ascii_case("https://") {
        return None;
    }
    let rest = issuer.get(8..)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    // A port is allowed and ignored; user info is not.
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return None,
        None => authority,
    };
    let ok = !host.is_empty()
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(issuer: &str, subjects: &[&str], expression: Option<&str>) -> Federation {
        Federation {
            issuer: issuer.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            audiences: vec!["api://AzureADTokenExchange".into()],
            expression: expression.map(str::to_string),
            ..Federation::default()
        }
    }

    const GH: &str = "https://token.actions.githubusercontent.com";

    #[test]
    fn pinned_subjects_are_not_broad() {
        for s in [
            "repo:contoso/app:ref:refs/heads/main",
            "repo:contoso/app:environment:prod",
            "repo:contoso/app:pull_request",
        ] {
            assert_eq!(broad(&fed(GH, &[s], None)), None, "{s}");
        }
        let gitlab = fed(
            "https://gitlab.com",
            &["project_path:grp/app:ref_type:branch:ref:main"],
            None,
        );
        assert_eq!(broad(&gitlab), None);
        let expr = fed(
            GH,
            &[],
            Some("claims['sub'] eq 'repo:contoso/app:environment:prod'"),
        );
        assert_eq!(broad(&expr), None);
    }

    #[test]
    fn each_broad_shape_says_why() {
        let why = |f: Federation| broad(&f).unwrap_or_default();
        assert!(why(fed(GH, &[], None)).starts_with("no subject constraint"));
        assert_eq!(
            why(fed(GH, &["repo:contoso/*"], None)),
            "wildcard subject repo:contoso/*"
        );
        assert_eq!(why(fed(GH, &["*"], None)), "wildcard subject *");
        assert_eq!(
            why(fed(GH, &["repo:contoso/app:*"], None)),
            "wildcard subject repo:contoso/app:*"
        );
        assert!(why(fed(GH, &["repo:contoso/app"], None)).contains("names no ref"));
        assert!(why(fed(GH, &["repo:contoso/app:"], None)).contains("names no ref"));
        // Only GitHub's subject syntax is read for qualifiers.
        assert_eq!(
            broad(&fed("https://gitlab.com", &["repo:contoso/app"], None)),
            None
        );
        assert!(
            why(fed(GH, &[], Some("claims['sub'] matches 'repo:contoso/*'")))
                .starts_with("claims expression with a wildcard")
        );
        // One broad subject among pinned ones is enough.
        assert!(broad(&fed(
            GH,
            &["repo:contoso/app:ref:refs/heads/main", "repo:contoso/*"],
            None
        ))
        .is_some());
        let mut no_aud = fed(GH, &["repo:contoso/app:ref:refs/heads/main"], None);
        no_aud.audiences.clear();
        assert!(why(no_aud).starts_with("no audience constraint"));
    }

    #[test]
    fn eks_irsa_service_account_wildcards_are_broad() {
        let eks = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
        for s in [
            "system:serviceaccount:payments:*",
            "system:serviceaccount:*:deployer",
            "system:serviceaccount:*",
        ] {
            assert_eq!(why_of(eks, s), format!("wildcard subject {s}"));
        }
        assert_eq!(
            broad(&fed(eks, &["system:serviceaccount:payments:api"], None)),
            None
        );
    }

    fn why_of(issuer: &str, subject: &str) -> String {
        broad(&fed(issuer, &[subject], None)).unwrap_or_default()
    }

    #[test]
    fn account_and_public_trusts_are_judged_by_their_conditions() {
        let account = |conditions: &[&str]| Federation {
            issuer: "arn:aws:iam::999988887777:root".into(),
            kind: FederationKind::Account,
            account: Some("999988887777".into()),
            conditions: conditions.iter().map(|c| c.to_string()).collect(),
            outside_estate: Some(true),
            ..Federation::default()
        };
        // No subjects, no audiences: not an OIDC breadth question.
        assert_eq!(broad(&account(&[])), None);
        assert!(requires_external_id(&account(&["STS:ExternalID"])));
        assert!(!requires_external_id(&account(&["aws:SourceAccount"])));
        assert!(restricted(&account(&["aws:principalorgid"])));
        assert!(restricted(&account(&["aws:SourceArn", "sts:ExternalId"])));
        assert!(!restricted(&account(&["sts:ExternalId"])));
        assert!(!restricted(&account(&["aws:SourceIp"])));
    }

    #[test]
    fn issuer_hosts_are_read_strictly() {
        assert_eq!(issuer_host(GH).as_deref(), Some(GITHUB_ACTIONS));
        assert_eq!(
            issuer_host("HTTPS://Eastus.OIC.prod-aks.azure.com/tenant/guid/").as_deref(),
            Some("eastus.oic.prod-aks.azure.com")
        );
        assert_eq!(
            issuer_host("https://gitlab.example.com:8443/x").as_deref(),
            Some("gitlab.example.com")
        );
        for bad in [
            "http://token.actions.githubusercontent.com",
            "https://user@evil.example",
            "https://",
            "https://evil.example:x/",
            "token.actions.githubusercontent.com",
            "https://a b/",
            "",
        ] {
            assert_eq!(issuer_host(bad), None, "{bad}");
        }
    }
}
