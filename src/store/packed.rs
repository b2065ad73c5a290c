//! A sighting's finding data as stored: zstd with a fixed dictionary.
//!
//! A finding's JSON is ~800 bytes, most of it field names, rule titles and
//! control ids that every finding repeats: compressed alone it halves,
//! compressed against a dictionary of such findings it shrinks 4–5 times
//! (1 GB of sighting data at a million findings becomes ~210 MB). zstd
//! digests its dictionary once per context, where deflate would hash its
//! preset dictionary again for every row.
//!
//! A stored value is a format byte then the frame. [`V1`]: zstd against
//! `finding-v1.dict`, written once from the demo estate's findings (one per
//! rule) and never edited: a stored value must decode with the dictionary
//! it was written with, so a new dictionary is a new format byte. Rows
//! written before this format keep their JSON text in `data`. [`PLAIN`]:
//! zstd without a dictionary, for a reading's chunks (64 KiB to 1 MiB of
//! JSON each, which compress well on their own).

use std::sync::OnceLock;

use super::StoreError;

/// The format byte of a value compressed against `finding-v1.dict`.
const V1: u8 = 1;

/// The format byte of a value compressed on its own.
const PLAIN: u8 = 2;

/// The dictionary of [`V1`]: raw content (findings as JSON lines).
const DICT_V1: &[u8] = include_bytes!("finding-v1.dict");

/// zstd's level: with the dictionary, higher levels gain a percent at
/// twice the time.
const LEVEL: i32 = 1;

/// The largest finding data a stored value may decode to. A finding is a
/// few KB; the bound keeps a damaged or hostile store from making a reader
/// allocate what a frame header claims.
pub(crate) const MAX_DATA: u64 = 16 << 20;

fn encoder() -> &'static zstd::dict::EncoderDictionary<'static> {
    static DICT: OnceLock<zstd::dict::EncoderDictionary<'static>> = OnceLock::new();
    DICT.get_or_init(|| zstd::dict::EncoderDictionary::copy(DICT_V1, LEVEL))
}

fn decoder() -> &'static zstd::dict::DecoderDictionary<'static> {
    static DICT: OnceLock<zstd::dict::DecoderDictionary<'static>> = OnceLock::new();
    DICT.get_or_init(|| zstd::dict::DecoderDictionary::copy(DICT_V1))
}

/// A compressor of finding data, reused across values (one per thread).
pub(crate) struct Packer(zstd::bulk::Compressor<'static>);

impl Packer {
    /// A compressor against the current dictionary.
    pub(crate) fn new() -> Result<Packer, StoreError> {
        zstd::bulk::Compressor::with_prepared_dictionary(encoder())
            .map(Packer)
            .map_err(|e| StoreError::Corrupt(format!("finding compressor: {e}")))
    }

    /// `json` as stored: the format byte and the frame.
    pub(crate) fn pack(&mut self, json: &[u8]) -> Result<Vec<u8>, StoreError> {
        let frame = self
            .0
            .compress(json)
            .map_err(|e| StoreError::Corrupt(format!("compressing a finding: {e}")))?;
        Ok(framed(V1, &frame))
    }
}

thread_local! {
    /// This thread's compressor, made when first needed.
    static PACKER: std::cell::RefCell<Option<Packer>> = const { std::cell::RefCell::new(None) };
    /// This thread's decompressor, made when first needed.
    static UNPACKER: std::cell::RefCell<Option<Unpacker>> = const { std::cell::RefCell::new(None) };
}

/// `f` with this thread's [`Packer`]. One per thread for the life of the
/// process, not one per parallel job: rayon's `map_init` made one per
/// split of every chunk, and setting up a context against the dictionary
/// (and the allocator faulting in its workspace) cost a first 1M scan more
/// than a second of CPU.
pub(crate) fn with_packer<R>(
    f: impl FnOnce(&mut Packer) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    with_local(&PACKER, Packer::new, "finding compressor", f)
}

/// `f` with this thread's [`Unpacker`] (as [`with_packer`]).
pub(crate) fn with_unpacker<R>(
    f: impl FnOnce(&mut Unpacker) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    with_local(&UNPACKER, Unpacker::new, "finding decompressor", f)
}

/// `f` with the value in this thread's `slot`, made by `make` when first
/// needed; a nested use is an error naming `what`, not a panic.
fn with_local<C: 'static, R>(
    slot: &'static std::thread::LocalKey<std::cell::RefCell<Option<C>>>,
    make: fn() -> Result<C, StoreError>,
    what: &str,
    f: impl FnOnce(&mut C) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    slot.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| StoreError::Corrupt(format!("{what} already in use")))?;
        let value = match &mut *slot {
            Some(value) => value,
            empty => empty.insert(make()?),
        };
        f(value)
    })
}

/// A stored value: `format`, then `frame`.
fn framed(format: u8, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 1);
    out.push(format);
    out.extend_from_slice(frame);
    out
}

/// `bytes` as stored without a dictionary ([`PLAIN`]).
pub(crate) fn pack_plain(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let frame = zstd::bulk::compress(bytes, LEVEL)
        .map_err(|e| StoreError::Corrupt(format!("compressing a reading: {e}")))?;
    Ok(framed(PLAIN, &frame))
}

fn corrupt(why: String) -> StoreError {
    StoreError::Corrupt(format!("stored data: {why}"))
}

/// A stored value's format byte, its frame, and the length its frame's
/// header gives (at most [`MAX_DATA`]).
fn header(stored: &[u8]) -> Result<(u8, &[u8], usize), StoreError> {
    let (&format, frame) = stored
        .split_first()
        .ok_or_else(|| corrupt("empty".into()))?;
    if format != V1 && format != PLAIN {
        return Err(corrupt(format!("unknown format {format}")));
    }
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= MAX_DATA => n,
        Ok(Some(n)) => return Err(corrupt(format!("{n} bytes, more than {MAX_DATA}"))),
        Ok(None) => return Err(corrupt("no content size".into())),
        Err(_) => return Err(corrupt("not a zstd frame".into())),
    };
    // Bounded above, so this holds on any target.
    let size = usize::try_from(size).map_err(|_| corrupt("too large".into()))?;
    Ok((format, frame, size))
}

/// How many bytes a stored value holds, from its frame's header (checked
/// against [`MAX_DATA`], not decompressed).
pub(crate) fn content_size(stored: &[u8]) -> Result<usize, StoreError> {
    header(stored).map(|(_, _, size)| size)
}

/// A decompressor of stored values, reused across values (one per
/// thread: a context is ~100 KB to set up).
pub(crate) struct Unpacker {
    /// For [`V1`].
    dict: zstd::bulk::Decompressor<'static>,
    /// For [`PLAIN`], made when first needed.
    plain: Option<zstd::bulk::Decompressor<'static>>,
}

impl Unpacker {
    /// A decompressor for every format this version reads.
    pub(crate) fn new() -> Result<Unpacker, StoreError> {
        zstd::bulk::Decompressor::with_prepared_dictionary(decoder())
            .map(|dict| Unpacker { dict, plain: None })
            .map_err(|e| StoreError::Corrupt(format!("finding decompressor: {e}")))
    }

    /// The bytes a stored value holds; an error names what is wrong with
    /// it (unknown format, a frame that is damaged or larger than
    /// [`MAX_DATA`]).
    pub(crate) fn unpack(&mut self, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (format, frame, size) = header(stored)?;
        let mut out = Vec::with_capacity(size);
        self.for_format(format)?
            .decompress_to_buffer(frame, &mut out)
            .map_err(|e| corrupt(e.to_string()))?;
        if out.len() != size {
            return Err(corrupt("shorter than its header says".into()));
        }
        Ok(out)
    }

    /// Unpack a stored value into `out`, which must be exactly as long as
    /// its bytes ([`content_size`]).
    pub(crate) fn unpack_into(&mut self, stored: &[u8], out: &mut [u8]) -> Result<(), StoreError> {
        let (format, frame, size) = header(stored)?;
        if size != out.len() {
            return Err(corrupt(format!("{size} bytes into {}", out.len())));
        }
        let n = self
            .for_format(format)?
            .decompress_to_buffer(frame, out)
            .map_err(|e| corrupt(e.to_string()))?;
        if n != size {
            return Err(corrupt("shorter than its header says".into()));
        }
        Ok(())
    }

    /// The decompressor of `format` (a checked format byte).
    fn for_format(
        &mut self,
        format: u8,
    ) -> Result<&mut zstd::bulk::Decompressor<'static>, StoreError> {
        if format == V1 {
            return Ok(&mut self.dict);
        }
        if self.plain.is_none() {
            self.plain = Some(zstd::bulk::Decompressor::new().map_err(|e| corrupt(e.to_string()))?);
        }
        self.plain
            .as_mut()
            .ok_or_else(|| corrupt("no decompressor".into()))
    }

    /// The bytes of a stored value read as hex ([`to_hex`]'s inverse,
    /// either case: SQLite's `hex` writes upper case).
    pub(crate) fn unpack_hex(&mut self, text: &str) -> Result<Vec<u8>, StoreError> {
        let bytes =
            hex::decode(text).map_err(|e| StoreError::Corrupt(format!("stored data: {e}")))?;
        self.unpack(&bytes)
    }

    /// The text a row holds: its text column, or (that empty) its packed
    /// value; `None` if it has neither.
    pub(crate) fn text(
        &mut self,
        text: Option<String>,
        packed: Option<&[u8]>,
    ) -> Result<Option<String>, StoreError> {
        match (text, packed) {
            (Some(t), _) if !t.is_empty() => Ok(Some(t)),
            (_, Some(p)) => String::from_utf8(self.unpack(p)?)
                .map(Some)
                .map_err(|_| StoreError::Corrupt("stored data: not UTF-8".into())),
            _ => Ok(None),
        }
    }
}

/// Hex of `bytes`, as bound into a JSON row and read back from a JSON
/// page (SQLite `unhex` / `hex`, PostgreSQL `decode` / `encode`).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The bytes a stored value holds, with an unpacker of its own.
    fn unpack(stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        Unpacker::new()?.unpack(stored)
    }

    #[test]
    fn a_finding_packs_small_and_unpacks_to_its_bytes() {
        let json = br#"{"rule_id":"credential-stale","title":"Credential not used recently","severity":"medium","provider":"aws","identity_id":"arn:aws:iam::111122223333:user/ci","credential_id":"AKIAIOSFODNN7EXAMPLE","controls":["OWASP-NHI-2025:NHI7"],"evidence":{"credential.last_used":"2026-01-02T00:00:00Z"},"recommended_action":"disable"}"#;
        let packed = Packer::new().unwrap().pack(json).unwrap();
        assert_eq!(packed[0], V1);
        assert!(
            packed.len() * 2 < json.len(),
            "{} of {}",
            packed.len(),
            json.len()
        );
        assert_eq!(unpack(&packed).unwrap(), json);
        assert_eq!(
            Unpacker::new()
                .unwrap()
                .unpack_hex(&to_hex(&packed).to_uppercase())
                .unwrap(),
            json
        );
    }

    #[test]
    fn a_chunk_packs_without_the_dictionary_and_unpacks_to_its_bytes() {
        let chunk = "{\"credentials\":[".to_string() + &"{\"id\":\"AKIA\"},".repeat(5_000) + "]}";
        let packed = pack_plain(chunk.as_bytes()).unwrap();
        assert_eq!(packed[0], PLAIN);
        assert!(
            packed.len() * 10 < chunk.len(),
            "{} of {}",
            packed.len(),
            chunk.len()
        );
        assert_eq!(unpack(&packed).unwrap(), chunk.as_bytes());
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let packed = Packer::new().unwrap().pack(b"{\"a\":1}").unwrap();
        for bad in [
            Vec::new(),
            vec![V1],
            vec![3, 0x28, 0xb5, 0x2f, 0xfd],
            vec![PLAIN, 0x28, 0xb5, 0x2f, 0xfd],
            packed[..packed.len() - 1].to_vec(),
            [&[V1][..], b"not zstd at all"].concat(),
        ] {
            assert!(
                matches!(unpack(&bad), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
        assert!(Unpacker::new().unwrap().unpack_hex("zz").is_err());
    }

    #[test]
    fn a_frame_claiming_more_than_the_bound_is_refused_before_allocating() {
        // A frame header declaring 1 TiB of content (single segment, 8-byte
        // size field), and nothing after it.
        let mut frame = vec![V1, 0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = unpack(&frame).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn text_rows_and_packed_rows_read_alike() {
        let packed = Packer::new().unwrap().pack(b"{\"x\":true}").unwrap();
        assert_eq!(
            Unpacker::new()
                .unwrap()
                .text(Some(String::new()), Some(&packed))
                .unwrap()
                .as_deref(),
            Some("{\"x\":true}")
        );
        assert_eq!(
            Unpacker::new()
                .unwrap()
                .text(Some("{\"y\":1}".into()), None)
                .unwrap()
                .as_deref(),
            Some("{\"y\":1}")
        );
        assert_eq!(
            Unpacker::new()
                .unwrap()
                .text(Some(String::new()), None)
                .unwrap(),
            None
        );
        assert_eq!(Unpacker::new().unwrap().text(None, None).unwrap(), None);
    }

    #[test]
    fn the_threads_packer_packs_each_value_as_a_fresh_one_would() {
        // Values of different sizes and content, one after another through
        // the same context: none may carry anything over to the next.
        let values: Vec<Vec<u8>> = (0..200)
            .map(|i| {
                format!(
                    r#"{{"rule_id":"r{i}","evidence":{{"n":"{}"}}}}"#,
                    "x".repeat(i * 7)
                )
                .into_bytes()
            })
            .collect();
        for v in &values {
            let reused = with_packer(|p| p.pack(v)).unwrap();
            assert_eq!(reused, Packer::new().unwrap().pack(v).unwrap());
            assert_eq!(with_unpacker(|u| u.unpack(&reused)).unwrap(), *v);
        }
        // A damaged value through the thread's unpacker is an error, and
        // leaves it usable.
        assert!(with_unpacker(|u| u.unpack(&[V1, 0, 1, 2])).is_err());
        let ok = with_packer(|p| p.pack(b"after")).unwrap();
        assert_eq!(with_unpacker(|u| u.unpack(&ok)).unwrap(), b"after");
        // Nested use is refused, not a panic.
        let nested = with_packer(|_| with_packer(|p| p.pack(b"inner")));
        assert!(nested.is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let packed = Packer::new().unwrap().pack(&data).unwrap();
            prop_assert_eq!(unpack(&packed).unwrap(), data);
        }

        #[test]
        fn any_stored_value_decodes_or_errs(stored in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = unpack(&stored);
        }
    }
}
