//! When the daemon's next pass at an approval's end is due: the approvals'
//! ends and federated starts sorted once per list, so a targeted pass at
//! 270,000 approvals finds the next one by binary search instead of a scan.

use nhi_contract::{Approval, Issuance};

type Timestamp = chrono::DateTime<chrono::Utc>;

/// An approval's effective end: an emergency declared over ends it then.
pub(crate) fn end(a: &Approval) -> Timestamp {
    let ended = a.emergency.as_ref().and_then(|e| e.ended_at);
    ended.map_or(a.expires_at, |e| e.min(a.expires_at))
}

/// The unrevoked approvals' ends, and the starts of those that federate a
/// workload (the reconciler adds the credential at the start), sorted.
#[derive(Debug, Default)]
pub(crate) struct Expiries {
    ends: Vec<(Timestamp, usize)>,
    starts: Vec<(Timestamp, usize)>,
}

impl Expiries {
    /// Sort `approvals`' instants.
    pub fn of(approvals: &[Approval]) -> Expiries {
        let unrevoked = || {
            approvals
                .iter()
                .enumerate()
                .filter(|(_, a)| a.revoked_at.is_none())
        };
        let mut ends: Vec<(Timestamp, usize)> = unrevoked().map(|(k, a)| (end(a), k)).collect();
        let mut starts: Vec<(Timestamp, usize)> = unrevoked()
            .filter(|(_, a)| a.issuance() == Some(Issuance::Federation))
            .map(|(k, a)| (a.starts(), k))
            .collect();
        ends.sort_unstable();
        starts.sort_unstable();
        Expiries { ends, starts }
    }

    /// The first end or federated start after `now` of an approval still
    /// live then, merged with `others` (exceptions' ends), and the
    /// subjects of every approval due within a second of it (the identities
    /// an exception covers are the caller's to add).
    pub fn next(
        &self,
        approvals: &[Approval],
        now: Timestamp,
        others: &[Timestamp],
    ) -> Option<(Timestamp, Vec<String>)> {
        let after = |v: &[(Timestamp, usize)]| v.partition_point(|(t, _)| *t <= now);
        let ends = &self.ends[after(&self.ends)..];
        // A start counts only while its approval has not ended.
        let starts = self.starts[after(&self.starts)..]
            .iter()
            .filter(|(_, k)| end(&approvals[*k]) > now);
        let first = ends
            .first()
            .map(|(t, _)| *t)
            .into_iter()
            .chain(starts.clone().next().map(|(t, _)| *t))
            .chain(others.iter().copied().filter(|t| *t > now))
            .min()?;
        let soon = first + chrono::Duration::seconds(1);
        let mut ids: Vec<String> = ends
            .iter()
            .take_while(|(t, _)| *t <= soon)
            .chain(starts.take_while(|(t, _)| *t <= soon))
            .map(|(_, k)| approvals[*k].subject.clone())
            .collect();
        ids.sort();
        ids.dedup();
        Some((first, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, synth_now, SynthSpec};

    /// What the daemon used to compute by scanning every approval.
    fn scanned(a: &[Approval], now: Timestamp) -> Option<(Timestamp, Vec<String>)> {
        let live = || a.iter().filter(|a| a.revoked_at.is_none() && end(a) > now);
        let starting =
            || live().filter(|a| a.starts() > now && a.issuance() == Some(Issuance::Federation));
        let first = live()
            .map(end)
            .chain(starting().map(|a| a.starts()))
            .min()?;
        let soon = first + chrono::Duration::seconds(1);
        let mut ids: Vec<String> = live()
            .filter(|a| end(a) <= soon)
            .chain(starting().filter(|a| a.starts() <= soon))
            .map(|a| a.subject.clone())
            .collect();
        ids.sort();
        ids.dedup();
        Some((first, ids))
    }

    #[test]
    fn the_next_expiry_is_the_scan_s_at_every_instant() {
        let (_, mut approvals) = generate(SynthSpec {
            identities: 3_000,
            credentials: 6_000,
            seed: 11,
        });
        // Ends that tie and fall within a second of each other, revoked
        // ones, emergencies ended early: the cases a sort could get wrong.
        let base = synth_now() + chrono::Duration::days(3);
        for (k, a) in approvals.iter_mut().enumerate().take(60) {
            a.expires_at = base + chrono::Duration::milliseconds((k as i64 % 4) * 400);
            if k % 7 == 0 {
                a.revoked_at = Some(synth_now());
            }
            // Federated workloads starting later, some after their end.
            if k >= 40 {
                a.role = Some("app-role".into());
                a.issue_to = Some(nhi_contract::Workload {
                    issuer: "https://token.actions.githubusercontent.com".into(),
                    subject: format!("repo:org/app-{k}"),
                });
                a.starts_at = Some(base - chrono::Duration::hours(k as i64 % 3));
                if k % 5 == 0 {
                    a.expires_at = base - chrono::Duration::hours(2);
                }
            }
        }
        let ex = Expiries::of(&approvals);
        let mut instants: Vec<Timestamp> = approvals
            .iter()
            .flat_map(|a| [end(a), a.starts()])
            .collect();
        instants.sort();
        instants.dedup();
        let step = (instants.len() / 300).max(1);
        let mut checked = 0;
        for now in instants
            .iter()
            .step_by(step)
            .copied()
            .chain([base, synth_now()])
        {
            for now in [now - chrono::Duration::milliseconds(1), now] {
                assert_eq!(
                    ex.next(&approvals, now, &[]),
                    scanned(&approvals, now),
                    "at {now}"
                );
                checked += 1;
            }
        }
        assert!(checked > 300);
        let tied = ex.next(&approvals, base - chrono::Duration::seconds(1), &[]);
        assert!(
            tied.is_some_and(|(_, ids)| ids.len() > 1),
            "ties share a pass"
        );
        // An exception ending first wins the instant, with no approval's
        // subject unless one is due with it.
        let sooner = synth_now() + chrono::Duration::minutes(1);
        let (at, _) = ex.next(&approvals, synth_now(), &[sooner]).expect("some");
        assert_eq!(at, sooner);
        assert!(ex.next(&approvals, Timestamp::MAX_UTC, &[]).is_none());
    }
}
