//! Snapshot connector: reads an inventory exported as JSON.
//!
//! It lets nhi-assure run offline on exports (air-gapped audits) and on the
//! bundled demo estate. The format is the contract model verbatim, wrapped
//! in a small header; see `README.md` beside this crate.
//!
//! The reader is strict: unknown fields, a credential naming an identity the
//! file does not hold, duplicate ids or an identity of another provider fail
//! the scan with `file:line:column`, so the engine treats the source as
//! unknown instead of silently reading less.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use nhi_contract::{Inventory, InventorySource, Provider, SourceError, Timestamp};
use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess, Visitor,
};
use serde::{Deserialize, Serialize};

/// The format tag every snapshot file starts with.
pub const FORMAT: &str = "nhi-assure.snapshot/v1";

/// A snapshot file: a header, then the contract's [`Inventory`] fields at
/// the same level (`identities`, `credentials`, …, `coverage`). The
/// inventory is read by its own strict deserializer, streaming, so an error
/// anywhere keeps its `line:column`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotFile {
    /// Must be [`FORMAT`].
    pub format: String,
    /// Provider every identity in the file belongs to.
    pub provider: Provider,
    /// When the export was taken.
    pub exported_at: Option<Timestamp>,
    /// What the export saw.
    #[serde(flatten)]
    pub inventory: Inventory,
}

impl SnapshotFile {
    /// Wrap an inventory for export.
    pub fn new(provider: Provider, exported_at: Option<Timestamp>, inventory: Inventory) -> Self {
        SnapshotFile {
            format: FORMAT.to_string(),
            provider,
            exported_at,
            inventory,
        }
    }
}

/// The header fields, collected while the inventory is read.
#[derive(Default)]
struct Header {
    format: Option<String>,
    provider: Option<Provider>,
    exported_at: Option<Option<Timestamp>>,
}

/// `exported_at` read with the contract's date bounds.
#[derive(Deserialize)]
struct ExportedAt(
    #[serde(deserialize_with = "nhi_contract::time::deserialize_opt")] Option<Timestamp>,
);

impl<'de> Deserialize<'de> for SnapshotFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut header = Header::default();
        let inventory = Inventory::deserialize(HeaderThenInventory {
            de: d,
            header: &mut header,
        })?;
        // Presence was checked inside the object (located); this cannot fail.
        let (Some(format), Some(provider)) = (header.format, header.provider) else {
            return Err(D::Error::missing_field("format"));
        };
        Ok(SnapshotFile {
            format,
            provider,
            exported_at: header.exported_at.flatten(),
            inventory,
        })
    }
}

/// Hands the file's object to [`Inventory`]'s deserializer with the header
/// keys taken out (the header is not a copy of the inventory's fields, and
/// serde's `flatten` would buffer the file and lose error locations).
struct HeaderThenInventory<'h, D> {
    de: D,
    header: &'h mut Header,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for HeaderThenInventory<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_map(HeaderVisitor {
            inner: visitor,
            header: self.header,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct HeaderVisitor<'h, V> {
    inner: V,
    header: &'h mut Header,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for HeaderVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("struct SnapshotFile")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let value = self.inner.visit_map(WithoutHeader {
            map,
            header: &mut *self.header,
        })?;
        // Inside the object still, so the error is located at its end.
        if self.header.format.is_none() {
            return Err(A::Error::missing_field("format"));
        }
        if self.header.provider.is_none() {
            return Err(A::Error::missing_field("provider"));
        }
        Ok(value)
    }
}

/// The file's entries without the header's, which it records.
struct WithoutHeader<'h, A> {
    map: A,
    header: &'h mut Header,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutHeader<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        // Like a derived struct: a repeated key is refused where it stands.
        fn first<T, E: de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::duplicate_field(name)),
                None => Ok(()),
            }
        }
        while let Some(key) = self.map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    first(&self.header.format, "format")?;
                    self.header.format = Some(self.map.next_value()?);
                }
                "provider" => {
                    first(&self.header.provider, "provider")?;
                    self.header.provider = Some(self.map.next_value()?);
                }
                "exported_at" => {
                    first(&self.header.exported_at, "exported_at")?;
                    let ExportedAt(at) = self.map.next_value()?;
                    self.header.exported_at = Some(at);
                }
                _ => return seed.deserialize(key.into_deserializer()).map(Some),
            }
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Configuration of one snapshot source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Source name, unique in the config.
    pub name: String,
    /// Provider the file holds.
    pub provider: Provider,
    /// Path of the JSON file (relative paths are resolved by the caller).
    pub path: PathBuf,
}

impl nhi_contract::SourceConnector for SnapshotConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn inventory(&self, base: &std::path::Path) -> Box<dyn InventorySource> {
        // `join` keeps an absolute path as it is.
        Box::new(SnapshotSource::new(SnapshotConfig {
            path: base.join(&self.path),
            ..self.clone()
        }))
    }
}

/// An [`InventorySource`] over one snapshot file.
#[derive(Debug)]
pub struct SnapshotSource {
    config: SnapshotConfig,
    /// The file as it was when last read whole (unchanged during the read).
    read: std::sync::Mutex<Option<Stamp>>,
}

/// What tells one version of a file from another without reading it: an
/// export replaces the file (a new inode) or rewrites it (a new mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: (u64, u64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        };
        #[cfg(not(unix))]
        let inode = (0, 0);
        Some(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            inode,
        })
    }
}

impl SnapshotSource {
    /// Create a source; nothing is read until [`InventorySource::scan`].
    pub fn new(config: SnapshotConfig) -> Self {
        SnapshotSource {
            config,
            read: std::sync::Mutex::new(None),
        }
    }

    fn last_read(&self) -> Option<Stamp> {
        *self.read.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl InventorySource for SnapshotSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn provider(&self) -> Provider {
        self.config.provider
    }

    async fn scan(&self) -> Result<Inventory, SourceError> {
        let path = self.config.path.clone();
        let before = Stamp::of(&path);
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|source| SourceError::Io {
                path: path.display().to_string(),
                source,
            })?;
        let inv = parse(&path, &text, Some(self.config.provider))?;
        tracing::debug!(
            source = %self.config.name,
            identities = inv.identities.len(),
            credentials = inv.credentials.len(),
            "snapshot read"
        );
        // Kept only if the file did not change while it was read.
        let stamp = before.filter(|b| Stamp::of(&path) == Some(*b));
        *self.read.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        Ok(inv)
    }

    /// A file is the provider's whole state at its export: while it is
    /// the file last read, its subjects are as `base` has them (a daemon's
    /// targeted pass does not parse the whole export again); once it has
    /// changed, it is read again whole.
    async fn refresh(
        &self,
        base: &Inventory,
        subjects: &[String],
    ) -> Result<Option<Inventory>, SourceError> {
        let _ = base;
        let now = Stamp::of(&self.config.path);
        if now.is_some() && now == self.last_read() {
            tracing::debug!(source = %self.config.name, subjects = subjects.len(), "snapshot unchanged: its last reading stands");
            return Ok(None);
        }
        self.scan().await.map(Some)
    }
}

/// Parse and validate snapshot text. `expect` is the provider the caller
/// configured, checked against the file's header.
pub fn parse(path: &Path, text: &str, expect: Option<Provider>) -> Result<Inventory, SourceError> {
    read(path, text, expect, true)
}

/// [`parse`] by the streaming reader alone, on one core: the reference
/// the parallel reading is held to.
pub fn parse_streaming(
    path: &Path,
    text: &str,
    expect: Option<Provider>,
) -> Result<Inventory, SourceError> {
    read(path, text, expect, false)
}

fn read(
    path: &Path,
    text: &str,
    expect: Option<Provider>,
    parallel: bool,
) -> Result<Inventory, SourceError> {
    let invalid = |location: String, message: String| SourceError::Invalid { location, message };
    let file = match parallel.then(|| parallel::read(text)).flatten() {
        Some(file) => file,
        None => serde_json::from_str::<SnapshotFile>(text).map_err(|e| {
            invalid(
                format!("{}:{}:{}", path.display(), e.line(), e.column()),
                e.to_string(),
            )
        })?,
    };
    let here = || path.display().to_string();
    if file.format != FORMAT {
        return Err(invalid(
            here(),
            format!("format is {:?}, expected {FORMAT:?}", file.format),
        ));
    }
    if let Some(p) = expect {
        if p != file.provider {
            return Err(invalid(
                here(),
                format!(
                    "file holds provider {}, but the source is configured for {p}",
                    file.provider
                ),
            ));
        }
    }
    let mut ids = HashSet::with_capacity(file.inventory.identities.len());
    for i in &file.inventory.identities {
        if i.provider != file.provider {
            return Err(invalid(
                here(),
                format!(
                    "identity {} has provider {}, file is {}",
                    i.id, i.provider, file.provider
                ),
            ));
        }
        if !ids.insert(i.id.as_str()) {
            return Err(invalid(here(), format!("duplicate identity id {}", i.id)));
        }
    }
    let mut creds = HashSet::with_capacity(file.inventory.credentials.len());
    for c in &file.inventory.credentials {
        if !ids.contains(c.identity.as_str()) {
            return Err(invalid(
                here(),
                format!(
                    "credential {} names identity {} which is not in the file",
                    c.id, c.identity
                ),
            ));
        }
        if !creds.insert((c.identity.as_str(), c.id.as_str())) {
            return Err(invalid(here(), format!("duplicate credential id {}", c.id)));
        }
    }
    let ents: HashSet<&str> = file
        .inventory
        .entitlements
        .iter()
        .map(|e| e.id.as_str())
        .collect();
    for g in &file.inventory.grants {
        if !ids.contains(g.identity.as_str()) || !ents.contains(g.entitlement.as_str()) {
            return Err(invalid(
                here(),
                format!(
                    "grant of {} to {} names an unknown identity or entitlement",
                    g.entitlement, g.identity
                ),
            ));
        }
    }
    // A trust may name a principal outside the file (another account, a
    // federated issuer): only the assumed side must be known.
    for t in &file.inventory.trusts {
        if !ids.contains(t.to.as_str()) {
            return Err(invalid(
                here(),
                format!(
                    "trust {} -> {} names an unknown target identity",
                    t.from, t.to
                ),
            ));
        }
    }
    drop((ids, creds, ents));
    Ok(file.inventory)
}

/// The file read with its long lists parsed on every core.
///
/// The streaming reader parses one element after another on one core: at
/// a million credentials, three seconds. Here one scan splits the file
/// into its entries and each list into its elements, unparsed, and the
/// elements are parsed in parallel. It decides nothing: any text it does
/// not read cleanly (a duplicate or unknown key, a missing header, a bad
/// element) is read again by the streaming reader, which accepts or
/// refuses it and locates the error, so what is accepted is as before.
mod parallel {
    use super::*;
    use rayon::prelude::*;
    use serde_json::value::RawValue;

    /// Elements parsed by one task.
    const CHUNK: usize = 4096;

    /// A top-level entry: a list the inventory holds, split into its
    /// elements, or any other value whole.
    enum Entry<'a> {
        List(Vec<&'a RawValue>),
        Other(&'a RawValue),
    }

    /// The inventory's lists split; their parse is what is parallel.
    const LISTS: [&str; 5] = [
        "identities",
        "credentials",
        "entitlements",
        "grants",
        "trusts",
    ];

    /// The file's entries in order, keys unescaped.
    struct Entries<'a>(Vec<(String, Entry<'a>)>);

    impl<'de> Deserialize<'de> for Entries<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Entries<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a snapshot object")
                }
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Entries<'de>, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        let entry = match LISTS.contains(&key.as_str()) {
                            true => Entry::List(map.next_value()?),
                            false => Entry::Other(map.next_value()?),
                        };
                        out.push((key, entry));
                    }
                    Ok(Entries(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    /// `items` parsed, in order, on every core.
    fn list<T: serde::de::DeserializeOwned + Send>(items: &[&RawValue]) -> Option<Vec<T>> {
        // Collected in place (an indexed collect writes each element where
        // it goes), then unwrapped in place: joining parsed chunks copied a
        // million credentials into fresh memory, half a second.
        let parsed: Vec<Option<T>> = items
            .par_iter()
            .with_min_len(CHUNK)
            .map(|r| serde_json::from_str(r.get()).ok())
            .collect();
        let all = parsed.iter().all(Option::is_some);
        all.then(|| parsed.into_iter().map_while(|x| x).collect())
    }

    /// The file, or `None` to leave it to the streaming reader.
    pub(super) fn read(text: &str) -> Option<SnapshotFile> {
        let Entries(entries) = serde_json::from_str(text).ok()?;
        let mut keys = HashSet::with_capacity(entries.len());
        if !entries.iter().all(|(k, _)| keys.insert(k.as_str())) {
            return None;
        }
        let mut header = Header::default();
        // The entries that are neither header nor a split list, as an
        // object for the inventory's own reader (its defaults, its refusal
        // of unknown fields).
        let mut rest = String::from("{");
        let mut lists: [&[&RawValue]; 5] = [&[]; 5];
        for (key, entry) in &entries {
            match (key.as_str(), entry) {
                ("format", Entry::Other(v)) => header.format = serde_json::from_str(v.get()).ok(),
                ("provider", Entry::Other(v)) => {
                    header.provider = serde_json::from_str(v.get()).ok()
                }
                ("exported_at", Entry::Other(v)) => {
                    let ExportedAt(at) = serde_json::from_str(v.get()).ok()?;
                    header.exported_at = Some(at);
                }
                (k, Entry::List(items)) => {
                    let at = LISTS.iter().position(|l| *l == k)?;
                    lists[at] = items;
                }
                (k, Entry::Other(v)) => {
                    if rest.len() > 1 {
                        rest.push(',');
                    }
                    rest.push_str(&serde_json::to_string(k).ok()?);
                    rest.push(':');
                    rest.push_str(v.get());
                }
            }
        }
        rest.push('}');
        let (format, provider) = (header.format?, header.provider?);
        let mut inventory: Inventory = serde_json::from_str(&rest).ok()?;
        let [identities, credentials, entitlements, grants, trusts] = lists;
        let ((identities, credentials), (entitlements, (grants, trusts))) = rayon::join(
            || rayon::join(|| list(identities), || list(credentials)),
            || {
                rayon::join(
                    || list(entitlements),
                    || rayon::join(|| list(grants), || list(trusts)),
                )
            },
        );
        inventory.identities = identities?;
        inventory.credentials = credentials?;
        inventory.entitlements = entitlements?;
        inventory.grants = grants?;
        inventory.trusts = trusts?;
        Some(SnapshotFile {
            format,
            provider,
            exported_at: header.exported_at.flatten(),
            inventory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("estate.json")
    }

    const OK: &str = r#"{
  "format": "nhi-assure.snapshot/v1",
  "provider": "aws",
  "identities": [
    {"provider": "aws", "id": "arn:aws:iam::1:user/ci", "kind": "user", "name": "ci", "account": "1"}
  ],
  "credentials": [
    {"id": "AKIA1", "identity": "arn:aws:iam::1:user/ci", "kind": "access_key",
     "created": "2026-01-01T00:00:00Z", "usage": {"state": "never"}}
  ]
}"#;

    #[test]
    fn reads_a_valid_snapshot() {
        let inv = parse(&p(), OK, Some(Provider::Aws)).expect("valid");
        assert_eq!(inv.identities.len(), 1);
        assert_eq!(inv.credentials[0].id, "AKIA1");
        assert!(inv.credentials[0].active, "active defaults to true");
    }

    #[test]
    fn unknown_field_fails_with_file_and_line() {
        let bad = OK.replace(
            "\"kind\": \"access_key\"",
            "\"kind\": \"access_key\", \"secret\": \"s\"",
        );
        let err = parse(&p(), &bad, None).unwrap_err().to_string();
        assert!(err.starts_with("estate.json:8:"), "{err}");
        assert!(err.contains("unknown field `secret`"), "{err}");
    }

    #[test]
    fn header_and_top_level_errors_are_located() {
        let unknown = OK.replacen(
            "\"provider\": \"aws\",",
            "\"provider\": \"aws\", \"secret\": 1,",
            1,
        );
        let err = parse(&p(), &unknown, None).unwrap_err().to_string();
        assert!(err.starts_with("estate.json:3:"), "{err}");
        assert!(err.contains("unknown field `secret`"), "{err}");
        let twice = OK.replacen(
            "\"provider\": \"aws\",",
            "\"provider\": \"aws\", \"format\": \"x\",",
            1,
        );
        let err = parse(&p(), &twice, None).unwrap_err().to_string();
        assert!(err.starts_with("estate.json:3:"), "{err}");
        assert!(err.contains("duplicate field `format`"), "{err}");
        let headless = OK.replacen("\"provider\": \"aws\",", "", 1);
        let err = parse(&p(), &headless, None).unwrap_err().to_string();
        assert!(err.starts_with("estate.json:11:"), "{err}");
        assert!(err.contains("missing field `provider`"), "{err}");
        let bad_date = OK.replacen(
            "\"provider\": \"aws\",",
            "\"provider\": \"aws\", \"exported_at\": \"+262142-01-01T00:00:00Z\",",
            1,
        );
        let err = parse(&p(), &bad_date, None).unwrap_err().to_string();
        assert!(err.starts_with("estate.json:3:"), "{err}");
        assert!(err.contains("out of range"), "{err}");
        let not_an_object = parse(&p(), "[]", None).unwrap_err().to_string();
        assert!(
            not_an_object.contains("expected struct SnapshotFile"),
            "{not_an_object}"
        );
    }

    /// A snapshot of `n` identities with two credentials each: lists
    /// longer than one parallel task's chunk.
    fn large(n: usize) -> String {
        let ids: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"provider":"aws","id":"arn:aws:iam::1:user/u{i}","kind":"user","name":"u{i}","account":"1"}}"#))
            .collect();
        let creds: Vec<String> = (0..2 * n)
            .map(|i| format!(r#"{{"id":"AKIA{i}","identity":"arn:aws:iam::1:user/u{}","kind":"access_key","created":"2026-01-01T00:00:00Z","usage":{{"state":"never"}}}}"#, i / 2))
            .collect();
        format!(
            "{{\"format\":\"nhi-assure.snapshot/v1\",\"provider\":\"aws\",\n\"identities\":[{}],\n\"credentials\":[{}],\"coverage\":{{\"gaps\":[]}}}}",
            ids.join(",\n"),
            creds.join(",\n")
        )
    }

    #[test]
    fn the_parallel_reading_is_the_streaming_reading() {
        let text = large(9000);
        assert!(
            parallel::read(&text).is_some(),
            "the parallel reading is taken"
        );
        let read = parse(&p(), &text, Some(Provider::Aws)).expect("valid");
        let streamed = parse_streaming(&p(), &text, Some(Provider::Aws)).expect("valid");
        assert_eq!(read, streamed);
        assert_eq!(read.credentials.len(), 18_000);
        assert_eq!(read.credentials[17_999].id, "AKIA17999", "order kept");
        // What it does not read cleanly, the streaming reader decides and
        // locates: a bad element deep in a list, a repeated list, an
        // unknown top-level key, a missing header.
        let cases = [
            text.replacen(
                r#""id":"AKIA12345","#,
                r#""id":"AKIA12345","secret":"x","#,
                1,
            ),
            text.replacen("\"coverage\"", "\"identities\":[],\"coverage\"", 1),
            text.replacen("\"coverage\"", "\"coverge\"", 1),
            text.replacen("\"provider\":\"aws\",\n", "\n", 1),
        ];
        for bad in &cases {
            assert!(parallel::read(bad).is_none());
            let read = parse(&p(), bad, None).unwrap_err().to_string();
            let streamed = parse_streaming(&p(), bad, None).unwrap_err().to_string();
            assert_eq!(read, streamed);
            assert!(!read.starts_with("estate.json:0:"), "located: {read}");
        }
    }

    #[test]
    fn an_exported_inventory_reads_back_as_it_was() {
        let inv = parse(&p(), OK, Some(Provider::Aws)).expect("valid");
        let mut with_gap = inv.clone();
        with_gap.coverage.gaps.push(nhi_contract::Gap {
            unseen: nhi_contract::Unseen::Usage,
            reason: "reports refused".into(),
        });
        let file = SnapshotFile::new(Provider::Aws, None, with_gap.clone());
        let text = serde_json::to_string_pretty(&file).expect("json");
        assert!(
            text.contains("\"identities\""),
            "fields at the top level: {text}"
        );
        let back = parse(&p(), &text, Some(Provider::Aws)).expect("reads back");
        assert_eq!(back, with_gap);
    }

    #[test]
    fn dangling_credential_fails() {
        let bad = OK.replace(
            "\"identity\": \"arn:aws:iam::1:user/ci\"",
            "\"identity\": \"nobody\"",
        );
        let err = parse(&p(), &bad, None).unwrap_err().to_string();
        assert!(err.contains("names identity nobody"), "{err}");
    }

    #[test]
    fn provider_mismatch_fails() {
        let err = parse(&p(), OK, Some(Provider::Azure))
            .unwrap_err()
            .to_string();
        assert!(err.contains("configured for azure"), "{err}");
    }

    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```json\n")
            .expect("README has a ```json block")
            + 8;
        let len = readme[start..]
            .find("```")
            .expect("the ```json block is closed");
        let inv = parse(
            Path::new("README.md"),
            &readme[start..start + len],
            Some(Provider::Aws),
        )
        .expect("the README example is a valid snapshot");
        assert_eq!(inv.identities.len(), 2);
        assert_eq!(inv.credentials.len(), 2);
        assert_eq!(inv.grants.len(), 2);
        assert_eq!(inv.trusts.len(), 1);
        assert_eq!(inv.approvals.len(), 1);
        assert_eq!(inv.coverage.gaps.len(), 1);
    }

    #[tokio::test]
    async fn a_refresh_reads_the_file_again_only_once_it_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("estate.json");
        std::fs::write(&path, OK).expect("write");
        let src = SnapshotSource::new(SnapshotConfig {
            name: "x".into(),
            provider: Provider::Aws,
            path: path.clone(),
        });
        let subjects = ["arn:aws:iam::1:user/ci".to_string()];
        // Before any whole read, a refresh reads the file.
        let mut marked = parse(&p(), OK, Some(Provider::Aws)).expect("valid");
        marked.identities[0].name = "from the cache".into();
        let first = src.refresh(&marked, &subjects).await.expect("first");
        let first = first.expect("read before any whole read");
        assert_ne!(first.identities[0].name, "from the cache");
        // Unchanged since: the cached reading stands (not parsed, not copied).
        let again = src.refresh(&marked, &subjects).await.expect("again");
        assert!(again.is_none(), "an unchanged file keeps the base");
        // Replaced by a new export: read again.
        let next = dir.path().join("next.json");
        std::fs::write(
            &next,
            OK.replace("\"kind\": \"access_key\"", "\"kind\": \"access_key\" "),
        )
        .expect("write");
        std::fs::rename(&next, &path).expect("replace");
        let fresh = src.refresh(&marked, &subjects).await.expect("fresh");
        let fresh = fresh.expect("a replaced file is read again");
        assert_ne!(fresh.identities[0].name, "from the cache");
        // Gone: an error, never the cached reading.
        std::fs::remove_file(&path).expect("rm");
        assert!(src.refresh(&marked, &subjects).await.is_err());
    }

    #[tokio::test]
    async fn missing_file_is_an_error_not_an_empty_inventory() {
        let src = SnapshotSource::new(SnapshotConfig {
            name: "x".into(),
            provider: Provider::Aws,
            path: PathBuf::from("/nonexistent/estate.json"),
        });
        assert!(src.scan().await.is_err());
    }
}
