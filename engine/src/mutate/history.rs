//! History entries and the times of what rumoci writes: `SOURCE_DATE_EPOCH`
//! read in one place, so the library and the command line make the same
//! bytes from the same change.

use crate::oci::History;

/// Errors of the times and history entries.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `SOURCE_DATE_EPOCH` is set to something that is not a time.
    #[error("SOURCE_DATE_EPOCH {value:?} {reason}")]
    SourceDateEpoch {
        /// The value as set.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

impl HistoryError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::InvalidInput
    }
}

rumoci_core::wraps!(crate::mutate::history::HistoryError);

/// `SOURCE_DATE_EPOCH`, if set (a value that is not an integer is an
/// error).
pub fn source_date_epoch() -> Result<Option<i64>, HistoryError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => match v.trim().parse::<i64>() {
            Ok(secs) => Ok(Some(secs)),
            Err(e) => Err(HistoryError::SourceDateEpoch {
                value: v,
                reason: format!("is not an integer: {e}"),
            }),
        },
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(HistoryError::SourceDateEpoch {
            value: String::new(),
            reason: e.to_string(),
        }),
    }
}

/// A time as Go's RFC3339Nano formats it (trailing zeros of the fraction
/// trimmed, `Z` for UTC).
pub fn rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The default `created` time: `SOURCE_DATE_EPOCH` if set, else now.
pub fn default_created() -> Result<String, HistoryError> {
    let t = match source_date_epoch()? {
        Some(secs) => chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| {
            HistoryError::SourceDateEpoch {
                value: secs.to_string(),
                reason: "is out of range".into(),
            }
        })?,
        None => chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()),
    };
    Ok(rfc3339_nano(t))
}

/// How the mtimes of a new layer's entries are clamped (an entry newer
/// than the bound gets the bound), so that the same change makes the same
/// layer whenever it is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MtimeClamp {
    /// To `SOURCE_DATE_EPOCH`, read when the layer is written, if it is set
    /// (what the command line does).
    #[default]
    SourceDateEpoch,
    /// To this time (seconds since the epoch).
    At(i64),
    /// Not clamped.
    Off,
}

impl MtimeClamp {
    /// The bound, if any.
    pub fn bound(self) -> Result<Option<i64>, HistoryError> {
        match self {
            MtimeClamp::SourceDateEpoch => source_date_epoch(),
            MtimeClamp::At(t) => Ok(Some(t)),
            MtimeClamp::Off => Ok(None),
        }
    }
}

/// A history entry to add with a change: the one form every change
/// (repack, insert, config, a new layer) takes. Unset fields take defaults
/// when the change is made: `created` from [`default_created`], `author`
/// from the image (repack) or the change (config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Creation time (RFC 3339, as `image::parse_time` normalises it).
    pub created: Option<String>,
    /// The command recorded as having made the entry.
    pub created_by: String,
    /// The author.
    pub author: Option<String>,
    /// A comment.
    pub comment: String,
}

impl HistoryEntry {
    /// An entry saying `created_by`, with every other field defaulted.
    pub fn new(created_by: impl Into<String>) -> HistoryEntry {
        HistoryEntry {
            created_by: created_by.into(),
            ..HistoryEntry::default()
        }
    }

    /// The entry as it goes into the config; `author` when none was given.
    pub fn to_history(&self, author: &str, empty_layer: bool) -> Result<History, HistoryError> {
        Ok(History {
            created: Some(match &self.created {
                Some(c) => c.clone(),
                None => default_created()?,
            }),
            created_by: self.created_by.clone(),
            author: self.author.clone().unwrap_or_else(|| author.to_string()),
            comment: self.comment.clone(),
            empty_layer,
            extra: Default::default(),
        })
    }
}
