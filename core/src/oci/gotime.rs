//! Times as Go's `time` package writes them.
//!
//! umoci stores every time (`created` of configs and history entries) by
//! parsing it into a Go `time.Time` and writing it back with
//! `time.RFC3339Nano`: the offset is kept as written, the fraction loses its
//! trailing zeros, and a zero offset becomes `Z`. Reproducing that keeps the
//! blobs rumoci writes byte-identical to umoci's for the same input.

use chrono::{DateTime, FixedOffset};

/// A time that is not RFC 3339.
#[derive(Debug, thiserror::Error)]
#[error("{input:?} is not an RFC 3339 time: {source}")]
pub struct TimeError {
    /// What was given.
    pub input: String,
    /// Why chrono refused it.
    #[source]
    pub source: chrono::ParseError,
}

/// Parse an RFC 3339 time (fraction optional, `Z` or `±hh:mm`).
pub fn parse_rfc3339(s: &str) -> Result<DateTime<FixedOffset>, TimeError> {
    DateTime::parse_from_rfc3339(s).map_err(|source| TimeError {
        input: s.to_string(),
        source,
    })
}

/// Format `t` as Go's `t.Format(time.RFC3339Nano)`: `2006-01-02T15:04:05`,
/// then the nanoseconds without trailing zeros (nothing when zero), then `Z`
/// for a zero offset or `±hh:mm`.
pub fn format_rfc3339_nano(t: &DateTime<FixedOffset>) -> String {
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    // chrono keeps a leap second as nanoseconds >= 1e9; Go has none
    let nanos = t.timestamp_subsec_nanos() % 1_000_000_000;
    if nanos != 0 {
        out.push('.');
        out.push_str(format!("{nanos:09}").trim_end_matches('0'));
    }
    if t.offset().local_minus_utc() == 0 {
        out.push('Z');
    } else {
        out.push_str(&t.format("%:z").to_string());
    }
    out
}

/// Parse an RFC 3339 time and write it back as Go would (see the module
/// documentation): `2025-09-05T13:05:10.120+10:00` becomes
/// `2025-09-05T13:05:10.12+10:00`, `…+00:00` becomes `…Z`.
pub fn normalize_rfc3339(s: &str) -> Result<String, TimeError> {
    Ok(format_rfc3339_nano(&parse_rfc3339(s)?))
}

impl crate::oci::gotime::TimeError {
    /// What kind of failure this is: always [`crate::error::ErrorKind::InvalidInput`].
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::InvalidInput
    }
}

crate::wraps!(crate::oci::gotime::TimeError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_offset_and_significant_fraction() {
        let n = |s| normalize_rfc3339(s).expect("valid");
        assert_eq!(
            n("2025-09-05T13:05:10.12345+10:00"),
            "2025-09-05T13:05:10.12345+10:00"
        );
        assert_eq!(
            n("2025-09-05T13:05:10.123450000-03:30"),
            "2025-09-05T13:05:10.12345-03:30"
        );
        assert_eq!(
            n("2025-09-05T13:05:10.000+01:00"),
            "2025-09-05T13:05:10+01:00"
        );
        assert_eq!(n("1997-03-25T13:40:00+00:00"), "1997-03-25T13:40:00Z");
        assert_eq!(n("1997-03-25T13:40:00Z"), "1997-03-25T13:40:00Z");
        assert!(normalize_rfc3339("yesterday").is_err());
        assert!(normalize_rfc3339("2025-09-05").is_err());
    }
}
