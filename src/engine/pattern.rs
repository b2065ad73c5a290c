//! `*` wildcard patterns as IAM writes them (`s3:Get*`, `arn:aws:iam::*:role/ci-*`).
//!
//! Two questions are asked of them: does a pattern match a concrete name,
//! and does one pattern *cover* another — every name the inner pattern can
//! match is matched by the outer one. The second is what scope checks need:
//! an entitlement allowing `s3:*` is not within an approval of `s3:Get*`,
//! even though the strings match each other as plain globs.
//!
//! The `_ignore_case` variants compare ASCII case-insensitively without
//! allocating: IAM action names are case-insensitive.

/// Whether `pattern` (with `*` wildcards) matches the literal `name`.
pub fn matches(pattern: &str, name: &str) -> bool {
    covers_impl(pattern.as_bytes(), name.as_bytes(), false, false)
}

/// [`matches`], ignoring ASCII case, without allocating.
pub fn matches_ignore_case(pattern: &str, name: &str) -> bool {
    covers_impl(pattern.as_bytes(), name.as_bytes(), false, true)
}

/// Whether every name matched by `inner` is matched by `outer`.
///
/// A `*` in `inner` can only be absorbed by a `*` in `outer`; a literal
/// character of `outer` never covers a wildcard of `inner`.
pub fn covers(outer: &str, inner: &str) -> bool {
    covers_impl(outer.as_bytes(), inner.as_bytes(), true, false)
}

/// [`covers`], ignoring ASCII case (IAM action names are case-insensitive).
pub fn covers_ignore_case(outer: &str, inner: &str) -> bool {
    covers_impl(outer.as_bytes(), inner.as_bytes(), true, true)
}

/// Iterative glob matching with single-star backtracking: linear in the
/// common case and never exponential. When `inner_wild` is set, `*` in the
/// subject is a wildcard that only a `*` of the pattern may consume.
fn covers_impl(p: &[u8], s: &[u8], inner_wild: bool, fold: bool) -> bool {
    let eq = |a: u8, b: u8| a == b || (fold && a.eq_ignore_ascii_case(&b));
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && eq(p[pi], s[si]) && !(inner_wild && s[si] == b'*') {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            // Let the last outer `*` absorb one more subject byte (a subject
            // `*` included: an outer `*` covers any inner run).
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(matches("s3:get*", "s3:getobject"));
        assert!(matches("*", "iam:createaccesskey"));
        assert!(matches(
            "arn:aws:iam::*:role/ci-*",
            "arn:aws:iam::1:role/ci-deploy"
        ));
        assert!(!matches("s3:get*", "s3:putobject"));
        assert!(!matches("s3:getobject", "s3:getobjectacl"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(!matches("a*b*c", "aXbY"));
        assert!(matches_ignore_case("ARN:*:User/CI", "arn:aws:user/ci"));
        assert!(!matches("ARN:*", "arn:aws"));
    }

    #[test]
    fn covering() {
        assert!(covers("s3:*", "s3:get*"));
        assert!(covers("*", "*"));
        assert!(covers("s3:get*", "s3:getobject"));
        assert!(covers("s3:g*", "s3:get*"));
        assert!(!covers("s3:get*", "s3:*"));
        assert!(!covers("s3:getobject", "s3:get*"));
        assert!(!covers("s3:*", "*"));
        assert!(!covers("iam:get*", "iam:*"));
        assert!(covers("s3:*object", "s3:get*object"));
    }

    #[test]
    fn pathological_patterns_stay_linear() {
        let p = "*a*a*a*a*a*a*a*a*a*a*b";
        let s = "a".repeat(5_000);
        assert!(!matches(p, &s));
    }
}
