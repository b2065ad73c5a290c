//! Dates and durations that come from outside (approval files, snapshots,
//! configuration), in one place: accepted dates are bounded to a sane range
//! when they are read, and durations built from outside numbers saturate
//! instead of overflowing, so no arithmetic on them can panic.
//!
//! chrono panics when `DateTime + TimeDelta` leaves its range
//! (±262,143 years) and when `TimeDelta::days(n)` or `::hours(n)` cannot
//! hold `n`; a date of `+262142-01-01T00:00:00Z` or a setting of
//! `i64::MAX` days reaches exactly those.

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use serde::{Deserialize, Deserializer};

use crate::Timestamp;

/// Earliest year a date from outside may have.
pub const MIN_YEAR: i32 = 1970;
/// Latest year a date from outside may have.
pub const MAX_YEAR: i32 = 9999;

/// A date outside [`MIN_YEAR`]..=[`MAX_YEAR`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("date {0} is out of range: dates must fall in the years {MIN_YEAR} to {MAX_YEAR}")]
pub struct OutOfRange(pub Timestamp);

/// `t` if its year is within [`MIN_YEAR`]..=[`MAX_YEAR`].
pub fn check(t: Timestamp) -> Result<Timestamp, OutOfRange> {
    if (MIN_YEAR..=MAX_YEAR).contains(&t.year()) {
        Ok(t)
    } else {
        Err(OutOfRange(t))
    }
}

fn saturate(d: Option<TimeDelta>, n: i64) -> TimeDelta {
    d.unwrap_or(if n < 0 {
        TimeDelta::MIN
    } else {
        TimeDelta::MAX
    })
}

/// `n` days; beyond what a duration holds, the longest (or most negative)
/// duration — "forever" — rather than a panic.
pub fn days(n: i64) -> TimeDelta {
    saturate(TimeDelta::try_days(n), n)
}

/// `n` hours, saturating like [`days`].
pub fn hours(n: i64) -> TimeDelta {
    saturate(TimeDelta::try_hours(n), n)
}

/// `t + d`, clamped to the representable instants instead of panicking.
pub fn add(t: Timestamp, d: TimeDelta) -> Timestamp {
    t.checked_add_signed(d).unwrap_or(if d < TimeDelta::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// Whether at least `d` has passed from `since` to `now` (a saturated
/// "forever" never has).
pub fn elapsed(since: Timestamp, now: Timestamp, d: TimeDelta) -> bool {
    now.signed_duration_since(since) >= d
}

/// How long an HTTP `Retry-After` value (RFC 9110: delay seconds, or an
/// HTTP date) asks to wait from `now`; a date in the past is no wait,
/// anything else unreadable is `None`. Callers cap the wait themselves.
pub fn retry_after(value: &str, now: Timestamp) -> Option<std::time::Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(std::time::Duration::ZERO),
    )
}

/// serde `deserialize_with` for a [`Timestamp`] field: parsed as chrono
/// does, then bounded by [`check`] (the error carries the parser's location).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let t = Timestamp::deserialize(d)?;
    check(t).map_err(serde::de::Error::custom)
}

/// serde `deserialize_with` for an `Option<Timestamp>` field (use with
/// `#[serde(default)]`).
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Option::<Timestamp>::deserialize(d)?
        .map(check)
        .transpose()
        .map_err(serde::de::Error::custom)
}

/// A [`Timestamp`] bounded by [`check`] when deserialized, for wrappers such
/// as a spanned value that cannot take `deserialize_with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bounded(pub Timestamp);

impl<'de> Deserialize<'de> for Bounded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d).map(Bounded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_outside_saturate() {
        assert_eq!(days(i64::MAX), TimeDelta::MAX);
        assert_eq!(days(i64::MIN), TimeDelta::MIN);
        assert_eq!(hours(i64::MAX), TimeDelta::MAX);
        assert_eq!(hours(-1), TimeDelta::hours(-1));
        assert_eq!(days(365), TimeDelta::days(365));
        let now = Utc::now();
        assert_eq!(add(now, days(i64::MAX)), DateTime::<Utc>::MAX_UTC);
        assert_eq!(add(now, days(i64::MIN)), DateTime::<Utc>::MIN_UTC);
        assert!(!elapsed(DateTime::<Utc>::MIN_UTC, now, hours(i64::MAX)));
        assert!(elapsed(now, now, hours(0)));
    }

    #[test]
    fn dates_are_bounded() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[serde(deserialize_with = "deserialize")]
            at: Timestamp,
            #[serde(default, deserialize_with = "deserialize_opt")]
            until: Option<Timestamp>,
        }
        let ok: T = serde_json::from_str(r#"{"at": "2026-01-01T00:00:00Z"}"#).expect("in range");
        assert_eq!((ok.at.year(), ok.until), (2026, None));
        for bad in [
            r#"{"at": "+262142-01-01T00:00:00Z"}"#,
            r#"{"at": "1969-12-31T23:59:59Z"}"#,
            r#"{"at": "2026-01-01T00:00:00Z", "until": "+10000-01-01T00:00:00Z"}"#,
        ] {
            let e = serde_json::from_str::<T>(bad).expect_err(bad);
            assert!(e.to_string().contains("out of range"), "{e}");
            assert!(e.line() == 1 && e.column() > 0, "located: {e}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_nothing_else() {
        let now = Utc::now();
        assert_eq!(
            retry_after(" 7 ", now),
            Some(std::time::Duration::from_secs(7))
        );
        let later = (now + TimeDelta::seconds(30)).to_rfc2822();
        let wait = retry_after(&later, now).expect("a date");
        assert!(wait.as_secs() >= 29 && wait.as_secs() <= 30, "{wait:?}");
        let past = (now - TimeDelta::hours(1)).to_rfc2822();
        assert_eq!(retry_after(&past, now), Some(std::time::Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-3", now), None);
    }
}
