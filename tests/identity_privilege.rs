//! An identity's privilege as its connector assessed it as a whole (all its
//! policies together, a permissions boundary applied) is what the rules see,
//! not the highest of its entitlements taken one by one.

mod support;

use nhi_contract::PrivilegeLevel;
use support::*;

const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const ROLE: &str = "arn:aws:iam::111122223333:role/deployer";

#[test]
fn boundary_limited_identity_is_not_admin() {
    let mut w = clean();
    w.inv
        .entitlements
        .push(policy(ADMIN, &["*"], PrivilegeLevel::Admin));
    w.inv.grants.push(grant(USER, ADMIN));
    assert!(w.fires("identity-admin-equivalent", USER));
    w.ident(USER).privilege = Some(PrivilegeLevel::Write);
    assert!(!w.fires("identity-admin-equivalent", USER));
}

#[test]
fn policies_that_escalate_together_are_admin_and_it_propagates() {
    let mut w = clean();
    w.ident(USER).privilege = Some(PrivilegeLevel::Admin);
    w.ident(USER).privilege_reason =
        Some("admin-equivalent via iam:PassRole + ec2:RunInstances".into());
    assert!(w.fires("identity-admin-equivalent", USER));
    // Whoever may assume it is admin-equivalent through it.
    w.inv
        .identities
        .push(identity(ROLE, nhi_contract::IdentityKind::Role));
    w.inv.trusts.push(trust(ROLE, USER));
    assert!(w.fires("identity-admin-equivalent", ROLE));
}
