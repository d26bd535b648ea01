//! The `prefetch:` section of `blobcache.yaml`.
//!
//! Validation happens during deserialization (like the rest of [`crate::config`]) so a bad date
//! or a bad `blobs:` value is reported with its YAML path, e.g.
//! `prefetch.channels[1].since: invalid date "2023-13-01"; write YYYY-MM-DD ...`.
//! Reflector Lite's channel list file is not part of this file: the prefetcher re-reads it on
//! every run (`crate::prefetch::channel_list`), using [`normalize_channel`] and [`Day`] from here.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::units::{duration, ByteSize};

/// `prefetch:`: which channels to keep warm and how hard to work at it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchConfig {
    /// The LBRY JSON-RPC endpoint (`http://localhost:5279` for a local `lbrynet`, or a public
    /// API proxy).
    #[serde(deserialize_with = "api_url")]
    pub api: String,
    /// Channels listed inline: plain strings or maps with per-channel limits.
    #[serde(default, deserialize_with = "channels_list")]
    pub channels: Vec<ChannelSpec>,
    /// A Reflector Lite channel list (`@name:id[,YYYY-MM-DD]` per line, `#` comments), re-read
    /// at the start of every run. Relative paths are relative to the working directory.
    #[serde(default)]
    pub channel_list_file: Option<PathBuf>,
    /// Time between the start of one run and the next (±10% jitter so many caches do not hit
    /// the API in lockstep).
    #[serde(default = "defaults::interval", deserialize_with = "positive_duration")]
    pub interval: Duration,
    /// Blob fetches in flight at once. Kept small: prefetching must never crowd out clients.
    #[serde(default = "defaults::concurrency", deserialize_with = "at_least_one")]
    pub concurrency: usize,
    /// Most bytes one run may fetch from origins, so a big channel can never flush the cache.
    #[serde(default = "defaults::run_byte_budget")]
    pub run_byte_budget: ByteSize,
    /// `false` keeps the section in the file but starts nothing.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Timeout of one API request.
    #[serde(
        default = "defaults::api_timeout",
        deserialize_with = "positive_duration"
    )]
    pub api_timeout: Duration,
    /// How many times a failed API request is retried (exponential backoff) before the run
    /// gives up on that call.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// The first retry's delay; each further retry doubles it (capped at 30 s).
    #[serde(default = "defaults::retry_backoff", deserialize_with = "duration")]
    pub retry_backoff: Duration,
    /// `claim_search` page size (the SDK allows at most 50).
    #[serde(default = "defaults::page_size", deserialize_with = "page_size")]
    pub page_size: u32,
}

/// One channel to prefetch, with its per-channel limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// `@name:claimid`, `@name#claimid` or a `lbry://` URL.
    #[serde(deserialize_with = "channel_url")]
    pub channel: String,
    /// Skip streams released before this day (UTC).
    #[serde(default)]
    pub since: Option<Day>,
    /// At most this many (newest) streams.
    #[serde(default)]
    pub max_streams: Option<u64>,
    /// At most this many bytes of (newest) streams, by the size their claims declare.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// Which blobs of each stream to fetch.
    #[serde(default)]
    pub blobs: BlobSelection,
    /// Pin the channel's warmed streams: the disk tier never evicts them (bounded by
    /// `pins.pin_max`; docs/operations.md, "Pinning").
    #[serde(default)]
    pub pin: bool,
}

impl ChannelSpec {
    /// A channel with no limits (the plain-string form).
    pub fn plain(channel: String) -> ChannelSpec {
        ChannelSpec {
            channel,
            since: None,
            max_streams: None,
            max_bytes: None,
            blobs: BlobSelection::All,
            pin: false,
        }
    }
}

/// A channel entry is either a plain string or a map with limits.
impl<'de> Deserialize<'de> for ChannelSpecEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = ChannelSpecEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a channel: \"@name:claimid\", a lbry:// URL, or a map \
                     {channel, since, max_streams, max_bytes, blobs}",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let channel = normalize_channel(v).map_err(E::custom)?;
                Ok(ChannelSpecEntry(ChannelSpec::plain(channel)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                // Deserializing through the same MapAccess keeps the YAML path of inner errors.
                ChannelSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ChannelSpecEntry)
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// Wrapper so `channels:` accepts both forms while [`ChannelSpec`] keeps the derived map form.
struct ChannelSpecEntry(ChannelSpec);

fn channels_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ChannelSpec>, D::Error> {
    Ok(Vec::<ChannelSpecEntry>::deserialize(d)?
        .into_iter()
        .map(|e| e.0)
        .collect())
}

/// `blobs:`: which blobs of a stream to fetch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlobSelection {
    /// The sd blob and every content blob.
    #[default]
    All,
    /// The sd blob and the first N content blobs (enough to start playback fast).
    Head(usize),
}

impl fmt::Display for BlobSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobSelection::All => f.write_str("all"),
            BlobSelection::Head(n) => write!(f, "head:{n}"),
        }
    }
}

impl std::str::FromStr for BlobSelection {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || {
            format!(
                "invalid blobs value {text:?}; allowed: all, head:N (the sd blob and the first \
                 N content blobs, N >= 1)"
            )
        };
        if text == "all" {
            return Ok(BlobSelection::All);
        }
        let n = text
            .strip_prefix("head:")
            .and_then(|n| n.trim().parse::<usize>().ok())
            .ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        Ok(BlobSelection::Head(n))
    }
}

impl<'de> Deserialize<'de> for BlobSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d).map_err(|_| {
            de::Error::custom("expected a string; allowed: all, head:N (e.g. head:2)")
        })?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A calendar day (UTC), written `YYYY-MM-DD` as in Reflector Lite's channel list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Day {
    /// Unix seconds at 00:00 UTC of this day.
    pub fn unix_start(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl std::str::FromStr for Day {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid date {text:?}; write YYYY-MM-DD, e.g. 2023-01-31");
        let bytes = text.as_bytes();
        if bytes.len() != 10
            || bytes[4] != b'-'
            || bytes[7] != b'-'
            || !text
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = text[0..4].parse().map_err(|_| bad())?;
        let month: u32 = text[5..7].parse().map_err(|_| bad())?;
        let day: u32 = text[8..10].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(Day { year, month, day })
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)
            .map_err(|_| de::Error::custom("expected a date written YYYY-MM-DD"))?;
        text.trim().parse().map_err(de::Error::custom)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Checks a channel reference and puts it in the form `resolve` accepts.
///
/// Accepted: `@name`, `@name:id`, `@name#id`, `lbry://@name...`, and an odysee.com link (which
/// Reflector Lite rejected; its path is the same channel reference).
pub fn normalize_channel(text: &str) -> Result<String, String> {
    let t = text.trim();
    let allowed = "allowed: \"@name:claimid\", \"@name#claimid\" or a lbry:// URL such as \
                   \"lbry://@name#claimid\"";
    let rest = t
        .strip_prefix("https://odysee.com/")
        .or_else(|| t.strip_prefix("http://odysee.com/"));
    let t = match rest {
        Some(path) => path.split(['?', '/']).next().unwrap_or_default(),
        None => t,
    };
    let name = t.strip_prefix("lbry://").unwrap_or(t);
    if !name.starts_with('@') || name.len() < 2 || name.chars().any(char::is_whitespace) {
        return Err(format!("invalid channel {text:?}; {allowed}"));
    }
    Ok(t.to_string())
}

fn channel_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    normalize_channel(&text).map_err(de::Error::custom)
}

fn api_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    match reqwest::Url::parse(text.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(text.trim().to_string()),
        _ => Err(de::Error::custom(format!(
            "invalid API URL {text:?}; write an http(s) URL such as http://localhost:5279"
        ))),
    }
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = duration(d)?;
    if value.is_zero() {
        return Err(de::Error::custom("duration must be greater than zero"));
    }
    Ok(value)
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(de::Error::custom("must be at least 1"));
    }
    Ok(n)
}

fn page_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if !(1..=50).contains(&n) {
        return Err(de::Error::custom(format!(
            "page_size {n} is out of range; allowed: 1 to 50"
        )));
    }
    Ok(n)
}

mod defaults {
    use crate::config::units::ByteSize;
    use std::time::Duration;

    pub fn interval() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn concurrency() -> usize {
        4
    }
    pub fn run_byte_budget() -> ByteSize {
        ByteSize(10_000_000_000)
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn api_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn retries() -> u32 {
        5
    }
    pub fn retry_backoff() -> Duration {
        Duration::from_secs(1)
    }
    pub fn page_size() -> u32 {
        50
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, BlobcacheConfig};

    fn load(prefetch: &str) -> Result<PrefetchConfig, String> {
        let text = format!("store: {{noop: {{}}}}\nprefetch:\n{prefetch}");
        parse::<BlobcacheConfig>(&text, "blobcache.yaml")
            .map(|c| c.prefetch.expect("prefetch section"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn full_section_loads_with_both_channel_forms() {
        let cfg = load(
            r#"  api: http://localhost:5279
  channels:
    - "@plain:f"
    - lbry://@url#abc
    - {channel: "@lim:1", since: 2023-02-28, max_streams: 5, max_bytes: 1GB, blobs: "head:2"}
  channel_list_file: channels.txt
  interval: 30m
  concurrency: 2
  run_byte_budget: 5GB
  api_timeout: 10s
  retries: 3
"#,
        )
        .unwrap();
        assert_eq!(cfg.channels.len(), 3);
        assert_eq!(cfg.channels[0], ChannelSpec::plain("@plain:f".into()));
        assert_eq!(cfg.channels[1].channel, "lbry://@url#abc");
        let lim = &cfg.channels[2];
        assert_eq!(
            lim.since,
            Some(Day {
                year: 2023,
                month: 2,
                day: 28
            })
        );
        assert_eq!(lim.max_streams, Some(5));
        assert_eq!(lim.max_bytes, Some(ByteSize(1_000_000_000)));
        assert_eq!(lim.blobs, BlobSelection::Head(2));
        assert_eq!(cfg.interval, Duration::from_secs(1800));
        assert_eq!(cfg.concurrency, 2);
        assert_eq!(cfg.run_byte_budget, ByteSize(5_000_000_000));
        assert!(cfg.enabled);
        assert_eq!(cfg.retries, 3);
    }

    #[test]
    fn defaults_apply() {
        let cfg = load("  api: https://api.example/\n  channels: ['@a:1']\n").unwrap();
        assert_eq!(cfg.interval, Duration::from_secs(3600));
        assert_eq!(cfg.concurrency, 4);
        assert_eq!(cfg.run_byte_budget, ByteSize(10_000_000_000));
        assert_eq!(cfg.page_size, 50);
        assert!(cfg.enabled);
    }

    #[test]
    fn bad_values_name_their_path() {
        let e = load("  api: http://x\n  channels:\n    - {channel: '@a:1', since: 2023-13-01}\n")
            .unwrap_err();
        assert!(
            e.contains("prefetch.channels[0].since") && e.contains("YYYY-MM-DD"),
            "{e}"
        );
        let e = load("  api: http://x\n  channels:\n    - {channel: '@a:1', blobs: first}\n")
            .unwrap_err();
        assert!(
            e.contains("prefetch.channels[0].blobs") && e.contains("allowed: all, head:N"),
            "{e}"
        );
        let e = load("  api: http://x\n  channels: ['@a', 'notachannel']\n").unwrap_err();
        assert!(
            e.contains("prefetch.channels[1]") && e.contains("lbry://"),
            "{e}"
        );
        let e = load("  api: ftp://x\n").unwrap_err();
        assert!(e.contains("prefetch.api"), "{e}");
        let e = load("  api: http://x\n  concurrency: 0\n").unwrap_err();
        assert!(e.contains("prefetch.concurrency"), "{e}");
        let e = load("  api: http://x\n  chanels: []\n").unwrap_err();
        assert!(e.contains("unknown field `chanels`"), "{e}");
        let e =
            load("  api: http://x\n  channels:\n    - {channel: '@a:1', head: 2}\n").unwrap_err();
        assert!(
            e.contains("prefetch.channels[0]") && e.contains("unknown field `head`"),
            "{e}"
        );
    }

    #[test]
    fn dates_are_strict_and_convert_to_unix() {
        assert_eq!("1970-01-01".parse::<Day>().unwrap().unix_start(), 0);
        assert_eq!(
            "2024-02-29".parse::<Day>().unwrap().unix_start(),
            1_709_164_800
        );
        for bad in [
            "2023-02-29",
            "2023-1-01",
            "23-01-01",
            "2023/01/01",
            "2023-00-10",
        ] {
            assert!(bad.parse::<Day>().is_err(), "{bad}");
        }
    }

    #[test]
    fn blob_selection_forms() {
        assert_eq!("all".parse::<BlobSelection>().unwrap(), BlobSelection::All);
        assert_eq!(
            "head:3".parse::<BlobSelection>().unwrap(),
            BlobSelection::Head(3)
        );
        assert!("head:0".parse::<BlobSelection>().is_err());
        assert!("head".parse::<BlobSelection>().is_err());
    }
}
