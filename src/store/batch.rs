//! Multi-row statements: one statement per chunk of rows instead of one
//! per row. Per-statement overhead (sqlx's `Any` driver, a round trip to
//! PostgreSQL) dominated a pass on a large estate; rows per statement are
//! bounded so the bound parameters stay under both backends' limits
//! (SQLite 32,766, PostgreSQL 65,535).

/// Parameters bound by one PostgreSQL statement, at most: large statements
/// save round trips.
const PG_PARAMS: usize = 30_000;

/// Parameters bound by one SQLite statement, at most. sqlx binds each
/// parameter of a SQLite statement by looking its `$n` name up, and SQLite
/// finds a parameter's name by a linear scan of the statement's list: the
/// cost of a statement grows with the square of its parameters. At 9,000
/// parameters (1,000 findings) binding took 200 ms a statement, two thirds
/// of a first scan; at 500 it is noise, and a statement is a function call
/// in process, not a round trip.
pub(crate) const SQLITE_PARAMS: usize = 500;

/// Parameters one statement on `conn`'s backend binds, at most.
pub(crate) fn max_params(conn: &sqlx::AnyConnection) -> usize {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        SQLITE_PARAMS
    } else {
        PG_PARAMS
    }
}

/// Rows per statement of at most `max` parameters for rows of `cols`
/// parameters, with `fixed` more bound once per statement.
pub(crate) fn rows_per_statement(max: usize, cols: usize, fixed: usize) -> usize {
    (max.saturating_sub(fixed) / cols.max(1)).clamp(1, 1_000)
}

/// `($s+1, …, $s+cols), (…), …` for `rows` rows: the placeholders of a
/// multi-row `VALUES` list whose first parameter is `$start + 1`.
pub(crate) fn values(rows: usize, cols: usize, start: usize) -> String {
    let mut out = String::with_capacity(rows * (cols * 5 + 3));
    let mut n = start;
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        }
        out.push(')');
    }
    out
}

/// Rows per page of a [`json_page`] read: a page's text stays a few MB.
pub(crate) const PAGE_ROWS: usize = 20_000;

/// `inner` (a `SELECT` of `cols`, ordered and limited) as one row holding
/// its rows as a JSON array of arrays, built by the database. sqlx's `Any`
/// driver costs about 15 µs a row on SQLite (the row crosses a thread and
/// is converted twice): 1.9 s to read 124,738 open findings one row each,
/// against tens of milliseconds as six JSON pages. The aggregate is each
/// backend's own (SQLite `json_group_array`, PostgreSQL `json_agg`); the
/// query inside is the portable text. Rows come in `order` (the
/// database's, so the last row of a page is where the next one starts).
pub(crate) fn json_page(
    conn: &sqlx::AnyConnection,
    cols: &str,
    order: &str,
    inner: &str,
) -> String {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        format!(
            "SELECT COALESCE(json_group_array(json_array({cols}) ORDER BY {order}), '[]') FROM ({inner}) AS page"
        )
    } else {
        format!(
            "SELECT COALESCE(CAST(json_agg(json_build_array({cols}) ORDER BY {order}) AS TEXT), '[]') FROM ({inner}) AS page"
        )
    }
}

/// A subquery of the strings in parameter `$n`, a JSON array: an `IN`
/// list bound as one parameter, so a page of thousands of keys is one
/// statement on SQLite too (whose statements bind a few hundred
/// parameters cheaply, see [`SQLITE_PARAMS`]).
pub(crate) fn json_list(conn: &sqlx::AnyConnection, n: usize) -> String {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        format!("SELECT value FROM json_each(${n})")
    } else {
        format!("SELECT json_array_elements_text(CAST(${n} AS json))")
    }
}

/// `data` (a JSON text column) as a JSON value inside a [`json_page`]
/// row, so the page parses once rather than as a string to parse again.
pub(crate) fn json_value(conn: &sqlx::AnyConnection, col: &str) -> String {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        format!("json({col})")
    } else {
        format!("CAST({col} AS json)")
    }
}

/// Column `col` (bytes) as hex text inside a JSON page.
pub(crate) fn hex_value(conn: &sqlx::AnyConnection, col: &str) -> String {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        format!("hex({col})")
    } else {
        format!("encode({col}, 'hex')")
    }
}

/// [`json_page`] without an order: rows as the query yields them, for a
/// caller that sorts the page itself. Ordering inside the aggregate sorts
/// every row, evidence and all, in a temporary B-tree that SQLite spills
/// to disk once it outgrows its cache: a third of a report's time.
pub(crate) fn json_rows(conn: &sqlx::AnyConnection, cols: &str, inner: &str) -> String {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        format!(
            "SELECT COALESCE(json_group_array(json_array({cols})), '[]') FROM ({inner}) AS page"
        )
    } else {
        format!(
            "SELECT COALESCE(CAST(json_agg(json_build_array({cols})) AS TEXT), '[]') FROM ({inner}) AS page"
        )
    }
}

/// One value of a [`BulkRows`] row.
pub(crate) enum Cell<'a> {
    /// Text.
    Text(&'a str),
    /// SQL `NULL`.
    Null,
    /// Bytes (bound as a blob; inside PostgreSQL's JSON rows, as hex).
    Bytes(&'a [u8]),
}

impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(v: Option<&'a str>) -> Cell<'a> {
        v.map_or(Cell::Null, Cell::Text)
    }
}

impl serde::Serialize for Cell<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Text(t) => s.serialize_str(t),
            Cell::Null => s.serialize_none(),
            Cell::Bytes(b) => s.serialize_str(&super::packed::to_hex(b)),
        }
    }
}

/// Rows of a bulk write, bound as each backend binds many rows cheaply.
///
/// - **SQLite**: a `VALUES` list of anonymous `?` parameters, bound by
///   position. sqlx binds a named parameter (`$n`) by asking SQLite its
///   name, which SQLite finds by a linear scan of the statement's list: a
///   statement of many named parameters costs the square of their number
///   (see [`SQLITE_PARAMS`]); an anonymous one costs nothing to find. The
///   rows were a JSON array before, and SQLite spent more time unpacking
///   it than writing the rows: `json_each` turns each element back into
///   text, and each `->>` parses that again (at a million findings, 9 s of
///   the 16 s its thread worked in a first scan).
/// - **PostgreSQL**: one parameter, a JSON array of arrays, read as
///   `jsonb` (parsed once, each column then a lookup; a `json` element is
///   text, and each `->>` parsed it again from its start).
///
/// A statement's template names the rows' `FROM` item [`ROWS`], its
/// columns [`BulkRows::col`], its values bound once [`BulkRows::fixed`],
/// and binds no parameter of its own.
#[derive(Clone, Copy)]
pub(crate) struct BulkRows {
    sqlite: bool,
    cols: usize,
    fixed: usize,
}

/// Where a [`BulkRows`] template's `FROM` item goes. SQLite's is followed
/// by `WHERE true` where an upsert follows (its parser would otherwise
/// read `ON CONFLICT` as a join's `ON`).
pub(crate) const ROWS: &str = "{rows}";

/// Rows per [`BulkRows`] statement, at most: a statement's parameters stay
/// well under SQLite's 32,766 and its JSON text about a MB.
pub(crate) const JSON_ROWS: usize = 1_000;

/// SQLite's limit on a statement's parameters (`SQLITE_MAX_VARIABLE_NUMBER`).
const SQLITE_MAX_VARIABLES: usize = 32_766;

impl BulkRows {
    /// Rows of `cols` values, after `fixed` values bound once, on
    /// `conn`'s backend.
    pub(crate) fn new(conn: &sqlx::AnyConnection, cols: usize, fixed: usize) -> BulkRows {
        BulkRows {
            sqlite: conn.backend_name().eq_ignore_ascii_case("sqlite"),
            cols: cols.max(1),
            fixed,
        }
    }

    /// Rows one statement writes.
    fn per_statement(&self) -> usize {
        if self.sqlite {
            (SQLITE_MAX_VARIABLES.saturating_sub(self.fixed) / self.cols).clamp(1, JSON_ROWS)
        } else {
            JSON_ROWS
        }
    }

    /// Fixed value `i` (from 1, in [`Stream::new`]'s `fixed` order).
    pub(crate) fn fixed(&self, i: usize) -> String {
        if self.sqlite {
            format!("bulk_fixed.f{i}")
        } else {
            format!("${i}")
        }
    }

    /// Column `i` (from 0) of a row, as text (`NULL` for a null).
    pub(crate) fn col(&self, i: usize) -> String {
        if self.sqlite {
            format!("bulk_rows.column{}", i + 1)
        } else {
            format!("e->>{i}")
        }
    }

    /// Column `i` (from 0) of a row, as bytes.
    pub(crate) fn bytes_col(&self, i: usize) -> String {
        if self.sqlite {
            self.col(i)
        } else {
            format!("decode(e->>{i}, 'hex')")
        }
    }

    /// The `FROM` item of `rows` rows.
    fn from(&self, rows: usize) -> String {
        if !self.sqlite {
            return format!(
                "jsonb_array_elements(CAST(${} AS jsonb)) AS e",
                self.fixed + 1
            );
        }
        let mut out = String::new();
        if self.fixed > 0 {
            let fixed: Vec<String> = (1..=self.fixed).map(|i| format!("? AS f{i}")).collect();
            out.push_str(&format!("(SELECT {}) AS bulk_fixed, ", fixed.join(", ")));
        }
        let row = format!("({})", vec!["?"; self.cols].join(", "));
        out.push_str("(VALUES ");
        out.push_str(&vec![row.as_str(); rows].join(", "));
        out.push_str(") AS bulk_rows");
        out
    }
}

/// A value bound before a [`Stream`]'s rows.
#[derive(Clone)]
pub(crate) enum Fixed<'a> {
    /// Text.
    Text(&'a str),
    /// An integer.
    Int(i64),
}

/// Where [`Stream::new`]'s `encode` puts a chunk's rows.
pub(crate) enum Sink {
    /// PostgreSQL: the rows as one JSON array.
    Json { text: Vec<u8>, rows: usize },
    /// SQLite: the fixed values, then every row's, in order.
    Args {
        args: sqlx::any::AnyArguments,
        rows: usize,
    },
}

impl Sink {
    fn new(bulk: &BulkRows, fixed: &[Fixed<'_>]) -> Result<Sink, super::StoreError> {
        if !bulk.sqlite {
            return Ok(Sink::Json {
                text: Vec::new(),
                rows: 0,
            });
        }
        let mut args = sqlx::any::AnyArguments::default();
        for f in fixed {
            match f {
                Fixed::Text(t) => sqlx::Arguments::add(&mut args, t.to_string()),
                Fixed::Int(i) => sqlx::Arguments::add(&mut args, *i),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok(Sink::Args { args, rows: 0 })
    }

    /// Add one row; its cells are the template's columns, in order.
    pub(crate) fn row(&mut self, cells: &[Cell<'_>]) -> Result<(), super::StoreError> {
        match self {
            Sink::Json { text, rows } => {
                text.push(if *rows == 0 { b'[' } else { b',' });
                serde_json::to_writer(&mut *text, cells)?;
                *rows += 1;
            }
            Sink::Args { args, rows } => {
                for cell in cells {
                    match cell {
                        Cell::Text(t) => sqlx::Arguments::add(args, t.to_string()),
                        Cell::Null => sqlx::Arguments::add(args, None::<String>),
                        Cell::Bytes(b) => sqlx::Arguments::add(args, b.to_vec()),
                    }
                    .map_err(sqlx::Error::Encode)?;
                }
                *rows += 1;
            }
        }
        Ok(())
    }
}

/// One table's rows for [`interleaved`]: its statements' texts, its fixed
/// values, and how a chunk of its rows is encoded.
pub(crate) struct Stream<'s> {
    bulk: BulkRows,
    /// The statement of a full chunk, and of the last one.
    full: String,
    last: String,
    per: usize,
    chunks: usize,
    fixed: Vec<Fixed<'s>>,
    /// Encode chunk `i` into the sink.
    encode: ChunkEncoder<'s>,
}

/// How a [`Stream`] encodes its chunk `i`.
type ChunkEncoder<'s> =
    Box<dyn Fn(usize, &mut Sink) -> Result<(), super::StoreError> + Send + Sync + 's>;

impl<'s> Stream<'s> {
    /// `rows` written [`BulkRows::per_statement`] to a statement:
    /// `template` with its [`ROWS`] item, bound with `fixed`, then the
    /// chunk's rows as `encode` puts them in the [`Sink`] (one call per
    /// chunk).
    pub(crate) fn new<T: Sync>(
        bulk: &BulkRows,
        template: &str,
        fixed: Vec<Fixed<'s>>,
        rows: &'s [T],
        encode: impl Fn(&[T], &mut Sink) -> Result<(), super::StoreError> + Send + Sync + 's,
    ) -> Stream<'s> {
        let per = bulk.per_statement();
        // At most two statements' texts: a full chunk's and the last one's.
        let full = template.replace(ROWS, &bulk.from(per));
        let last = match rows.len() % per {
            0 => full.clone(),
            n => template.replace(ROWS, &bulk.from(n)),
        };
        Stream {
            bulk: *bulk,
            full,
            last,
            per,
            chunks: rows.len().div_ceil(per),
            fixed,
            encode: Box::new(move |i, sink| {
                let from = i.saturating_mul(per).min(rows.len());
                let to = from.saturating_add(per).min(rows.len());
                encode(&rows[from..to], sink)
            }),
        }
    }

    /// Whether it has no rows.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks == 0
    }

    /// Chunk `i`, encoded: the statement's text and its values.
    fn chunk(&self, i: usize) -> Result<(&str, Sink), super::StoreError> {
        let mut sink = Sink::new(&self.bulk, &self.fixed)?;
        (self.encode)(i, &mut sink)?;
        let sql = match &sink {
            Sink::Args { rows, .. } if *rows != self.per => &self.last,
            _ => &self.full,
        };
        Ok((sql, sink))
    }
}

/// Write `streams`, a chunk of each in turn, each chunk encoded while the
/// database writes the one before it: SQLite writes on its own worker
/// thread, and a chunk's encoding (serialising, packing on every core)
/// had the database idle for it, chunk after chunk. Streams written in
/// turn keep both sides busy where one's encoding is cheap and the
/// other's dear: a first scan's findings (the database's work) then its
/// sightings (packing's) had, one after the other, a core idle for each.
pub(crate) async fn interleaved(
    conn: &mut sqlx::AnyConnection,
    streams: &[Stream<'_>],
) -> Result<(), super::StoreError> {
    let rounds = streams.iter().map(|s| s.chunks).max().unwrap_or(0);
    let mut order = Vec::new();
    for i in 0..rounds {
        order.extend(streams.iter().filter(|s| i < s.chunks).map(|s| (s, i)));
    }
    let mut order = order.into_iter();
    let mut next = encode_next(order.next())?;
    while let Some((stream, sql, sink)) = next.take() {
        let write = match sink {
            Sink::Json { mut text, rows } => {
                if rows == 0 {
                    text.push(b'[');
                }
                text.push(b']');
                let text = String::from_utf8(text)
                    .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for f in &stream.fixed {
                    q = match f {
                        Fixed::Text(t) => q.bind(*t),
                        Fixed::Int(i) => q.bind(*i),
                    };
                }
                q.bind(text)
            }
            Sink::Args { args, .. } => sqlx::query_with(sqlx::AssertSqlSafe(sql), args),
        }
        .execute(&mut *conn);
        let following = order.next();
        // `join` polls the write first: its statement is handed to the
        // database before the next chunk is encoded.
        let (written, encoded) =
            futures_util::future::join(write, async { encode_next(following) }).await;
        written?;
        next = encoded?;
    }
    Ok(())
}

/// Chunk `i` of a stream, encoded with the stream and its statement, if
/// there is one.
fn encode_next<'a, 's>(
    at: Option<(&'a Stream<'s>, usize)>,
) -> Result<Option<(&'a Stream<'s>, &'a str, Sink)>, super::StoreError> {
    let Some((stream, i)) = at else {
        return Ok(None);
    };
    let (sql, sink) = stream.chunk(i)?;
    Ok(Some((stream, sql, sink)))
}

/// A row read by [`pages_by_fingerprint`]: where the next page begins.
pub(crate) trait Keyed {
    /// The row's fingerprint (the first column read).
    fn fingerprint(&self) -> &str;
}

impl<A, B, C, D> Keyed for (String, A, B, C, D) {
    fn fingerprint(&self) -> &str {
        &self.0
    }
}

impl Keyed for (String, String) {
    fn fingerprint(&self) -> &str {
        &self.0
    }
}

impl Keyed for (String,) {
    fn fingerprint(&self) -> &str {
        &self.0
    }
}

/// Rows `cols` (the fingerprint first) of `from` — a table and a `WHERE`
/// condition, on `$2` = `run` when given — in [`json_page`]s of
/// [`PAGE_ROWS`] by fingerprint, each page a range on an index that leads
/// with it, handed to `each` as read. A fingerprint with several matching
/// rows is read once: the next page starts after the last one read.
pub(crate) async fn pages_by_fingerprint<T: serde::de::DeserializeOwned + Keyed>(
    conn: &mut sqlx::AnyConnection,
    cols: &str,
    from: &str,
    run: Option<i64>,
    mut each: impl FnMut(Vec<T>),
) -> Result<(), super::StoreError> {
    let mut after = String::new();
    loop {
        let sql = json_page(
            conn,
            cols,
            "fingerprint",
            &format!(
                "SELECT {cols} FROM {from} AND fingerprint > $1 ORDER BY fingerprint LIMIT {PAGE_ROWS}"
            ),
        );
        let query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&after);
        let query = match run {
            Some(r) => query.bind(r),
            None => query,
        };
        let (text,): (String,) = query.fetch_one(&mut *conn).await?;
        let page: Vec<T> = serde_json::from_str(&text)?;
        let full = page.len() >= PAGE_ROWS;
        if let Some(last) = page.last() {
            after = last.fingerprint().to_string();
        }
        each(page);
        if !full {
            return Ok(());
        }
    }
}

/// `$s+1, …, $s+n`: the placeholders of an `IN (…)` list.
pub(crate) fn list(n: usize, start: usize) -> String {
    (start + 1..=start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn interleaved_streams_write_every_row_a_chunk_of_each_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqlStore::open(&dir.path().join("s.db").display().to_string())
            .await
            .expect("open");
        let mut conn = store.pool.acquire().await.expect("conn");
        sqlx::query("CREATE TABLE t (s TEXT NOT NULL, n INTEGER NOT NULL, v TEXT)")
            .execute(&mut *conn)
            .await
            .expect("table");
        let bulk = BulkRows::new(&conn, 2, 1);
        let template = format!(
            "INSERT INTO t (s, n, v) SELECT {}, {}, {} FROM {ROWS}",
            bulk.fixed(1),
            bulk.col(0),
            bulk.col(1)
        );
        // Uneven: three chunks, one (short) chunk, none.
        let a: Vec<(String, Option<String>)> = (0..2_500)
            .map(|i| (i.to_string(), Some(format!("a{i}"))))
            .collect();
        let b: Vec<(String, Option<String>)> = (0..700)
            .map(|i| (i.to_string(), (i % 3 != 0).then(|| format!("b{i}"))))
            .collect();
        let none: Vec<(String, Option<String>)> = Vec::new();
        let encode = |rows: &[(String, Option<String>)], sink: &mut Sink| {
            for (n, v) in rows {
                sink.row(&[Cell::Text(n), v.as_deref().into()])?;
            }
            Ok(())
        };
        let streams = [
            Stream::new(&bulk, &template, vec![Fixed::Text("a")], &a, encode),
            Stream::new(&bulk, &template, vec![Fixed::Text("b")], &b, encode),
            Stream::new(&bulk, &template, vec![Fixed::Text("-")], &none, encode),
        ];
        assert!(streams[2].is_empty() && !streams[1].is_empty());
        interleaved(&mut conn, &streams).await.expect("written");
        let rows: Vec<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT s, n, v FROM t ORDER BY rowid")
                .fetch_all(&mut *conn)
                .await
                .expect("rows");
        // Written in turn: a's first thousand, then all of b, then the rest of a.
        let order: Vec<&str> = rows.iter().map(|(s, _, _)| s.as_str()).collect();
        let want: Vec<&str> = std::iter::repeat_n("a", 1_000)
            .chain(std::iter::repeat_n("b", 700))
            .chain(std::iter::repeat_n("a", 1_500))
            .collect();
        assert_eq!(order, want);
        for (name, list) in [("a", &a), ("b", &b)] {
            let got: Vec<(String, Option<String>)> = rows
                .iter()
                .filter(|(s, _, _)| s == name)
                .map(|(_, n, v)| (n.to_string(), v.clone()))
                .collect();
            assert_eq!(&got, list, "stream {name}");
        }
    }

    #[test]
    fn bulk_rows_bind_every_value_once_in_order() {
        let sqlite = BulkRows {
            sqlite: true,
            cols: 3,
            fixed: 2,
        };
        let from = sqlite.from(4);
        // The fixed values come first in the text: SQLite numbers anonymous
        // parameters in the order they appear.
        assert!(from.starts_with("(SELECT ? AS f1, ? AS f2) AS bulk_fixed, (VALUES (?, ?, ?), "));
        assert_eq!(from.matches('?').count(), 2 + 4 * 3);
        assert_eq!(sqlite.col(0), "bulk_rows.column1");
        assert_eq!(sqlite.fixed(2), "bulk_fixed.f2");
        assert_eq!(sqlite.per_statement(), JSON_ROWS);
        let wide = BulkRows {
            sqlite: true,
            cols: 100,
            fixed: 1,
        };
        assert_eq!(wide.per_statement(), (SQLITE_MAX_VARIABLES - 1) / 100);
        let postgres = BulkRows {
            sqlite: false,
            cols: 3,
            fixed: 2,
        };
        assert_eq!(
            postgres.from(4),
            "jsonb_array_elements(CAST($3 AS jsonb)) AS e"
        );
        assert_eq!(postgres.fixed(1), "$1");
        assert_eq!(postgres.bytes_col(2), "decode(e->>2, 'hex')");
    }

    #[test]
    fn placeholders_number_from_the_start() {
        assert_eq!(values(2, 3, 1), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(values(1, 1, 0), "($1)");
        assert_eq!(list(3, 2), "$3, $4, $5");
        assert_eq!(rows_per_statement(PG_PARAMS, 15, 2), 1_000);
        assert_eq!(rows_per_statement(PG_PARAMS, 100, 0), 300);
        assert_eq!(rows_per_statement(PG_PARAMS, 0, 0), 1_000);
        assert_eq!(rows_per_statement(SQLITE_PARAMS, 13, 2), 38);
        assert_eq!(rows_per_statement(SQLITE_PARAMS, 1_000, 0), 1);
    }
}
