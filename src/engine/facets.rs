//! Facets: the kinds of fact a gap can blind (the contract's [`Blinds`]),
//! as one small bitset. Three things are written in them:
//!
//! - what a partial source is blind to (its gaps' [`Blinds`]);
//! - what a rule's condition reads (each fact field declares its facets in
//!   [`crate::engine::rules::fields`]; a rule's are collected when it is
//!   compiled);
//! - what a finding or a planned action depends on: its rule's facets, its
//!   credential's kind, its identity's kind, and the operation's own
//!   ([`Facets::of_operation`]).
//!
//! A finding or action is judged — resolved, acted on — only by a source
//! that [`sees`](crate::engine::estate::SourceState::sees) everything it
//! depends on. A copyable `u32`, so the engine's hot path allocates nothing.

use std::fmt;

use nhi_contract::{Blinds, CredentialKind, IdentityKind, Operation};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of [`Blinds`] facets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Facets(u32);

// Bits 0..8: the facets without a kind; 8..16 credential kinds; 16..32
// identity kinds (room for the kinds the contract may add).
const CREDENTIAL_SHIFT: u32 = 8;
const IDENTITY_SHIFT: u32 = 16;

/// Every credential kind, in bit order (see [`IDENTITY_KINDS`]).
const CREDENTIAL_KINDS: [CredentialKind; 6] = [
    CredentialKind::AccessKey,
    CredentialKind::ClientSecret,
    CredentialKind::Certificate,
    CredentialKind::Token,
    CredentialKind::SshKey,
    CredentialKind::Federated,
];

/// Every identity kind, in bit order. A kind added to the contract fails
/// to compile in `identity_bit` until it has a bit; add it here too.
const IDENTITY_KINDS: [IdentityKind; 9] = [
    IdentityKind::User,
    IdentityKind::Role,
    IdentityKind::Application,
    IdentityKind::ServicePrincipal,
    IdentityKind::ManagedIdentity,
    IdentityKind::ServiceAccount,
    IdentityKind::App,
    IdentityKind::Root,
    IdentityKind::Agent,
];

// The index of each kind: an exhaustive match, so a kind added to the
// contract does not compile until it has its bit.
const fn credential_bit(k: CredentialKind) -> u32 {
    let i = match k {
        CredentialKind::AccessKey => 0,
        CredentialKind::ClientSecret => 1,
        CredentialKind::Certificate => 2,
        CredentialKind::Token => 3,
        CredentialKind::SshKey => 4,
        CredentialKind::Federated => 5,
    };
    1 << (CREDENTIAL_SHIFT + i)
}

const fn identity_bit(k: IdentityKind) -> u32 {
    let i = match k {
        IdentityKind::User => 0,
        IdentityKind::Role => 1,
        IdentityKind::Application => 2,
        IdentityKind::ServicePrincipal => 3,
        IdentityKind::ManagedIdentity => 4,
        IdentityKind::ServiceAccount => 5,
        IdentityKind::App => 6,
        IdentityKind::Root => 7,
        IdentityKind::Agent => 8,
    };
    1 << (IDENTITY_SHIFT + i)
}

impl Facets {
    /// Nothing: a fact read from the subject itself (ids, kinds, expiry,
    /// approvals, owner).
    pub const NONE: Facets = Facets(0);
    /// Last use.
    pub const USAGE: Facets = Facets(1);
    /// Who holds which entitlement.
    pub const PRIVILEGE: Facets = Facets(1 << 1);
    /// Interactive (human) logins.
    pub const HUMAN_LOGIN: Facets = Facets(1 << 2);
    /// Anything the source holds.
    pub const WHOLE_SOURCE: Facets = Facets(1 << 3);
    /// The last use of held entitlements.
    pub const ENTITLEMENT_USAGE: Facets = Facets(1 << 4);
    /// Every credential kind: a fact counting an identity's credentials.
    pub const ALL_CREDENTIAL_KINDS: Facets = Facets(0xff << CREDENTIAL_SHIFT);
    /// Every identity kind: a fact about whether an identity exists.
    pub const ALL_IDENTITY_KINDS: Facets = Facets(0xffff << IDENTITY_SHIFT);
    /// Everything: what a stored finding from before facets were kept
    /// depends on, short of its credential kind (see
    /// [`Facets::conservative`]).
    pub const EVERYTHING: Facets = Facets(u32::MAX);

    /// `self` and `other`.
    pub const fn with(self, other: Facets) -> Facets {
        Facets(self.0 | other.0)
    }

    /// Credentials of kind `k`.
    pub const fn credential_kind(k: CredentialKind) -> Facets {
        Facets(credential_bit(k))
    }

    /// Identities of kind `k`.
    pub const fn identity_kind(k: IdentityKind) -> Facets {
        Facets(identity_bit(k))
    }

    /// One contract facet.
    pub const fn of(b: Blinds) -> Facets {
        match b {
            Blinds::CredentialKind(k) => Facets::credential_kind(k),
            Blinds::IdentityKind(k) => Facets::identity_kind(k),
            Blinds::Usage => Facets::USAGE,
            Blinds::Privilege => Facets::PRIVILEGE,
            Blinds::HumanLogin => Facets::HUMAN_LOGIN,
            Blinds::WholeSource => Facets::WHOLE_SOURCE,
            Blinds::EntitlementUsage => Facets::ENTITLEMENT_USAGE,
        }
    }

    /// What carrying out `op` reads beyond its rules' conditions: detaching
    /// entitlements needs to know who holds what, removing a login needs
    /// the logins.
    pub const fn of_operation(op: Operation) -> Facets {
        match op {
            Operation::DetachEntitlements => Facets::PRIVILEGE,
            Operation::RemoveLogin => Facets::HUMAN_LOGIN,
            Operation::DisableCredential
            | Operation::DeleteCredential
            | Operation::DisableIdentity
            | Operation::DenySessions
            | Operation::LiftSessionDeny
            | Operation::AddFederatedCredential
            | Operation::RemoveFederatedCredential => Facets::NONE,
        }
    }

    /// What a finding stored before facets were kept is taken to depend
    /// on: everything but the credential kinds other than its own — the
    /// rule the store applied then.
    pub fn conservative(kind: Option<CredentialKind>) -> Facets {
        let all_but_kinds = Facets(Facets::EVERYTHING.0 & !Facets::ALL_CREDENTIAL_KINDS.0);
        match kind {
            Some(k) => all_but_kinds.with(Facets::credential_kind(k)),
            None => all_but_kinds,
        }
    }

    /// Whether no facet is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every facet of `other` is in `self`.
    pub const fn contains(self, other: Facets) -> bool {
        self.0 & other.0 == other.0
    }

    /// The facets in both.
    pub const fn and(self, other: Facets) -> Facets {
        Facets(self.0 & other.0)
    }

    /// The contract facets set, in a stable order (usage, privilege, human
    /// login, whole source, entitlement usage, credential kinds, identity
    /// kinds).
    pub fn blinds(self) -> Vec<Blinds> {
        let plain = [
            Blinds::Usage,
            Blinds::Privilege,
            Blinds::HumanLogin,
            Blinds::WholeSource,
            Blinds::EntitlementUsage,
        ];
        let kinds = CREDENTIAL_KINDS.iter().map(|&k| Blinds::CredentialKind(k));
        let idents = IDENTITY_KINDS.iter().map(|&k| Blinds::IdentityKind(k));
        plain
            .into_iter()
            .chain(kinds)
            .chain(idents)
            .filter(|&b| self.contains(Facets::of(b)))
            .collect()
    }
}

impl From<Blinds> for Facets {
    fn from(b: Blinds) -> Facets {
        Facets::of(b)
    }
}

impl FromIterator<Blinds> for Facets {
    fn from_iter<I: IntoIterator<Item = Blinds>>(iter: I) -> Facets {
        iter.into_iter()
            .fold(Facets::NONE, |acc, b| acc.with(Facets::of(b)))
    }
}

/// The facet's name as reasons print it (`privilege`, `client_secret
/// credentials`).
pub fn name(b: Blinds) -> String {
    match b {
        Blinds::CredentialKind(k) => format!("{} credentials", k.as_str()),
        Blinds::IdentityKind(k) => format!("{} identities", k.as_str()),
        Blinds::Usage => "usage".into(),
        Blinds::Privilege => "privilege".into(),
        Blinds::HumanLogin => "human login".into(),
        Blinds::WholeSource => "the whole source".into(),
        Blinds::EntitlementUsage => "entitlement usage".into(),
    }
}

/// `usage, privilege`.
impl fmt::Display for Facets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.blinds().into_iter().map(name).collect();
        f.write_str(&names.join(", "))
    }
}

impl fmt::Debug for Facets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Facets[{self}]")
    }
}

/// The bits that name a facet: the plain ones and one per known kind.
/// [`Facets::stored`] keeps these only, so a stored set does not depend on
/// the spare bits a whole-kind set (`ALL_…_KINDS`) also covers.
const KNOWN: u32 = 0x1f
    | (((1 << CREDENTIAL_KINDS.len()) - 1) << CREDENTIAL_SHIFT)
    | (((1 << IDENTITY_KINDS.len()) - 1) << IDENTITY_SHIFT);

impl Facets {
    /// The facets with a meaning: the spare bits of the whole-kind sets
    /// cleared. Two sets that judge every known source alike are equal
    /// here.
    pub const fn known(self) -> Facets {
        Facets(self.0 & KNOWN)
    }

    /// The form the store's `depends` columns keep: `x` and the known bits
    /// in hexadecimal (`x10002`: privilege, role identities). Eight bytes
    /// where the contract's list ([`Serialize`]) took up to 400, on every
    /// finding row, sighting row and the two indexes that carry the
    /// column. The bit numbers are therefore part of the store's format:
    /// the kind arrays above are append-only.
    pub fn stored(self) -> String {
        format!("x{:x}", self.known().0)
    }

    /// A `depends` column read back: the stored form, or the contract's
    /// list that earlier versions wrote. `None` for anything else,
    /// including bits this version does not know (written by a later one):
    /// the caller then assumes the conservative set.
    pub fn from_stored(text: &str) -> Option<Facets> {
        match text.strip_prefix('x') {
            Some(hex) => {
                let bits = u32::from_str_radix(hex, 16).ok()?;
                (bits & !KNOWN == 0).then_some(Facets(bits))
            }
            None => serde_json::from_str::<Facets>(text).ok(),
        }
    }
}

/// As the list of the contract's [`Blinds`], the form reports and earlier
/// stores carry.
impl Serialize for Facets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.blinds().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Facets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Facets, D::Error> {
        Ok(Vec::<Blinds>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_bit_and_reads_back() {
        let mut seen = Facets::NONE;
        for (i, k) in CREDENTIAL_KINDS.into_iter().enumerate() {
            let f = Facets::credential_kind(k);
            assert_eq!(f.0, 1 << (CREDENTIAL_SHIFT as usize + i), "bit order");
            assert!(!seen.contains(f) && Facets::ALL_CREDENTIAL_KINDS.contains(f));
            seen = seen.with(f);
            assert_eq!(f.blinds(), vec![Blinds::CredentialKind(k)]);
        }
        for (i, k) in IDENTITY_KINDS.into_iter().enumerate() {
            let f = Facets::identity_kind(k);
            assert_eq!(f.0, 1 << (IDENTITY_SHIFT as usize + i), "bit order");
            assert!(!seen.contains(f) && Facets::ALL_IDENTITY_KINDS.contains(f));
            seen = seen.with(f);
            assert_eq!(f.blinds(), vec![Blinds::IdentityKind(k)]);
        }
        assert!(Facets::ALL_CREDENTIAL_KINDS
            .and(Facets::USAGE.with(Facets::WHOLE_SOURCE))
            .is_empty());
    }

    #[test]
    fn the_stored_form_is_pinned_and_reads_both_forms_back() {
        // Pinned: rows written by earlier versions keep these bits.
        let cases = [
            (Facets::NONE, "x0"),
            (Facets::USAGE, "x1"),
            (Facets::PRIVILEGE, "x2"),
            (Facets::ENTITLEMENT_USAGE, "x10"),
            (Facets::credential_kind(CredentialKind::AccessKey), "x100"),
            (Facets::credential_kind(CredentialKind::Federated), "x2000"),
            (Facets::identity_kind(IdentityKind::User), "x10000"),
            (Facets::identity_kind(IdentityKind::Agent), "x1000000"),
            (Facets::ALL_CREDENTIAL_KINDS, "x3f00"),
            (Facets::EVERYTHING, "x1ff3f1f"),
        ];
        for (f, text) in cases {
            assert_eq!(f.stored(), text, "{f:?}");
            assert_eq!(Facets::from_stored(text), Some(f.known()));
            // The contract's list, as earlier versions stored it, reads as
            // the same known set.
            let legacy = serde_json::to_string(&f).expect("json");
            assert_eq!(Facets::from_stored(&legacy), Some(f.known()), "{legacy}");
        }
        // A bit a later version added, or no form at all: not read.
        for bad in [
            "x4000",
            "x80000000",
            "xzz",
            "x",
            "",
            "{}",
            "[{\"type\":\"new\"}]",
        ] {
            assert_eq!(Facets::from_stored(bad), None, "{bad}");
        }
    }

    #[test]
    fn serialises_as_the_contract_facets() {
        let f = Facets::PRIVILEGE.with(Facets::credential_kind(CredentialKind::Federated));
        let text = serde_json::to_string(&f).expect("json");
        assert_eq!(
            text,
            r#"[{"type":"privilege"},{"type":"credential_kind","kind":"federated"}]"#
        );
        assert_eq!(serde_json::from_str::<Facets>(&text).expect("back"), f);
        assert_eq!(f.to_string(), "privilege, federated credentials");
    }

    #[test]
    fn conservative_is_everything_but_other_credential_kinds() {
        let f = Facets::conservative(Some(CredentialKind::AccessKey));
        assert!(f.contains(Facets::WHOLE_SOURCE.with(Facets::USAGE)));
        assert!(f.contains(Facets::credential_kind(CredentialKind::AccessKey)));
        assert!(!f.contains(Facets::credential_kind(CredentialKind::SshKey)));
    }
}
