//! Whether the open findings are still as the latest full run left them.
//!
//! A full run that leaves the store's open findings and open-ended
//! sightings exactly as its own findings (none left open that it did not
//! see) keeps their digest. The next full run whose findings have the
//! same digest would change nothing: it records itself without reading
//! every open row back to find that out (at a million credentials, most
//! of an unchanged scan's store time).
//!
//! The digest stays true because every other write to `findings` or
//! `finding_sightings` deletes it in its own transaction ([`forget`]):
//! the writers in this module's siblings call it, and a migration that
//! changes either table must delete the row too. A digest found is one
//! no write has made untrue since it was kept.
//!
//! That needs the writers serialised: on SQLite a transaction holds the
//! write lock from its first write (a run's, from inserting itself, before
//! it reads the digest); on PostgreSQL every writer takes [`LOCK_KEY`] as
//! a transaction-scoped advisory lock ([`lock`]) before it reads the
//! digest or changes the findings, so no write lands between a run's read
//! of the open state and its keeping the digest.

use sha2::Digest;
use sqlx::AnyConnection;

use super::{Prepared, StoreError};

/// The PostgreSQL advisory lock every writer of the open findings takes
/// for the rest of its transaction (`pg_advisory_xact_lock`); a tool that
/// writes `findings` or `finding_sightings` must take it too.
pub const LOCK_KEY: i64 = 0x6e68_6961_6f70_656e; // "nhiaopen"

/// Take [`LOCK_KEY`] until the transaction on `conn` ends (PostgreSQL; on
/// SQLite the transaction's write lock serialises writers already).
pub(crate) async fn lock(conn: &mut AnyConnection) -> Result<(), StoreError> {
    if !conn.backend_name().eq_ignore_ascii_case("sqlite") {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The digest of a run's findings as the store compares them: each one's
/// fingerprint, data hash, facets and source, in fingerprint order.
pub(crate) fn digest(findings: &[Prepared<'_>]) -> String {
    let mut h = sha2::Sha256::new();
    // Its own name: a digest of another shape never matches this one.
    h.update(b"nhi-assure open state v1\n");
    for p in findings {
        let (hash, depends) = (p.hash.hex_bytes(), p.f.depends.stored());
        for part in [
            p.fp.as_bytes(),
            &hash,
            depends.as_bytes(),
            p.f.source.as_bytes(),
        ] {
            h.update(part);
            h.update([0]);
        }
    }
    hex::encode(h.finalize())
}

/// The digest kept by the latest full run, if no write has removed it.
pub(crate) async fn read(conn: &mut AnyConnection) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT digest FROM open_state WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Keep `digest` as what run `run_id` left open (in its transaction).
pub(crate) async fn keep(
    conn: &mut AnyConnection,
    digest: &str,
    run_id: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO open_state (id, digest, run_id) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET digest = excluded.digest, run_id = excluded.run_id",
    )
    .bind(digest)
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The open findings are about to change: no digest holds any more.
pub(crate) async fn forget(conn: &mut AnyConnection) -> Result<(), StoreError> {
    lock(conn).await?;
    sqlx::query("DELETE FROM open_state")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::facets::Facets;
    use crate::engine::rules::Severity;
    use crate::store::runs::tests::finding;
    use crate::store::SourcedFinding;

    fn of(findings: &[SourcedFinding]) -> String {
        digest(&Prepared::all(findings).expect("prepared"))
    }

    /// Whatever the store compares of a finding changes the digest; the
    /// order the engine found them in does not.
    #[test]
    fn the_digest_covers_what_a_run_compares() {
        let (a, b) = (finding("AKIA1"), finding("AKIA2"));
        let base = of(&[a.clone(), b.clone()]);
        assert_eq!(base, of(&[b.clone(), a.clone()]));
        assert_ne!(base, of(std::slice::from_ref(&a)), "a finding fewer");
        let mut data = a.clone();
        data.finding.severity = Severity::Low;
        let mut source = a.clone();
        source.source = "aws-2".into();
        let mut depends = a.clone();
        depends.depends = Facets::NONE;
        for changed in [data, source, depends] {
            assert_ne!(base, of(&[changed, b.clone()]));
        }
    }
}
