//! Sizes and durations as written in the YAML files (`500GB`, `2GiB`, `30s`, `1h 30m`).
//!
//! Validation happens during deserialization, so the loader can prefix each error with the YAML
//! path it came from. This module depends on nothing else in the crate: every config section
//! (and anything else that parses a size or a duration) can use it.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A size in bytes: an integer, or a string such as `500GB`, `2GiB`, `512 MiB`.
/// Decimal units are powers of 1000 (`GB`), binary ones powers of 1024 (`GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    /// Binary units for sizes that are whole MiB (`256.0 MiB`), decimal otherwise (`10.0 GB`),
    /// so a size reads back the way it was most likely written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binary = self.0.is_multiple_of(1 << 20);
        write!(f, "{}", bytesize::ByteSize(self.0).to_string_as(binary))
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        trimmed
            .parse::<bytesize::ByteSize>()
            .map_err(|_| {
                format!("invalid size {text:?}; write a byte count or a number with a unit such as 500MB, 2GiB, 1.5TB")
            })
            .and_then(|b| match b.as_u64() {
                // bytesize saturates instead of failing: u64::MAX means the number overflowed.
                u64::MAX => Err(format!("size {text:?} is too large (at most 16 EiB)")),
                n => Ok(ByteSize(n)),
            })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let size = match Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a size: a byte count or a string such as 500GB or 2GiB")
        })? {
            Raw::Int(n) => ByteSize(n),
            Raw::Text(t) => t.parse().map_err(de::Error::custom)?,
        };
        if size.0 == 0 {
            return Err(de::Error::custom("size must be greater than zero"));
        }
        Ok(size)
    }
}

/// A duration: a string such as `30s`, `5m`, `1h 30m`, or a number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    let parsed = match Raw::deserialize(d)
        .map_err(|_| de::Error::custom("expected a duration such as 30s, 5m or 1h"))?
    {
        Raw::Secs(s) => Duration::from_secs(s),
        Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {t:?} ({e}); write e.g. 500ms, 30s, 5m, 1h"
            ))
        })?,
    };
    // Deadlines are added to the clock (`now + timeout`); a duration near the type's limit
    // would overflow there, at the first request instead of at load.
    if parsed > MAX_DURATION {
        return Err(de::Error::custom(format!(
            "duration of {}s is too long (at most 100 years)",
            parsed.as_secs()
        )));
    }
    Ok(parsed)
}

/// The longest duration a setting may have.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// An optional [`duration`].
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[cfg(test)]
mod overflow_tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        #[serde(deserialize_with = "duration", default)]
        #[allow(dead_code)]
        d: Duration,
        #[allow(dead_code)]
        s: Option<ByteSize>,
    }

    #[test]
    fn sizes_and_durations_that_overflow_are_refused_at_load() {
        let e = "20000 PB".parse::<ByteSize>().unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert!("16000 PB".parse::<ByteSize>().is_ok());
        let e = serde_yaml::from_str::<T>("d: 18446744073709551615").unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
        assert!(serde_yaml::from_str::<T>("d: 30s").is_ok());
    }
}
