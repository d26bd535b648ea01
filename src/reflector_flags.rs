//! reflector.go's flag command line for `prism-lite reflector` (its older README's private
//! blobcache: `--disk-cache 2GB:/path:localdb --upstream-reflector host ...`), turned into the
//! `blobcache.yaml` it stands for.
//!
//! The flags become YAML text that is then parsed by the same loader as a file, so a flag line
//! builds exactly the typed config a file would, `--print-config` prints that file, and every
//! check a file gets applies. Each store is named after the flag that made it
//! (`disk-cache`, `upstream-reflector`, ...), so a later error about a store names the flag.
//! The tree is reflector.go's: the origin (an upstream reflector, else the HTTP origin
//! endpoints and/or the `--conf` bucket), under the `--disk-cache` tier, under the
//! `--optional-disk-cache` tier, under the `--mem-cache` tier.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_yaml::{Mapping, Value};

use prism_lite::blob::MAX_BLOB_SIZE;

/// reflector.go's `reflector` flags (its older README lists them).
#[derive(clap::Args, Debug, Default)]
pub struct LegacyFlags {
    /// reflector.go's config.json (S3 settings), or `none` for no file.
    #[arg(long, value_name = "PATH|none")]
    pub conf: Option<String>,
    /// Accepted: prism-lite keeps no database (`--use-db=false` is what it does anyway).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub use_db: Option<bool>,
    /// Do not run the upload door (--receiver-port).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub disable_uploads: Option<bool>,
    /// The disk cache, `SIZE:PATH:MANAGER` (e.g. `2GB:/var/cache/blobs:localdb`; SIZE in
    /// reflector.go's binary units, PATH absolute, MANAGER localdb, lfuda, lfu, arc, lru or
    /// simple: all run as the disk LRU) [default: 100GB:/tmp/downloaded_blobs:localdb].
    #[arg(long, value_name = "SIZE:PATH:MANAGER", value_parser = DiskCache::parse)]
    pub disk_cache: Option<DiskCache>,
    /// A second disk tier, hit before --disk-cache (same form).
    #[arg(long, value_name = "SIZE:PATH:MANAGER", value_parser = DiskCache::parse)]
    pub optional_disk_cache: Option<DiskCache>,
    /// A memory tier of this many blobs (N x 2 MiB), hit first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub mem_cache: Option<u64>,
    /// HOST[:PORT] of the reflector blobs are fetched from (port default: 5567 tcp, 5568 http3,
    /// 5569 http).
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_host_port)]
    pub upstream_reflector: Option<String>,
    /// How to fetch from --upstream-reflector [default: http].
    #[arg(long, value_name = "PROTOCOL", value_enum)]
    pub upstream_protocol: Option<UpstreamProtocol>,
    /// HTTP(S) origin blobs are fetched from (`URL/HASH`). Checked after parsing, so an
    /// error never repeats a password or signature the URL carries.
    #[arg(long, value_name = "URL")]
    pub origin_endpoint: Option<String>,
    /// HTTP(S) origin tried when --origin-endpoint fails or lacks the blob.
    #[arg(long, value_name = "URL")]
    pub origin_endpoint_fallback: Option<String>,
    /// Port of the HTTP door [default: 5569].
    #[arg(long, value_name = "PORT")]
    pub http_peer_port: Option<u16>,
    /// UDP port of the HTTP/3 door [default: 5568].
    #[arg(long, value_name = "PORT")]
    pub http3_peer_port: Option<u16>,
    /// Port of the LBRY peer (TCP) door [default: 5567].
    #[arg(long, value_name = "PORT")]
    pub tcp_peer_port: Option<u16>,
    /// Concurrent requests each door serves; the rest wait [default: 200].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub request_queue_size: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamProtocol {
    Tcp,
    Http3,
    Http,
}

/// One `--disk-cache` value.
#[derive(Clone, Debug)]
pub struct DiskCache {
    pub bytes: u64,
    pub path: PathBuf,
    pub manager: String,
}

/// reflector.go's cache managers; all of them run as the disk store's own LRU here.
const MANAGERS: [&str; 6] = ["localdb", "lfuda", "lfu", "arc", "lru", "simple"];

impl DiskCache {
    fn parse(text: &str) -> Result<DiskCache, String> {
        let form = "expected SIZE:PATH:MANAGER, e.g. 2GB:/var/cache/blobs:localdb";
        let parts: Vec<&str> = text.split(':').collect();
        let [size, path, manager] = parts[..] else {
            return Err(form.into());
        };
        let bytes = datasize(size)?;
        if !path.starts_with('/') {
            return Err(format!("PATH {path:?} must be absolute (start with /)"));
        }
        if !MANAGERS.contains(&manager) {
            return Err(format!(
                "MANAGER {manager:?} unknown; allowed: {}",
                MANAGERS.join(", ")
            ));
        }
        Ok(DiskCache {
            bytes,
            path: PathBuf::from(path),
            manager: manager.into(),
        })
    }
}

/// A size as reflector.go reads it (the `datasize` package): an integer and a unit, binary
/// multiples (`2GB` = 2 GiB); no unit is bytes. Must be more than 0.
fn datasize(text: &str) -> Result<u64, String> {
    let bad = || format!("SIZE {text:?} is not a size such as 500MB, 2GB, 1TB");
    let digits = text.trim().find(|c: char| !c.is_ascii_digit());
    let (number, unit) = text.trim().split_at(digits.unwrap_or(text.trim().len()));
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(bad()),
    };
    let bytes = number.checked_shl(shift).filter(|b| b >> shift == number);
    match bytes {
        Some(0) => Err(format!("SIZE {text:?} must be more than 0")),
        Some(b) => Ok(b),
        None => Err(format!("SIZE {text:?} is too large")),
    }
}

fn parse_host_port(text: &str) -> Result<String, String> {
    let bad = || format!("{text:?} is not HOST or HOST:PORT (e.g. reflector.lbry.com:5569)");
    if text.is_empty() || text.contains('/') || text.contains(char::is_whitespace) {
        return Err(bad());
    }
    if let Some((host, port)) = text.rsplit_once(':') {
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
    }
    Ok(text.into())
}

/// `--FLAG URL` must be an http(s) URL; the error shows the URL with its secrets as `***`.
fn check_http_url(flag: &str, text: &str) -> anyhow::Result<()> {
    match reqwest::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => anyhow::bail!(
            "--{flag} {}: not an http:// or https:// URL",
            prism_lite::secret::redact_url(text)
        ),
    }
}

impl LegacyFlags {
    /// Whether any flag of reflector.go's flag form was given (then no file is read).
    pub fn any(&self) -> bool {
        let LegacyFlags {
            conf,
            use_db,
            disable_uploads,
            disk_cache,
            optional_disk_cache,
            mem_cache,
            upstream_reflector,
            upstream_protocol,
            origin_endpoint,
            origin_endpoint_fallback,
            http_peer_port,
            http3_peer_port,
            tcp_peer_port,
            request_queue_size,
        } = self;
        conf.is_some()
            || use_db.is_some()
            || disable_uploads.is_some()
            || disk_cache.is_some()
            || optional_disk_cache.is_some()
            || mem_cache.is_some()
            || upstream_reflector.is_some()
            || upstream_protocol.is_some()
            || origin_endpoint.is_some()
            || origin_endpoint_fallback.is_some()
            || http_peer_port.is_some()
            || http3_peer_port.is_some()
            || tcp_peer_port.is_some()
            || request_queue_size.is_some()
    }

    /// The `blobcache.yaml` these flags stand for, and the notes start-up logs (what a flag
    /// means here when that differs from reflector.go).
    pub fn to_yaml(&self, receiver_port: Option<u16>) -> anyhow::Result<(Value, Vec<String>)> {
        let mut notes = Vec::new();
        if self.use_db == Some(true) {
            notes.push("--use-db=true: prism-lite keeps no database; going on without one".into());
        }
        let s3 = match self.conf.as_deref() {
            None | Some("none") => None,
            Some(path) => config_json_s3(Path::new(path), &mut notes)?,
        };
        let default_disk = DiskCache {
            bytes: 100 << 30,
            path: "/tmp/downloaded_blobs".into(),
            manager: "localdb".into(),
        };
        // Innermost first: the optional disk is hit before the main one. A PATH that is a file
        // fails as `check-config` fails a `mount_point` (a missing one is created at start).
        let mut tiers = vec![(
            "disk-cache",
            self.disk_cache.as_ref().unwrap_or(&default_disk),
        )];
        if let Some(optional) = &self.optional_disk_cache {
            tiers.push(("optional-disk-cache", optional));
        }
        for (flag, disk) in &tiers {
            if disk.path.exists() && !disk.path.is_dir() {
                anyhow::bail!(
                    "--{flag} {}: exists and is not a directory",
                    disk.path.display()
                );
            }
        }
        let mut store = self.origin(s3)?;
        for (flag, disk) in tiers {
            store = disk_tier(flag, disk, store, &mut notes);
        }
        if let Some(blobs) = self.mem_cache {
            let mem = one_key(
                "mem",
                map(&[
                    ("name", "mem".into()),
                    ("max_size", (blobs * MAX_BLOB_SIZE as u64).into()),
                ]),
            );
            store = caching("mem-cache", mem, store);
        }
        let file = map(&[("servers", self.servers(receiver_port)), ("store", store)]);
        Ok((file, notes))
    }

    /// The origin: `--upstream-reflector` (over `--upstream-protocol`), else the HTTP origin
    /// endpoints and/or the `--conf` bucket (both: read the endpoints, write the bucket).
    fn origin(&self, s3: Option<Value>) -> anyhow::Result<Value> {
        if let Some(address) = &self.upstream_reflector {
            return Ok(self.upstream(address));
        }
        for (flag, url) in [
            ("origin-endpoint", &self.origin_endpoint),
            ("origin-endpoint-fallback", &self.origin_endpoint_fallback),
        ] {
            if let Some(url) = url {
                check_http_url(flag, url)?;
            }
        }
        let http = |name: &str, url: &str| {
            one_key(
                "http",
                map(&[("name", name.into()), ("endpoint", url.into())]),
            )
        };
        let endpoints = match (&self.origin_endpoint, &self.origin_endpoint_fallback) {
            (Some(first), Some(fallback)) => Some(one_key(
                "ittt",
                map(&[
                    ("name", "origin-endpoints".into()),
                    ("this", http("origin-endpoint", first)),
                    ("that", http("origin-endpoint-fallback", fallback)),
                ]),
            )),
            (Some(first), None) => Some(http("origin-endpoint", first)),
            (None, Some(_)) => anyhow::bail!(
                "--origin-endpoint-fallback needs --origin-endpoint (the origin it falls back from)"
            ),
            (None, None) => None,
        };
        match (endpoints, s3) {
            (Some(read), Some(write)) => Ok(one_key(
                "proxied-s3",
                map(&[("name", "origin".into()), ("reader", read), ("writer", write)]),
            )),
            (Some(origin), None) | (None, Some(origin)) => Ok(origin),
            (None, None) => anyhow::bail!(
                "no origin: give --upstream-reflector HOST, --origin-endpoint URL, or --conf with a config.json naming an S3 bucket"
            ),
        }
    }

    fn upstream(&self, address: &str) -> Value {
        let protocol = self.upstream_protocol.unwrap_or(UpstreamProtocol::Http);
        let (kind, default_port) = match protocol {
            UpstreamProtocol::Tcp => ("peer", 5567),
            UpstreamProtocol::Http3 => ("http3", 5568),
            UpstreamProtocol::Http => ("upstream", 5569),
        };
        let with_port = match address.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => address.to_string(),
            _ => format!("{address}:{default_port}"),
        };
        let (key, value) = match protocol {
            UpstreamProtocol::Http => ("upstream", format!("http://{with_port}")),
            _ => ("address", with_port),
        };
        let mut fields = map(&[("name", "upstream-reflector".into()), (key, value.into())]);
        if protocol == UpstreamProtocol::Http3 {
            // reflector.go's HTTP/3 client accepts its peers' self-signed certificates.
            insert(&mut fields, "insecure_skip_verify", true.into());
        }
        one_key(kind, fields)
    }

    /// reflector.go's doors: HTTP, HTTP/3 and peer always, the upload door unless
    /// `--disable-uploads`; each with `--request-queue-size` concurrent requests.
    fn servers(&self, receiver_port: Option<u16>) -> Value {
        let limit = Value::from(self.request_queue_size.unwrap_or(200));
        let door = |port: Option<u16>, default: u16| {
            map(&[
                ("port", port.unwrap_or(default).into()),
                ("max_concurrent_requests", limit.clone()),
            ])
        };
        let mut servers = map(&[
            ("http", door(self.http_peer_port, 5569)),
            ("http3", door(self.http3_peer_port, 5568)),
            ("peer", door(self.tcp_peer_port, 5567)),
        ]);
        if self.disable_uploads != Some(true) {
            let reflector = map(&[("port", receiver_port.unwrap_or(5566).into())]);
            insert(&mut servers, "reflector", reflector);
        }
        servers
    }
}

/// `caching {cache: disk, origin}` for one `--disk-cache`-style value, noting once what its
/// MANAGER runs as. (PATH was checked as `check-config` checks a `mount_point`, by `to_yaml`,
/// naming the flag.)
fn disk_tier(flag: &str, disk: &DiskCache, origin: Value, notes: &mut Vec<String>) -> Value {
    notes.push(format!(
        "--{flag} manager {}: runs as the disk store's own index and LRU{}",
        disk.manager,
        if disk.manager == "localdb" {
            " (no MySQL)"
        } else {
            ""
        }
    ));
    let cache = one_key(
        "disk",
        map(&[
            ("name", flag.trim_end_matches("-cache").into()),
            ("mount_point", disk.path.display().to_string().into()),
            ("sharding_size", 2.into()),
            ("max_size", disk.bytes.into()),
        ]),
    );
    caching(flag, cache, origin)
}

fn caching(name: &str, cache: Value, origin: Value) -> Value {
    one_key(
        "caching",
        map(&[("name", name.into()), ("cache", cache), ("origin", origin)]),
    )
}

/// reflector.go's `config.json`: its S3 keys become an `s3` store; the others are named as
/// ignored. `None` when it names no bucket.
fn config_json_s3(path: &Path, notes: &mut Vec<String>) -> anyhow::Result<Option<Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--conf {}: cannot read it", path.display()))?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("--conf {}: not a JSON object", path.display()))?;
    let mapped = [
        ("aws_id", "aws_id"),
        ("aws_secret", "aws_secret"),
        ("bucket_region", "region"),
        ("bucket_name", "bucket"),
        ("s3_endpoint", "endpoint"),
    ];
    let mut s3 = map(&[("name", "conf-s3".into())]);
    let mut ignored = Vec::new();
    for (key, value) in &json {
        let text = value.as_str().unwrap_or_default();
        match mapped.iter().find(|(k, _)| k == key) {
            Some((_, yaml_key)) if !text.is_empty() => insert(&mut s3, yaml_key, text.into()),
            Some(_) => {}
            None => ignored.push(key.as_str()),
        }
    }
    if !ignored.is_empty() {
        notes.push(format!(
            "--conf {}: ignored (no meaning here): {}",
            path.display(),
            ignored.join(", ")
        ));
    }
    let has_bucket = s3.as_mapping().is_some_and(|m| m.contains_key("bucket"));
    Ok(has_bucket.then(|| one_key("s3", s3)))
}

fn map(entries: &[(&str, Value)]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::from(*k), v.clone());
    }
    Value::Mapping(m)
}

fn insert(map: &mut Value, key: &str, value: Value) {
    if let Value::Mapping(m) = map {
        m.insert(key.into(), value);
    }
}

fn one_key(key: &str, value: Value) -> Value {
    map(&[(key, value)])
}

/// The YAML `--print-config` prints: the file with every secret (S3 keys) as `***`.
pub fn printable(file: &Value) -> String {
    let mut shown = file.clone();
    redact(&mut shown);
    let yaml = serde_yaml::to_string(&shown).unwrap_or_default();
    format!(
        "# blobcache.yaml equivalent to these flags (secrets printed as ***: fill them in)\n{yaml}"
    )
}

fn redact(value: &mut Value) {
    if let Value::Mapping(m) = value {
        for (k, v) in m.iter_mut() {
            if matches!(k.as_str(), Some("aws_id" | "aws_secret" | "edge_token")) {
                *v = "***".into();
            } else {
                redact(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_as_reflector_go_reads_them() {
        assert_eq!(datasize("2GB"), Ok(2 << 30));
        assert_eq!(datasize("500mb"), Ok(500 << 20));
        assert_eq!(datasize("1024"), Ok(1024));
        assert!(datasize("0GB").unwrap_err().contains("more than 0"));
        assert!(datasize("2 parsecs").unwrap_err().contains("not a size"));
        assert!(datasize("99999999999PB").unwrap_err().contains("too large"));
        let d = DiskCache::parse("2GB:/srv/blobs/:lfuda").unwrap();
        assert_eq!((d.bytes, d.manager.as_str()), (2 << 30, "lfuda"));
        assert!(DiskCache::parse("2GB")
            .unwrap_err()
            .contains("SIZE:PATH:MANAGER"));
        assert!(DiskCache::parse("2GB:rel/path:lru")
            .unwrap_err()
            .contains("absolute"));
        assert!(DiskCache::parse("2GB:/x:fifo")
            .unwrap_err()
            .contains("allowed: localdb"));
    }
}
