//! What a run read, kept with the run: per source its state and inventory,
//! the approvals as read (revocations applied), the rules evaluated. From
//! it a report on a past run can rebuild the estate and recompute the facts
//! (covering approvals, their state) exactly as that run saw them.
//!
//! Ids and metadata only: the inventory model has no field for a secret.

use nhi_contract::{Approval, Inventory, Provider};
use serde::{Deserialize, Serialize};

use crate::engine::estate::{Estate, SourceState};
use crate::engine::rules::{Action, RuleSet, Severity};
use crate::store::runs::Reading;
use crate::store::StoreError;

/// One source as a run read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceReading {
    /// Configured name.
    pub name: String,
    /// Provider.
    pub provider: Provider,
    /// How the read went.
    pub state: SourceState,
    /// What it returned; `None` for a failed source (unknown, not empty).
    pub inventory: Option<Inventory>,
}

/// A rule as evaluated by a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleInfo {
    /// Rule id.
    pub id: String,
    /// Title.
    pub title: String,
    /// What it detects and why it matters.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// `credential`, `identity` or `approval`.
    pub subject: String,
    /// Recommended action.
    pub action: Action,
    /// How to fix it by hand.
    pub remediation: String,
    /// Controls, as `FRAMEWORK:ID`.
    pub controls: Vec<String>,
}

/// Everything a run read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReading {
    /// Sources, in configuration order.
    pub sources: Vec<SourceReading>,
    /// Approvals as read.
    pub approvals: Vec<Approval>,
    /// Rules evaluated.
    pub rules: Vec<RuleInfo>,
}

/// The rules of a rule set, as kept with a run.
pub fn rule_infos(rules: &RuleSet) -> Vec<RuleInfo> {
    rules
        .rules
        .iter()
        .map(|r| RuleInfo {
            id: r.id.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            severity: r.severity,
            subject: r.subject.as_str().to_string(),
            action: r.action,
            remediation: r.remediation.clone(),
            controls: r.controls.to_vec(),
        })
        .collect()
}

/// What the run read: each source's inventory as it returned it (its span
/// in the estate), the approvals, the rules. Approvals carried by
/// inventories are already in `estate.approvals`: they are kept there only,
/// so rebuilding does not count them twice.
pub fn capture(estate: &Estate, rules: &RuleSet) -> RunReading {
    RunReading {
        sources: estate
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| SourceReading {
                name: s.name.clone(),
                provider: s.provider,
                state: s.state.clone(),
                inventory: estate.inventory_of(i),
            })
            .collect(),
        approvals: estate.approvals.clone(),
        rules: rule_infos(rules),
    }
}

impl RunReading {
    /// Rebuild the estate the run evaluated.
    pub fn estate(&self) -> Estate {
        let mut e = Estate {
            approvals: self.approvals.clone(),
            ..Estate::default()
        };
        for s in &self.sources {
            match (&s.inventory, &s.state) {
                (Some(inv), _) => e.add_inventory(&s.name, s.provider, inv.clone()),
                (None, SourceState::Failed { error }) => {
                    e.add_failed(&s.name, s.provider, error.clone())
                }
                (None, _) => e.add_failed(&s.name, s.provider, "not recorded".into()),
            }
        }
        e
    }

    /// Parse a stored reading; one written in a format newer than this
    /// version reads is refused, never half-read.
    pub fn from_stored(s: &crate::store::runs::StoredReading) -> Result<Self, StoreError> {
        if !(1..=crate::store::runs::READING_FORMAT).contains(&s.format_version) {
            return Err(StoreError::Corrupt(format!(
                "run reading in format {} (this version reads 1 to {}): written by a newer nhi-assure?",
                s.format_version,
                crate::store::runs::READING_FORMAT
            )));
        }
        // The inventory and the approvals parsed at once: at a million
        // credentials each is seconds of one core.
        let (sources, approvals) = rayon::join(
            || -> Result<Vec<SourceReading>, StoreError> {
                if s.format_version == 1 {
                    let mut v: serde_json::Value = serde_json::from_str(&s.inventory)?;
                    upgrade_v1_gaps(&mut v)?;
                    Ok(serde_json::from_value(v)?)
                } else {
                    Ok(serde_json::from_str(&s.inventory)?)
                }
            },
            || serde_json::from_str(&s.approvals),
        );
        Ok(RunReading {
            sources: sources?,
            approvals: approvals?,
            rules: serde_json::from_str(&s.rules)?,
        })
    }
}

/// Format 1 kept a gap as `{"what": name, "reason": …}`, the name being
/// what is now the typed gap's display form: read each as the typed gap it
/// stood for. A name no typed gap prints is refused, not guessed at.
fn upgrade_v1_gaps(sources: &mut serde_json::Value) -> Result<(), StoreError> {
    use nhi_contract::{CredentialKind, Unseen};
    let unseen = |what: &str| -> Option<Unseen> {
        let kind = serde_json::from_value::<CredentialKind>(what.into()).ok();
        Some(match (what, kind) {
            (_, Some(kind)) => Unseen::Credentials { kind },
            ("usage", _) => Unseen::Usage,
            ("credential_report", _) => Unseen::CredentialReport,
            ("account", _) => Unseen::Account {
                via_role: None,
                subjects: None,
            },
            ("directory roles", _) => Unseen::DirectoryRoles,
            _ => match (
                what.strip_prefix("account via "),
                what.strip_prefix("subscription "),
            ) {
                (Some(role), _) => Unseen::Account {
                    via_role: Some(role.to_string()),
                    subjects: None,
                },
                (_, Some(id)) => Unseen::Subscription { id: id.to_string() },
                _ => return None,
            },
        })
    };
    let sources = sources.as_array_mut().into_iter().flatten();
    let gaps = sources
        .filter_map(|s| s.pointer_mut("/inventory/coverage/gaps"))
        .filter_map(serde_json::Value::as_array_mut)
        .flatten();
    for gap in gaps {
        let Some(obj) = gap.as_object_mut() else {
            continue;
        };
        let Some(what) = obj.remove("what") else {
            continue;
        };
        let name = what.as_str().unwrap_or_default();
        let typed = unseen(name).ok_or_else(|| {
            StoreError::Corrupt(format!("format-1 reading names an unknown gap {name:?}"))
        })?;
        obj.insert("unseen".into(), serde_json::to_value(typed)?);
    }
    Ok(())
}

/// A source's reading borrowed from the estate: serialises exactly as
/// [`SourceReading`] does, without copying the inventory first (at a
/// million credentials the copy alone was the size of the estate).
#[derive(Serialize)]
struct SourceReadingRef<'a> {
    name: &'a str,
    provider: Provider,
    state: &'a SourceState,
    inventory: Option<InventoryRef<'a>>,
}

/// [`Inventory`]'s fields, borrowed, in its order.
#[derive(Serialize)]
struct InventoryRef<'a> {
    identities: &'a [nhi_contract::Identity],
    credentials: &'a [nhi_contract::Credential],
    entitlements: &'a [nhi_contract::Entitlement],
    grants: &'a [nhi_contract::Grant],
    trusts: &'a [nhi_contract::Trust],
    approvals: &'a [Approval],
    coverage: &'a nhi_contract::Coverage,
}

fn source_refs(estate: &Estate) -> Vec<SourceReadingRef<'_>> {
    estate
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| SourceReadingRef {
            name: &s.name,
            provider: s.provider,
            state: &s.state,
            inventory: estate
                .spans
                .get(i)
                .and_then(Option::as_ref)
                .and_then(|span| {
                    Some(InventoryRef {
                        identities: estate.identities.get(span.identities.clone())?,
                        credentials: estate.credentials.get(span.credentials.clone())?,
                        entitlements: estate.entitlements.get(span.entitlements.clone())?,
                        grants: estate.grants.get(span.grants.clone())?,
                        trusts: estate.trusts.get(span.trusts.clone())?,
                        approvals: &[],
                        coverage: &span.coverage,
                    })
                }),
        })
        .collect()
}

/// What a run read, serialised for the store and not yet prepared for it
/// ([`Unprepared::prepare`]): per source its state and inventory, the
/// approvals as read, the rules evaluated.
pub struct Unprepared {
    /// The inventory, the approvals and the rules, as JSON.
    bodies: [Pieces; 3],
}

/// What a run read, serialised and prepared for the store.
pub struct Serialised {
    /// The bodies kept as text (those neither stored already nor cut);
    /// a body prepared ahead is empty.
    bodies: [String; 3],
    /// What each body became ahead of the run.
    ahead: [Ahead; 3],
}

/// A body of [`Serialised`], prepared ahead of its run.
#[derive(Default)]
enum Ahead {
    /// Its text, as serialised.
    #[default]
    Text,
    /// Stored already, by this hash.
    Stored(String),
    /// Cut and packed.
    Cut(crate::store::runs::Chunked),
}

/// Bytes of one of [`Pieces`]'s pieces.
const PIECE: usize = 4 << 20;

/// JSON text written in pieces of [`PIECE`] bytes. A body of hundreds of
/// megabytes grown by doubling was held twice over while each growth
/// copied it (at a million credentials, 1.2 GB for a 600 MB inventory:
/// the pass's resident peak); pieces are joined only when the text is
/// wanted whole, each freed as it is copied.
#[derive(Default)]
struct Pieces {
    full: Vec<Vec<u8>>,
    last: Vec<u8>,
}

impl Pieces {
    /// `v` as JSON.
    fn json<T: Serialize + ?Sized>(v: &T) -> Result<Pieces, serde_json::Error> {
        let mut p = Pieces::default();
        serde_json::to_writer(&mut p, v)?;
        Ok(p)
    }

    fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.full
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(self.last.as_slice()))
    }

    fn len(&self) -> usize {
        self.slices().map(<[u8]>::len).sum()
    }

    /// The SHA-256 of the text, as `runs::sha256_hex` gives it.
    fn sha256_hex(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for s in self.slices() {
            h.update(s);
        }
        hex::encode(h.finalize())
    }

    /// The pieces of the text's bytes, in order, each given up as taken.
    fn into_pieces(self) -> impl Iterator<Item = Vec<u8>> {
        self.full.into_iter().chain(std::iter::once(self.last))
    }

    /// The text whole.
    fn join(self) -> String {
        let mut out = Vec::with_capacity(self.len());
        for piece in self.full {
            out.extend_from_slice(&piece);
        }
        out.extend_from_slice(&self.last);
        // `serde_json` writes UTF-8, so this keeps the bytes as they are.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl std::io::Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = PIECE - self.last.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.last.extend_from_slice(now);
            if self.last.len() == PIECE {
                self.full.push(std::mem::take(&mut self.last));
            }
            rest = later;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Elements of a list serialised by one task.
const LIST_CHUNK: usize = 8192;

impl Pieces {
    /// `items` as `serde_json` writes a slice (`[a,b]`), serialised in
    /// parallel chunks. A window of chunks at a time, each copied into the
    /// pieces and freed: chunks kept as pieces held their growth's unused
    /// capacity, a quarter more on average (at a million credentials,
    /// the first pass's peak rose by 300 MiB).
    fn list<T: Serialize + Sync>(&mut self, items: &[T]) -> Result<(), serde_json::Error> {
        let window = LIST_CHUNK.saturating_mul(2 * rayon::current_num_threads().max(1));
        self.list_by(items, window)
    }

    /// [`Pieces::list`], `window` elements at a time.
    fn list_by<T: Serialize + Sync>(
        &mut self,
        items: &[T],
        window: usize,
    ) -> Result<(), serde_json::Error> {
        use rayon::prelude::*;
        use std::io::Write;
        let io = serde_json::Error::io;
        self.write_all(b"[").map_err(io)?;
        for (w, items) in items.chunks(window.max(1)).enumerate() {
            let parts: Vec<Vec<u8>> = items
                .par_chunks(LIST_CHUNK)
                .map(|chunk| {
                    let mut buf = Vec::new();
                    for (i, item) in chunk.iter().enumerate() {
                        if i > 0 {
                            buf.push(b',');
                        }
                        serde_json::to_writer(&mut buf, item)?;
                    }
                    Ok(buf)
                })
                .collect::<Result<_, serde_json::Error>>()?;
            for (i, part) in parts.into_iter().enumerate() {
                if w > 0 || i > 0 {
                    self.write_all(b",").map_err(io)?;
                }
                self.write_all(&part).map_err(io)?;
            }
        }
        self.write_all(b"]").map_err(io)
    }

    /// The sources' readings, as `serde_json` writes [`source_refs`], the
    /// long lists in parallel: at a million credentials, serialising them
    /// on one core was the second-longest step of an unchanged pass.
    fn sources(refs: &[SourceReadingRef<'_>]) -> Result<Pieces, serde_json::Error> {
        use std::io::Write;
        let mut p = Pieces::default();
        let raw = |p: &mut Pieces, s: &[u8]| p.write_all(s).map_err(serde_json::Error::io);
        raw(&mut p, b"[")?;
        for (i, s) in refs.iter().enumerate() {
            if i > 0 {
                raw(&mut p, b",")?;
            }
            raw(&mut p, b"{\"name\":")?;
            serde_json::to_writer(&mut p, s.name)?;
            raw(&mut p, b",\"provider\":")?;
            serde_json::to_writer(&mut p, &s.provider)?;
            raw(&mut p, b",\"state\":")?;
            serde_json::to_writer(&mut p, s.state)?;
            raw(&mut p, b",\"inventory\":")?;
            match &s.inventory {
                None => raw(&mut p, b"null")?,
                Some(inv) => {
                    raw(&mut p, b"{\"identities\":")?;
                    p.list(inv.identities)?;
                    raw(&mut p, b",\"credentials\":")?;
                    p.list(inv.credentials)?;
                    raw(&mut p, b",\"entitlements\":")?;
                    p.list(inv.entitlements)?;
                    raw(&mut p, b",\"grants\":")?;
                    p.list(inv.grants)?;
                    raw(&mut p, b",\"trusts\":")?;
                    p.list(inv.trusts)?;
                    raw(&mut p, b",\"approvals\":")?;
                    p.list(inv.approvals)?;
                    raw(&mut p, b",\"coverage\":")?;
                    serde_json::to_writer(&mut p, inv.coverage)?;
                    raw(&mut p, b"}")?;
                }
            }
            raw(&mut p, b"}")?;
        }
        raw(&mut p, b"]")?;
        Ok(p)
    }
}

impl Unprepared {
    /// Serialise what a pass over `estate` with `rules` read.
    pub fn of(estate: &Estate, rules: &RuleSet) -> Result<Unprepared, StoreError> {
        // The inventory's lists in parallel, then the approvals'.
        let inventory = Pieces::sources(&source_refs(estate));
        let approvals = {
            let mut p = Pieces::default();
            p.list(&estate.approvals).map(|()| p)
        };
        Ok(Unprepared {
            bodies: [inventory?, approvals?, Pieces::json(&rule_infos(rules))?],
        })
    }

    /// Prepare each body ahead of the run, dropping its text: one the
    /// store holds already is named by its hash, a large new one is cut
    /// and its new chunks packed, the rest joined into text. What a pass
    /// read is then not held as text while its findings are made (at a
    /// million credentials, 800 MB; packed, a fifth of that when new,
    /// nothing when read before). Bodies and chunks are content-addressed
    /// and never deleted, so what is found stored now is there when the
    /// run is recorded (which checks again).
    pub async fn prepare(self, store: &crate::store::SqlStore) -> Result<Serialised, StoreError> {
        use rayon::prelude::*;
        let hashes: Vec<String> = self.bodies.par_iter().map(Pieces::sha256_hex).collect();
        // The rules stay whole: `run_rules` reads them in one join.
        let may_cut = [true, true, false];
        let mut bodies: [String; 3] = Default::default();
        let mut ahead: [Ahead; 3] = Default::default();
        for ((((pieces, body), ahead), hash), may_cut) in self
            .bodies
            .into_iter()
            .zip(&mut bodies)
            .zip(&mut ahead)
            .zip(hashes)
            .zip(may_cut)
        {
            if store.has_blob(&hash).await? {
                *ahead = Ahead::Stored(hash);
                continue;
            }
            // Cut from its pieces, each dropped once cut: joined, a 600 MB
            // inventory was copied into fresh memory only to be cut.
            if may_cut && crate::store::runs::chunked(true, pieces.len()) {
                *ahead = Ahead::Cut(store.cut_pieces(pieces.into_pieces(), hash).await?);
                continue;
            }
            *body = pieces.join();
        }
        Ok(Serialised { bodies, ahead })
    }
}

impl Serialised {
    /// Borrowed, for [`crate::store::RunRecord::reading`].
    pub fn reading(&self) -> Reading<'_> {
        let [inventory, approvals, rules] = &self.bodies;
        Reading {
            inventory,
            approvals,
            rules,
            ahead: self.ahead.each_ref().map(|a| match a {
                Ahead::Text => crate::store::runs::Ahead::Nothing,
                Ahead::Stored(hash) => crate::store::runs::Ahead::Stored(hash),
                Ahead::Cut(c) => crate::store::runs::Ahead::Cut(c),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text across several pieces, multi-byte characters cut at their
    /// edges, joins and hashes as the text written whole.
    #[test]
    fn pieces_join_and_hash_as_the_whole_text() {
        let words: Vec<String> = (0..300_000)
            .map(|i| format!("identité-{i}-ключ-{}", "é".repeat(i % 7)))
            .collect();
        let whole = serde_json::to_string(&words).expect("json");
        assert!(whole.len() > 2 * PIECE, "spans pieces: {}", whole.len());
        let pieces = Pieces::json(&words).expect("json");
        assert!(pieces.full.len() >= 2);
        assert!(pieces.full.iter().all(|p| p.len() == PIECE));
        assert_eq!(pieces.len(), whole.len());
        assert_eq!(pieces.sha256_hex(), crate::store::runs::sha256_hex(&whole));
        assert_eq!(pieces.join(), whole);
    }

    #[test]
    fn the_borrowed_reading_serialises_as_the_captured_one() {
        // Longer lists than one chunk of a parallel writer.
        let (a, approvals) = generate(SynthSpec {
            identities: 12_000,
            credentials: 2 * LIST_CHUNK + 5,
            seed: 3,
        });
        let (mut b, _) = generate(SynthSpec {
            identities: 10,
            credentials: 20,
            seed: 4,
        });
        b.identities
            .iter_mut()
            .for_each(|i| i.id = format!("b/{}", i.id));
        let mut estate = Estate::default();
        estate.add_inventory("a", Provider::Aws, a);
        estate.add_failed("down", Provider::Azure, "unreachable".into());
        estate.add_inventory("b", Provider::Aws, b);
        estate.approvals = approvals;
        assert!(
            estate.approvals.len() > LIST_CHUNK,
            "approvals spanning chunks"
        );
        let rules =
            RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("rules");
        let captured = serde_json::to_string(&capture(&estate, &rules).sources).expect("json");
        let borrowed = serde_json::to_string(&source_refs(&estate)).expect("json");
        assert_eq!(borrowed, captured);
        assert!(captured.contains("\"credentials\":[{"), "{captured:.200}");
        // Written by hand, lists in parallel chunks: the same text.
        let written = Pieces::sources(&source_refs(&estate)).expect("json");
        assert!(written.full.iter().all(|p| p.len() == PIECE));
        assert_eq!(written.join(), captured);
        // Windows of any size, chunks cut anywhere: the same text.
        let whole = serde_json::to_string(&estate.approvals).expect("json");
        for window in [1, 7, LIST_CHUNK, LIST_CHUNK + 1, usize::MAX] {
            let mut approvals = Pieces::default();
            approvals.list_by(&estate.approvals, window).expect("json");
            assert_eq!(approvals.join(), whole, "window {window}");
        }
        let mut none = Pieces::default();
        none.list(&estate.approvals[..0]).expect("json");
        assert_eq!(none.join(), "[]");
    }
    use crate::engine::plan::Protected;
    use crate::engine::rules::RulesConfig;
    use crate::synth::{generate, synth_now, SynthSpec};

    #[test]
    fn a_format_1_reading_reads_its_untyped_gaps_as_the_typed_ones_they_named() {
        use nhi_contract::{CredentialKind, Unseen};
        let names = [
            (
                "ssh_key",
                Unseen::Credentials {
                    kind: CredentialKind::SshKey,
                },
            ),
            ("usage", Unseen::Usage),
            ("credential_report", Unseen::CredentialReport),
            (
                "account",
                Unseen::Account {
                    via_role: None,
                    subjects: None,
                },
            ),
            (
                "account via arn:aws:iam::1:role/r",
                Unseen::Account {
                    via_role: Some("arn:aws:iam::1:role/r".into()),
                    subjects: None,
                },
            ),
            ("directory roles", Unseen::DirectoryRoles),
            (
                "subscription s-1",
                Unseen::Subscription { id: "s-1".into() },
            ),
        ];
        let gaps: Vec<serde_json::Value> = names
            .iter()
            .map(|(n, _)| serde_json::json!({"what": n, "reason": "refused"}))
            .collect();
        let stored = |gaps: &[serde_json::Value]| crate::store::runs::StoredReading {
            format_version: 1,
            inventory: serde_json::json!([{
                "name": "a", "provider": "aws", "state": {"state": "complete"},
                "inventory": {"coverage": {"gaps": gaps}},
            }])
            .to_string(),
            approvals: "[]".into(),
            rules: "[]".into(),
        };
        let read = RunReading::from_stored(&stored(&gaps)).expect("format 1 reads");
        let got: Vec<Unseen> = read.sources[0]
            .inventory
            .as_ref()
            .map(|i| i.coverage.gaps.iter().map(|g| g.unseen.clone()).collect())
            .unwrap_or_default();
        let want: Vec<Unseen> = names.into_iter().map(|(_, u)| u).collect();
        assert_eq!(got, want);
        let odd = [serde_json::json!({"what": "something else", "reason": "x"})];
        assert!(
            RunReading::from_stored(&stored(&odd)).is_err(),
            "not guessed at"
        );
    }

    #[test]
    fn a_format_2_source_state_reads_as_the_facets_it_stood_for() {
        use crate::engine::facets::Facets;
        use nhi_contract::CredentialKind;
        let stored = |state: serde_json::Value| crate::store::runs::StoredReading {
            format_version: 2,
            inventory: serde_json::json!([{
                "name": "a", "provider": "aws", "state": state, "inventory": null,
            }])
            .to_string(),
            approvals: "[]".into(),
            rules: "[]".into(),
        };
        let state = |v| {
            RunReading::from_stored(&stored(v))
                .expect("format 2 reads")
                .sources
                .remove(0)
                .state
        };
        assert_eq!(
            state(
                serde_json::json!({"state": "partial", "gaps": ["token: 403"],
                "unseen_kinds": ["token"], "unseen_other": false})
            ),
            SourceState::Partial {
                gaps: vec!["token: 403".into()],
                blinds: Facets::credential_kind(CredentialKind::Token),
            }
        );
        assert_eq!(
            state(
                serde_json::json!({"state": "partial", "gaps": ["usage: 403"],
                "unseen_kinds": [], "unseen_other": true})
            ),
            SourceState::Partial {
                gaps: vec!["usage: 403".into()],
                blinds: Facets::WHOLE_SOURCE,
            }
        );
        // What this version writes reads back as it was.
        let now = SourceState::Partial {
            gaps: vec!["directory roles: 403".into()],
            blinds: Facets::PRIVILEGE,
        };
        let text = serde_json::to_value(&now).expect("json");
        assert_eq!(text["blinds"], serde_json::json!([{"type": "privilege"}]));
        assert_eq!(state(text), now);
        assert_eq!(crate::store::runs::READING_FORMAT, 3);
    }

    #[test]
    fn each_source_keeps_what_it_returned_even_when_it_names_another_sources_ids() {
        let spec = |seed| SynthSpec {
            identities: 20,
            credentials: 30,
            seed,
        };
        let (a, _) = generate(spec(1));
        let (mut b, _) = generate(spec(2));
        b.identities
            .iter_mut()
            .for_each(|i| i.id = format!("b/{}", i.id));
        b.credentials.clear();
        b.entitlements.clear();
        b.grants.clear();
        // Cross-account trust read by source b, naming a principal of a.
        b.trusts = vec![nhi_contract::Trust {
            from: a.identities[0].id.clone(),
            to: b.identities[0].id.clone(),
        }];
        let mut estate = Estate::default();
        estate.add_inventory("a", Provider::Aws, a.clone());
        estate.add_failed("dead", Provider::Azure, "timeout".into());
        estate.add_inventory("b", Provider::Aws, b.clone());
        let rules =
            RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("rules");
        let read = capture(&estate, &rules);
        let inv = |i: usize| read.sources[i].inventory.clone();
        assert_eq!(inv(2).map(|i| i.trusts), Some(b.trusts.clone()));
        assert_eq!(
            inv(0).map(|i| i.trusts.len()),
            Some(a.trusts.len()),
            "a's trusts only"
        );
        assert_eq!(inv(0).map(|i| i.credentials), Some(a.credentials));
        assert!(inv(1).is_none(), "a failed source stays unknown");
    }

    #[test]
    fn a_rebuilt_estate_evaluates_as_the_original() {
        let (inv, approvals) = generate(SynthSpec {
            identities: 300,
            credentials: 900,
            seed: 7,
        });
        let (inv2, _) = generate(SynthSpec {
            identities: 50,
            credentials: 100,
            seed: 8,
        });
        let mut estate = Estate {
            approvals,
            ..Estate::default()
        };
        estate.add_inventory("a", Provider::Aws, inv);
        estate.add_failed("b", Provider::Azure, "timeout".into());
        // A second source whose ids differ from the first's.
        let mut inv2 = inv2;
        let rename = |s: &mut String| *s = format!("second/{s}");
        inv2.identities.iter_mut().for_each(|i| rename(&mut i.id));
        inv2.credentials.iter_mut().for_each(|c| {
            rename(&mut c.id);
            rename(&mut c.identity);
        });
        inv2.entitlements.iter_mut().for_each(|e| rename(&mut e.id));
        inv2.grants.iter_mut().for_each(|g| {
            rename(&mut g.identity);
            rename(&mut g.entitlement);
        });
        inv2.trusts.iter_mut().for_each(|t| {
            rename(&mut t.from);
            rename(&mut t.to);
        });
        inv2.approvals.clear();
        estate.add_inventory("c", Provider::Aws, inv2);

        let rules =
            RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("rules");
        let snap = capture(&estate, &rules);
        // Through JSON, as stored.
        let stored = crate::store::runs::StoredReading {
            format_version: crate::store::runs::READING_FORMAT,
            inventory: serde_json::to_string(&snap.sources).expect("json"),
            approvals: serde_json::to_string(&snap.approvals).expect("json"),
            rules: serde_json::to_string(&snap.rules).expect("json"),
        };
        let back = RunReading::from_stored(&stored).expect("parse");
        let newer = crate::store::runs::StoredReading {
            format_version: crate::store::runs::READING_FORMAT + 1,
            ..stored.clone()
        };
        assert!(
            RunReading::from_stored(&newer).is_err(),
            "a newer format is refused"
        );
        assert!(back.sources[1].inventory.is_none(), "failed stays unknown");
        let rebuilt = back.estate();
        assert_eq!(rebuilt.identities, estate.identities);
        assert_eq!(rebuilt.credentials.len(), estate.credentials.len());
        assert_eq!(rebuilt.approvals, estate.approvals);
        assert_eq!(
            serde_json::to_value(&rebuilt.sources).expect("json"),
            serde_json::to_value(&estate.sources).expect("json")
        );
        let hits = |e: &Estate| {
            let eval = crate::engine::evaluate(e, &rules, &Protected::default(), synth_now());
            let mut v: Vec<(u16, String)> = eval
                .hits
                .iter()
                .map(|h| {
                    let r = &rules.rules[h.rule as usize];
                    let subject = match r.subject {
                        crate::engine::rules::Kind::Credential => {
                            e.credentials[h.subject as usize].id.clone()
                        }
                        crate::engine::rules::Kind::Identity => {
                            e.identities[h.subject as usize].id.clone()
                        }
                        crate::engine::rules::Kind::Approval => {
                            e.approvals[h.subject as usize].id.clone()
                        }
                    };
                    (h.rule, subject)
                })
                .collect();
            v.sort();
            v
        };
        let want = hits(&estate);
        assert!(!want.is_empty());
        assert_eq!(hits(&rebuilt), want);
        assert_eq!(back.rules.len(), rules.rules.len());
    }
}
