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

/// Rows bound as one parameter: a JSON array of arrays. A statement then
/// binds one parameter for a thousand rows, where a `VALUES` list binds
/// one per value and sqlx looks each up by name in a list SQLite scans
/// linearly (see [`SQLITE_PARAMS`]); the database unpacks the rows
/// itself (SQLite `json_each`, PostgreSQL `jsonb_array_elements`).
pub(crate) struct JsonRows {
    sqlite: bool,
    param: usize,
}

/// Rows per [`JsonRows`] statement: a statement's text stays about a MB.
pub(crate) const JSON_ROWS: usize = 1_000;

impl JsonRows {
    /// Rows bound as parameter `$param` on `conn`'s backend.
    pub(crate) fn new(conn: &sqlx::AnyConnection, param: usize) -> JsonRows {
        JsonRows {
            sqlite: conn.backend_name().eq_ignore_ascii_case("sqlite"),
            param,
        }
    }

    /// The `FROM` item yielding one row per element. SQLite's is followed
    /// by `WHERE true` where an upsert follows (its parser would otherwise
    /// read `ON CONFLICT` as a join's `ON`).
    ///
    /// PostgreSQL's rows are `jsonb`: parsed once, each column then a
    /// lookup. A `json` element is text, and each `->>` parses it again
    /// from its start (eleven columns, eleven parses of every row).
    pub(crate) fn from(&self) -> String {
        if self.sqlite {
            format!("json_each(${})", self.param)
        } else {
            format!("jsonb_array_elements(CAST(${} AS jsonb)) AS e", self.param)
        }
    }

    /// Column `i` of a row, as text (`NULL` for a JSON null).
    pub(crate) fn col(&self, i: usize) -> String {
        if self.sqlite {
            format!("value->>{i}")
        } else {
            format!("e->>{i}")
        }
    }

    /// Column `i` of a row, bound as hex text, as bytes.
    pub(crate) fn bytes_col(&self, i: usize) -> String {
        if self.sqlite {
            format!("unhex(value->>{i})")
        } else {
            format!("decode(e->>{i}, 'hex')")
        }
    }
}

/// A value bound before a [`pipelined`] statement's rows.
pub(crate) enum Fixed<'a> {
    /// Text.
    Text(&'a str),
    /// An integer.
    Int(i64),
}

/// `rows` written a [`JSON_ROWS`] chunk to a statement: `sql` bound with
/// `fixed`, then the chunk's [`JsonRows`] parameter as `encode` makes it.
/// The next chunk is encoded while the database writes this one: SQLite
/// writes on its own worker thread, and a chunk's encoding (serialising,
/// packing on every core) had the database idle for it, chunk after chunk.
pub(crate) async fn pipelined<T: Sync>(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    fixed: &[Fixed<'_>],
    rows: &[T],
    encode: impl Fn(&[T]) -> Result<String, super::StoreError>,
) -> Result<(), super::StoreError> {
    let mut chunks = rows.chunks(JSON_ROWS);
    let mut next = chunks.next().map(&encode).transpose()?;
    while let Some(param) = next.take() {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for f in fixed {
            q = match f {
                Fixed::Text(t) => q.bind(*t),
                Fixed::Int(i) => q.bind(*i),
            };
        }
        let write = q.bind(param).execute(&mut *conn);
        let following = chunks.next();
        // `join` polls the write first: its statement is handed to the
        // database before the next chunk is encoded.
        let (written, encoded) =
            futures_util::future::join(write, async { following.map(&encode).transpose() }).await;
        written?;
        next = encoded?;
    }
    Ok(())
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
