//! Rule cases: a rule's positive and negative examples as data, run
//! through the real evaluation.
//!
//! Each built-in rule's folder holds a `cases.yaml` beside its `rule.yaml`.
//! A case is a small estate, written as the changes it makes to a shared
//! clean world that fires nothing (`rules/clean-world.yaml`), the
//! evaluation instant, optional rule parameters, and what must and must not
//! fire. `rules/README.md` ("Rule cases") is the reference for authors.
//!
//! Entities are kept as data until a case is built, so a case can change
//! any field of any entity without this module naming the fields; the
//! built entities are then read in the contract's own serde shapes, with
//! its defaults and checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use nhi_contract::{time, Inventory, Provider, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::{
    embedded, parse_yaml, Env, Kind, Param, RuleError, RuleOverride, RuleSet, RulesConfig,
};
use crate::engine::estate::Estate;
use crate::engine::facts::Facts;
use crate::engine::graph::Graph;

/// The file name of a rule's cases in its folder (`<id>/cases.yaml`).
pub const CASES_FILE: &str = "cases.yaml";

/// Where the embedded clean world comes from.
const CLEAN_WORLD_FILE: &str = "rules/clean-world.yaml";

/// One entity as written, with where it was written.
#[derive(Debug, Clone)]
struct Item {
    file: String,
    line: u32,
    value: Value,
}

/// Entity lists as written in a world or a case's `given`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitiesDoc {
    #[serde(default)]
    identities: Vec<Spanned<Value>>,
    #[serde(default)]
    credentials: Vec<Spanned<Value>>,
    #[serde(default)]
    entitlements: Vec<Spanned<Value>>,
    #[serde(default)]
    grants: Vec<Spanned<Value>>,
    #[serde(default)]
    trusts: Vec<Spanned<Value>>,
    #[serde(default)]
    approvals: Vec<Spanned<Value>>,
}

/// The entity kinds, in the order a world lists them.
const KINDS: [&str; 6] = [
    "identities",
    "credentials",
    "entitlements",
    "grants",
    "trusts",
    "approvals",
];

/// Whether entities of this kind have an `id` a case can refer to (grants
/// and trusts are edges: a case adds them).
fn keyed(kind: &str) -> bool {
    !matches!(kind, "grants" | "trusts")
}

/// Entity lists by kind.
#[derive(Debug, Clone, Default)]
struct Entities(BTreeMap<&'static str, Vec<Item>>);

impl EntitiesDoc {
    fn into_entities(self, file: &str) -> Entities {
        let item = |s: Spanned<Value>| Item {
            file: file.to_string(),
            line: s.referenced.line() as u32,
            value: s.value,
        };
        let lists = [
            self.identities,
            self.credentials,
            self.entitlements,
            self.grants,
            self.trusts,
            self.approvals,
        ];
        Entities(
            KINDS
                .into_iter()
                .zip(lists)
                .map(|(k, l)| (k, l.into_iter().map(item).collect()))
                .collect(),
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceDoc {
    name: String,
    provider: Provider,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorldDoc {
    now: Spanned<String>,
    source: SourceDoc,
    #[serde(default)]
    identities: Vec<Spanned<Value>>,
    #[serde(default)]
    credentials: Vec<Spanned<Value>>,
    #[serde(default)]
    entitlements: Vec<Spanned<Value>>,
    #[serde(default)]
    grants: Vec<Spanned<Value>>,
    #[serde(default)]
    trusts: Vec<Spanned<Value>>,
    #[serde(default)]
    approvals: Vec<Spanned<Value>>,
}

/// A problem at a place in a case or world file.
#[derive(Debug)]
struct Located {
    file: String,
    line: u32,
    message: String,
}

impl Located {
    fn at(item: &Item, message: String) -> Located {
        Located {
            file: item.file.clone(),
            line: item.line,
            message,
        }
    }
}

/// The estate every case starts from: one inventory source plus approvals,
/// and the default evaluation instant.
#[derive(Debug, Clone)]
pub struct World {
    now: Timestamp,
    source: String,
    provider: Provider,
    entities: Entities,
}

/// `now`, or `now` followed by terms like `-91d`, `+10d`, `-1h`
/// (`now-1h+48h`): an instant relative to the evaluation instant. `None`
/// when `s` is not of that form.
fn relative(s: &str, now: Timestamp) -> Option<Timestamp> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut rest = compact.strip_prefix("now")?;
    let mut t = now;
    while !rest.is_empty() {
        let negative = match rest.as_bytes().first() {
            Some(b'+') => false,
            Some(b'-') => true,
            _ => return None,
        };
        let body = rest.get(1..)?;
        let digits = body.find(|c: char| !c.is_ascii_digit())?;
        let n: i64 = body.get(..digits)?.parse().ok()?;
        let n = if negative { n.checked_neg()? } else { n };
        let d = match body.get(digits..digits.checked_add(1)?)? {
            "d" => time::days(n),
            "h" => time::hours(n),
            _ => return None,
        };
        t = time::add(t, d);
        rest = body.get(digits.checked_add(1)?..)?;
    }
    Some(t)
}

/// Replace every relative instant in `v` by its RFC 3339 form.
fn resolve_times(v: &mut Value, now: Timestamp) {
    match v {
        Value::String(s) => {
            if let Some(t) = relative(s, now) {
                *s = t.to_rfc3339_opts(SecondsFormat::Secs, true);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| resolve_times(v, now)),
        Value::Object(m) => m.values_mut().for_each(|v| resolve_times(v, now)),
        _ => {}
    }
}

/// An instant as written: RFC 3339, or relative to `now`.
fn instant(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    let t = match relative(s, now) {
        Some(t) => t,
        None => s
            .parse::<DateTime<Utc>>()
            .map_err(|e| format!("{s:?} is not an instant (RFC 3339, or now±Nd/Nh): {e}"))?,
    };
    time::check(t).map_err(|e| e.to_string())
}

fn id_of(v: &Value) -> Option<&str> {
    v.get("id").and_then(Value::as_str)
}

/// Apply one entry of a case's `given` to the entities of one kind.
///
/// With the id of an entity already there, each key given replaces that
/// field (`null` resets it to the contract's default); `remove: true` drops
/// the entity; `like: <id>` adds a copy of another entity under the new id
/// with the keys given; any other entry is added as written.
fn apply(items: &mut Vec<Item>, kind: &str, change: Item) -> Result<(), Located> {
    let Value::Object(mut fields) = change.value.clone() else {
        return Err(Located::at(&change, format!("{kind}: expected a mapping")));
    };
    if !keyed(kind) {
        items.push(change);
        return Ok(());
    }
    let Some(id) = id_of(&change.value).map(str::to_string) else {
        return Err(Located::at(
            &change,
            format!("{kind}: an entry needs an `id` (of the entity it changes or adds)"),
        ));
    };
    let remove = match fields.remove("remove") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(Located::at(&change, "remove: expected true".into())),
    };
    let like = match fields.remove("like") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(Located::at(&change, "like: expected an id".into())),
    };
    let at = items
        .iter()
        .position(|i| id_of(&i.value) == Some(id.as_str()));
    let overlay = |target: &mut Map<String, Value>| {
        for (k, v) in &fields {
            if v.is_null() {
                target.remove(k);
            } else {
                target.insert(k.clone(), v.clone());
            }
        }
    };
    match (at, like, remove) {
        (Some(i), None, true) if fields.len() == 1 => {
            items.remove(i);
        }
        (at, _, true) => {
            let why = if at.is_none() {
                "is not in the world"
            } else {
                "is removed: give only its id and `remove: true`"
            };
            return Err(Located::at(&change, format!("{kind}: {id:?} {why}")));
        }
        (Some(_), Some(_), false) => {
            return Err(Located::at(
                &change,
                format!("{kind}: {id:?} is already in the world; `like` adds a new entity"),
            ))
        }
        (None, Some(like), false) => {
            let Some(src) = items
                .iter()
                .find(|i| id_of(&i.value) == Some(like.as_str()))
            else {
                return Err(Located::at(
                    &change,
                    format!("{kind}: like: {like:?} is not in the world"),
                ));
            };
            let mut value = src.value.clone();
            if let Value::Object(m) = &mut value {
                overlay(m);
            }
            items.push(Item { value, ..change });
        }
        (Some(i), None, false) => {
            if let Some(item) = items.get_mut(i) {
                if let Value::Object(m) = &mut item.value {
                    overlay(m);
                }
                // A bad field is most likely in the change: point there.
                item.file = change.file;
                item.line = change.line;
            }
        }
        (None, None, false) => items.push(change),
    }
    Ok(())
}

/// Read built entities in their contract shape.
fn typed<T: DeserializeOwned>(kind: &str, items: &[Item]) -> Result<Vec<T>, Located> {
    items
        .iter()
        .map(|i| {
            serde_json::from_value(i.value.clone())
                .map_err(|e| Located::at(i, format!("{kind}: {e}")))
        })
        .collect()
}

impl World {
    /// The built-in clean world (`rules/clean-world.yaml`): fires none of
    /// the built-in rules.
    pub fn clean() -> Result<World, RuleError> {
        World::parse(CLEAN_WORLD_FILE, embedded::CLEAN_WORLD)
    }

    /// Parse a world file and check that its entities read as the
    /// contract's types.
    pub fn parse(file: &str, text: &str) -> Result<World, RuleError> {
        let doc: WorldDoc = parse_yaml(file, text)?;
        let now = instant(&doc.now.value, Utc::now()).map_err(|message| RuleError {
            file: file.to_string(),
            line: doc.now.referenced.line() as u32,
            message: format!("now: {message}"),
            key: Vec::new(),
        })?;
        let entities = EntitiesDoc {
            identities: doc.identities,
            credentials: doc.credentials,
            entitlements: doc.entitlements,
            grants: doc.grants,
            trusts: doc.trusts,
            approvals: doc.approvals,
        }
        .into_entities(file);
        let world = World {
            now,
            source: doc.source.name,
            provider: doc.source.provider,
            entities,
        };
        world
            .build(now, &Entities::default())
            .map_err(|l| RuleError {
                file: l.file,
                line: l.line,
                message: l.message,
                key: Vec::new(),
            })?;
        Ok(world)
    }

    /// The world with `given` applied, as the estate the engine reads.
    fn build(&self, now: Timestamp, given: &Entities) -> Result<Estate, Located> {
        let mut built = self.entities.clone();
        for (kind, changes) in &given.0 {
            let items = built.0.entry(kind).or_default();
            for change in changes {
                apply(items, kind, change.clone())?;
            }
        }
        for items in built.0.values_mut() {
            for i in items.iter_mut() {
                resolve_times(&mut i.value, now);
            }
        }
        let list = |k: &str| built.0.get(k).map(Vec::as_slice).unwrap_or_default();
        let inv = Inventory {
            identities: typed("identities", list("identities"))?,
            credentials: typed("credentials", list("credentials"))?,
            entitlements: typed("entitlements", list("entitlements"))?,
            grants: typed("grants", list("grants"))?,
            trusts: typed("trusts", list("trusts"))?,
            approvals: Vec::new(),
            coverage: Default::default(),
        };
        let mut estate = Estate {
            approvals: typed("approvals", list("approvals"))?,
            ..Estate::default()
        };
        estate.add_inventory(&self.source, self.provider, inv);
        Ok(estate)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDoc {
    name: String,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    given: EntitiesDoc,
    #[serde(default)]
    params: BTreeMap<String, Param>,
    #[serde(default)]
    overrides: BTreeMap<String, RuleOverride>,
    #[serde(default)]
    fires: Option<Spanned<Vec<PairDoc>>>,
    #[serde(default)]
    fires_including: Vec<PairDoc>,
    #[serde(default)]
    does_not_fire: Vec<PairDoc>,
}

/// `[rule, subject]` as written.
type PairDoc = Spanned<(String, String)>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    cases: Vec<Spanned<CaseDoc>>,
}

/// One expected (rule, subject) pair and the line it is written on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Rule id.
    pub rule: String,
    /// Credential, identity or approval id, by the rule's subject kind.
    pub subject: String,
    /// 1-based line.
    pub line: u32,
}

impl Expect {
    fn from_doc(s: PairDoc) -> Expect {
        Expect {
            rule: s.value.0,
            subject: s.value.1,
            line: s.referenced.line() as u32,
        }
    }

    fn pair(&self) -> (String, String) {
        (self.rule.clone(), self.subject.clone())
    }
}

/// One case: changes to the world, the instant, parameters, expectations.
#[derive(Debug, Clone)]
pub struct Case {
    /// What it shows, unique in its file.
    pub name: String,
    /// 1-based line where it starts.
    pub line: u32,
    now: Option<String>,
    given: Entities,
    params: BTreeMap<String, Param>,
    overrides: BTreeMap<String, RuleOverride>,
    /// Exactly the pairs that fire (every loaded rule, every subject), if
    /// given, and the line of the list.
    pub fires: Option<(Vec<Expect>, u32)>,
    /// Pairs that fire (others may too).
    pub fires_including: Vec<Expect>,
    /// Pairs that do not fire.
    pub does_not_fire: Vec<Expect>,
}

impl Case {
    /// It expects `rule` to fire on some subject.
    pub fn positive_for(&self, rule: &str) -> bool {
        self.fires
            .iter()
            .flat_map(|(f, _)| f)
            .chain(&self.fires_including)
            .any(|e| e.rule == rule)
    }

    /// It expects `rule` not to fire on some subject: it names the rule in
    /// `does_not_fire`, or lists exactly what fires without it.
    pub fn negative_for(&self, rule: &str) -> bool {
        self.does_not_fire.iter().any(|e| e.rule == rule)
            || self
                .fires
                .as_ref()
                .is_some_and(|(f, _)| f.iter().all(|e| e.rule != rule))
    }
}

/// A parsed cases file.
#[derive(Debug, Clone)]
pub struct CaseFile {
    /// Where it was read from.
    pub file: String,
    /// The rule whose folder holds it (`<id>/cases.yaml`).
    pub rule: Option<String>,
    /// Its cases, in file order.
    pub cases: Vec<Case>,
}

impl CaseFile {
    /// Parse a cases file; any problem is an error with its file and line.
    pub fn parse(file: &str, text: &str, rule: Option<String>) -> Result<CaseFile, RuleError> {
        let doc: FileDoc = parse_yaml(file, text)?;
        let mut cases: Vec<Case> = Vec::new();
        for c in doc.cases {
            let line = c.referenced.line() as u32;
            let d = c.value;
            let err = |message: String| RuleError {
                file: file.to_string(),
                line,
                message: format!("case {:?}: {message}", d.name),
                key: Vec::new(),
            };
            if d.name.trim().is_empty() {
                return Err(err("needs a name".into()));
            }
            if cases.iter().any(|c| c.name == d.name) {
                return Err(err("duplicate case name".into()));
            }
            if d.fires.is_none() && d.fires_including.is_empty() && d.does_not_fire.is_empty() {
                return Err(err(
                    "expects nothing: give fires, fires_including or does_not_fire".into(),
                ));
            }
            cases.push(Case {
                name: d.name,
                line,
                now: d.now,
                given: d.given.into_entities(file),
                params: d.params,
                overrides: d.overrides,
                fires: d.fires.map(|f| {
                    let line = f.referenced.line() as u32;
                    (f.value.into_iter().map(Expect::from_doc).collect(), line)
                }),
                fires_including: d
                    .fires_including
                    .into_iter()
                    .map(Expect::from_doc)
                    .collect(),
                does_not_fire: d.does_not_fire.into_iter().map(Expect::from_doc).collect(),
            });
        }
        Ok(CaseFile {
            file: file.to_string(),
            rule,
            cases,
        })
    }
}

/// The built-in rules' cases (embedded `rules/builtin/<id>/cases.yaml`).
pub fn builtin() -> Result<Vec<CaseFile>, RuleError> {
    embedded::CASES
        .iter()
        .map(|(n, t)| {
            let rule = n.split_once('/').map(|(id, _)| id.to_string());
            CaseFile::parse(&format!("rules/builtin/{n}"), t, rule)
        })
        .collect()
}

/// The cases of a rule pack directory: every `<id>/cases.yaml`.
pub fn pack(dir: &Path) -> Result<Vec<CaseFile>, RuleError> {
    let mut out = Vec::new();
    for sub in super::entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let path = sub.join(CASES_FILE);
        if path.is_file() {
            let (file, text) = super::read_text(dir, &path)?;
            let rule = sub.file_name().map(|n| n.to_string_lossy().into_owned());
            out.push(CaseFile::parse(&file, &text, rule)?);
        }
    }
    Ok(out)
}

/// What running cases found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    /// Cases run.
    pub cases: usize,
    /// The failures, in file and case order.
    pub failures: Vec<CaseFailure>,
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.failures {
            writeln!(f, "{x}")?;
        }
        write!(f, "{} cases, {} failed", self.cases, self.failures.len())
    }
}

fn count(files: &[CaseFile]) -> usize {
    files.iter().map(|f| f.cases.len()).sum()
}

/// Run the cases of the configured packs from the clean world: the
/// built-in pack's (unless turned off) against the pack as shipped, and
/// every `<id>/cases.yaml` of each `rules.paths` directory (relative to
/// `base`) against the rules the config loads. The config's parameters
/// and overrides are left out: a case states its own, so it holds however
/// a deployment tunes the rules.
pub fn check(cfg: &RulesConfig, base: &Path) -> Result<Checked, RuleError> {
    let world = World::clean()?;
    let mut out = Checked::default();
    if cfg.builtin {
        let files = builtin()?;
        out.cases = count(&files);
        out.failures = run(&RulesConfig::default(), base, &world, &files)?;
    }
    let mut packs = Vec::new();
    for dir in &cfg.paths {
        packs.extend(pack(&base.join(dir))?);
    }
    if !packs.is_empty() {
        let plain = RulesConfig {
            params: BTreeMap::new(),
            overrides: BTreeMap::new(),
            ..cfg.clone()
        };
        out.cases = out.cases.saturating_add(count(&packs));
        out.failures.extend(run(&plain, base, &world, &packs)?);
    }
    Ok(out)
}

/// A case whose expectation did not hold, or that could not be run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseFailure {
    /// The file of the case (or of the world entity at fault).
    pub file: String,
    /// 1-based line of what failed.
    pub line: u32,
    /// The case's name.
    pub case: String,
    /// What was expected and what happened.
    pub message: String,
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: case {:?}: {}",
            self.file, self.line, self.case, self.message
        )
    }
}

/// (rule id, subject id) pairs that fire in `estate` at `now`.
///
/// The engine's own sequence (graph, facts, rules) up to the hits: this
/// module sits below `engine` and must not call back into it.
fn fired(rules: &RuleSet, estate: &Estate, now: Timestamp) -> BTreeSet<(String, String)> {
    let graph = Graph::build(estate);
    let facts = Facts::compute(estate, &graph, now);
    let env = Env {
        estate,
        facts: &facts,
    };
    rules
        .evaluate(&env)
        .iter()
        .filter_map(|h| {
            let r = rules.rules.get(usize::from(h.rule))?;
            Some((
                r.id.clone(),
                subject_id(estate, r.subject, h.subject as usize)?,
            ))
        })
        .collect()
}

fn subject_id(estate: &Estate, kind: Kind, s: usize) -> Option<String> {
    match kind {
        Kind::Credential => estate.credentials.get(s).map(|c| c.id.clone()),
        Kind::Identity => estate.identities.get(s).map(|i| i.id.clone()),
        Kind::Approval => estate.approvals.get(s).map(|a| a.id.clone()),
    }
}

fn has_subject(estate: &Estate, kind: Kind, id: &str) -> bool {
    match kind {
        Kind::Credential => estate.credentials.iter().any(|c| c.id == id),
        Kind::Identity => estate.identities.iter().any(|i| i.id == id),
        Kind::Approval => estate.approvals.iter().any(|a| a.id == id),
    }
}

fn show(pairs: &BTreeSet<(String, String)>) -> String {
    if pairs.is_empty() {
        return "nothing".into();
    }
    pairs
        .iter()
        .map(|(r, s)| format!("[{r}, {s}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Run every case in `files` from `world` with the rules `cfg` loads
/// (relative paths against `base`), each case's `params` and `overrides`
/// applied on top. Returns every failure, in file and case order; an error
/// only when the rule set itself does not load.
pub fn run(
    cfg: &RulesConfig,
    base: &Path,
    world: &World,
    files: &[CaseFile],
) -> Result<Vec<CaseFailure>, RuleError> {
    let shared = RuleSet::load(cfg, base)?;
    let mut failures = Vec::new();
    for f in files {
        for case in &f.cases {
            failures.extend(run_case(cfg, base, &shared, world, &f.file, case));
        }
    }
    Ok(failures)
}

fn run_case(
    cfg: &RulesConfig,
    base: &Path,
    shared: &RuleSet,
    world: &World,
    file: &str,
    case: &Case,
) -> Vec<CaseFailure> {
    let fail = |file: &str, line: u32, message: String| CaseFailure {
        file: file.to_string(),
        line,
        case: case.name.clone(),
        message,
    };
    let now = match case.now.as_deref().map(|s| instant(s, world.now)) {
        None => world.now,
        Some(Ok(t)) => t,
        Some(Err(m)) => return vec![fail(file, case.line, format!("now: {m}"))],
    };
    let estate = match world.build(now, &case.given) {
        Ok(e) => e,
        Err(l) => return vec![fail(&l.file, l.line, l.message)],
    };
    let own;
    let rules = if case.params.is_empty() && case.overrides.is_empty() {
        shared
    } else {
        let mut cfg = cfg.clone();
        cfg.params.extend(case.params.clone());
        cfg.overrides.extend(case.overrides.clone());
        match RuleSet::load(&cfg, base) {
            Ok(r) => {
                own = r;
                &own
            }
            Err(e) => return vec![fail(file, case.line, format!("params: {e}"))],
        }
    };
    let fired = fired(rules, &estate, now);

    let mut out = Vec::new();
    let all = case
        .fires
        .iter()
        .flat_map(|(f, _)| f)
        .chain(&case.fires_including)
        .chain(&case.does_not_fire);
    // A pair naming no loaded rule or no subject in the world would pass
    // a negative expectation vacuously.
    for e in all {
        match rules.rules.iter().find(|r| r.id == e.rule) {
            None => out.push(fail(file, e.line, format!("no loaded rule {:?}", e.rule))),
            Some(r) if !has_subject(&estate, r.subject, &e.subject) => out.push(fail(
                file,
                e.line,
                format!(
                    "{} {:?} is not in the case's world",
                    r.subject.as_str(),
                    e.subject
                ),
            )),
            Some(_) => {}
        }
    }
    if !out.is_empty() {
        return out;
    }
    if let Some((exact, line)) = &case.fires {
        let want: BTreeSet<(String, String)> = exact.iter().map(Expect::pair).collect();
        if want != fired {
            let missing: BTreeSet<_> = want.difference(&fired).cloned().collect();
            let extra: BTreeSet<_> = fired.difference(&want).cloned().collect();
            out.push(fail(
                file,
                *line,
                format!(
                    "fires: expected exactly {}; did not fire: {}; also fired: {}",
                    show(&want),
                    show(&missing),
                    show(&extra)
                ),
            ));
        }
    }
    for e in &case.fires_including {
        if !fired.contains(&e.pair()) {
            out.push(fail(
                file,
                e.line,
                format!(
                    "fires_including: {} did not fire on {}; fired: {}",
                    e.rule,
                    e.subject,
                    show(&fired)
                ),
            ));
        }
    }
    for e in &case.does_not_fire {
        if fired.contains(&e.pair()) {
            out.push(fail(
                file,
                e.line,
                format!("does_not_fire: {} fired on {}", e.rule, e.subject),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32) -> Timestamp {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn relative_instants() {
        let now = at(2026, 11, 20, 12);
        assert_eq!(relative("now", now), Some(now));
        assert_eq!(relative("now-91d", now), Some(at(2026, 8, 21, 12)));
        assert_eq!(relative("now - 1h + 48h", now), Some(at(2026, 11, 22, 11)));
        for not in [
            "nowhere",
            "now-",
            "now-5",
            "now-5w",
            "now+-1d",
            "owner",
            "now-99999999999999999999d",
        ] {
            assert_eq!(relative(not, now), None, "{not}");
        }
        // Saturates rather than overflowing; the contract's range check rejects it.
        assert!(instant("now+9223372036854775807d", now).is_err());
    }

    fn run_text(text: &str) -> Vec<CaseFailure> {
        let world = World::clean().expect("clean world");
        let file = CaseFile::parse("c.yaml", text, None).expect("parses");
        run(&RulesConfig::default(), Path::new("."), &world, &[file]).expect("rules load")
    }

    fn lines(failures: &[CaseFailure]) -> Vec<(u32, &str)> {
        failures
            .iter()
            .map(|f| (f.line, f.message.as_str()))
            .collect()
    }

    #[test]
    fn a_wrong_expectation_fails_at_its_line() {
        let f = run_text(
            "cases:\n  - name: n\n    fires:\n      - [credential-stale, AKIAAAAAAAAAAAAAAAA1]\n    fires_including:\n      - [credential-stale, AKIAAAAAAAAAAAAAAAA1]\n    does_not_fire:\n      - [credential-stale, AKIAAAAAAAAAAAAAAAA1]\n",
        );
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].line, 4, "{f:?}");
        assert!(
            f[0].message
                .contains("did not fire: [credential-stale, AKIAAAAAAAAAAAAAAAA1]"),
            "{f:?}"
        );
        assert_eq!(f[1].line, 6, "{f:?}");
        assert_eq!(f[0].case, "n");
        assert_eq!(
            f[0].to_string().split(": ").next(),
            Some("c.yaml:4"),
            "{}",
            f[0]
        );
        // The negative expectation holds: nothing fires in the clean world.
        let f = run_text(
            "cases:\n  - name: n\n    given:\n      credentials:\n        - {id: AKIAAAAAAAAAAAAAAAA1, created: now-91d}\n    does_not_fire:\n      - [credential-rotation-overdue, AKIAAAAAAAAAAAAAAAA1]\n",
        );
        assert_eq!(
            lines(&f),
            [(
                7,
                "does_not_fire: credential-rotation-overdue fired on AKIAAAAAAAAAAAAAAAA1"
            )]
        );
    }

    #[test]
    fn unknown_rules_and_subjects_fail_instead_of_passing_vacuously() {
        let f = run_text(
            "cases:\n  - name: n\n    does_not_fire:\n      - [credential-stael, AKIAAAAAAAAAAAAAAAA1]\n      - [credential-stale, AKIAAAAAAAAAAAAAAAA9]\n      - [credential-stale, APR-1]\n",
        );
        assert_eq!(
            lines(&f),
            [
                (4, "no loaded rule \"credential-stael\""),
                (
                    5,
                    "credential \"AKIAAAAAAAAAAAAAAAA9\" is not in the case's world"
                ),
                (6, "credential \"APR-1\" is not in the case's world"),
            ]
        );
    }

    #[test]
    fn a_bad_entity_field_fails_at_the_change() {
        let f = run_text(
            "cases:\n  - name: n\n    given:\n      credentials:\n        - {id: AKIAAAAAAAAAAAAAAAA1, usage: {state: sometimes}}\n    fires: []\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].file.as_str(), f[0].line), ("c.yaml", 5), "{f:?}");
        assert!(
            f[0].message
                .starts_with("credentials: unknown variant `sometimes`"),
            "{f:?}"
        );
        let f = run_text(
            "cases:\n  - name: n\n    given:\n      approvals:\n        - {id: APR-9, like: APR-8}\n        - {id: APR-1, remove: true, approver: x}\n    fires: []\n",
        );
        assert_eq!(
            lines(&f),
            [(5, "approvals: like: \"APR-8\" is not in the world")]
        );
        for (entry, why) in [
            (
                "{id: APR-1, remove: true, approver: x}",
                "approvals: \"APR-1\" is removed: give only its id and `remove: true`",
            ),
            (
                "{id: APR-2, remove: true}",
                "approvals: \"APR-2\" is not in the world",
            ),
        ] {
            let f = run_text(&format!(
                "cases:\n  - name: n\n    given:\n      approvals:\n        - {entry}\n    fires: []\n"
            ));
            assert_eq!(lines(&f), [(5, why)]);
        }
        let f = run_text("cases:\n  - name: n\n    params: {stale_dayz: 3}\n    fires: []\n");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].line == 2 && f[0].message.contains("unknown rule parameter"),
            "{f:?}"
        );
    }

    #[test]
    fn changes_replace_fields_add_like_and_remove() {
        let world = World::clean().expect("clean world");
        let file = CaseFile::parse(
            "c.yaml",
            "cases:\n  - name: n\n    given:\n      credentials:\n        - {id: K2, like: AKIAAAAAAAAAAAAAAAA1, active: false}\n        - {id: AKIAAAAAAAAAAAAAAAA1, usage: null, created: now-1h}\n      approvals:\n        - {id: APR-1, remove: true}\n    fires: []\n",
            None,
        )
        .expect("parses");
        let case = &file.cases[0];
        let estate = world.build(world.now, &case.given).expect("builds");
        assert!(estate.approvals.is_empty());
        let ids: Vec<(&str, bool)> = estate
            .credentials
            .iter()
            .map(|c| (c.id.as_str(), c.active))
            .collect();
        assert_eq!(ids, [("AKIAAAAAAAAAAAAAAAA1", true), ("K2", false)]);
        let k1 = &estate.credentials[0];
        assert_eq!(
            k1.usage,
            nhi_contract::Usage::Unknown,
            "null resets to the default"
        );
        assert_eq!(k1.created, Some(time::add(world.now, time::hours(-1))));
        // The copy keeps the original's other fields.
        assert_eq!(estate.credentials[1].identity, k1.identity);
    }

    #[test]
    fn case_file_errors_are_located() {
        for (text, want) in [
            ("cases:\n  - name: n\n    fire: []\n", "c.yaml:3:"),
            (
                "cases:\n  - name: n\n    given: {}\n",
                "c.yaml:2: case \"n\": expects nothing",
            ),
            (
                "cases:\n  - name: n\n    fires: []\n  - name: n\n    fires: []\n",
                "c.yaml:4: case \"n\": duplicate case name",
            ),
            ("cases:\n  - name: n\n    fires: [[a]]\n", "c.yaml:3:"),
        ] {
            let e = CaseFile::parse("c.yaml", text, None)
                .expect_err(text)
                .to_string();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

            /// Any value in any field of a change, and any instant: never a
            /// panic; a case that cannot run fails at a line.
            #[test]
            fn any_change_runs_or_fails_located(
                field in "(created|expires|usage|active|kind|name|identity|like|remove|at)",
                value in r"(now([+-][0-9]{1,22}[dhx])*|-?[0-9]{1,22}|true|null|\[\]|\{\}|\{state: used, at: now\+[0-9]{1,22}d\}|[a-z_]{0,8})",
                now in r"(now([+-][0-9]{1,22}[dh])?|2026-11-20T12:00:00Z|[0-9]{4}-01-01T00:00:00Z|x)",
            ) {
                let text = format!(
                    "cases:\n  - name: n\n    now: \"{now}\"\n    given:\n      credentials:\n        - {{id: AKIAAAAAAAAAAAAAAAA1, {field}: {value}}}\n    does_not_fire:\n      - [credential-stale, AKIAAAAAAAAAAAAAAAA1]\n"
                );
                match CaseFile::parse("c.yaml", &text, None) {
                    Err(e) => prop_assert!(e.to_string().starts_with("c.yaml:"), "{}", e),
                    Ok(file) => {
                        let world = World::clean().expect("clean world");
                        let failures = run(&RulesConfig::default(), Path::new("."), &world, &[file])
                            .expect("rules load");
                        for f in failures {
                            // An instant that puts the world's own dates out of
                            // range is reported at the world's line.
                            let file_ok = f.file == "c.yaml" || f.file == CLEAN_WORLD_FILE;
                            prop_assert!(file_ok && f.line > 0, "{}", f);
                        }
                    }
                }
            }
        }
    }
}
