//! Multi-row statements: one statement per chunk of rows instead of one
//! per row. Per-statement overhead (sqlx's `Any` driver, a round trip to
//! PostgreSQL) dominated a pass on a large estate; rows per statement are
//! bounded so the bound parameters stay under both backends' limits
//! (SQLite 32,766, PostgreSQL 65,535).

/// Parameters bound by one statement, at most.
const MAX_PARAMS: usize = 30_000;

/// Rows per statement for rows of `cols` parameters, with `fixed` more
/// parameters bound once per statement.
pub(crate) fn rows_per_statement(cols: usize, fixed: usize) -> usize {
    (MAX_PARAMS.saturating_sub(fixed) / cols.max(1)).clamp(1, 1_000)
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
        assert_eq!(rows_per_statement(15, 2), 1_000);
        assert_eq!(rows_per_statement(100, 0), 300);
        assert_eq!(rows_per_statement(0, 0), 1_000);
    }
}
