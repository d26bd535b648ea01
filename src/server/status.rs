//! The status page on the metrics port, for a person with one box and no Grafana:
//! `GET /` (server-rendered HTML, no external assets, readable on a phone, a small inline SVG
//! chart) and `GET /status.json` (the same data).
//!
//! Everything shown is read from the process's own metrics registry (the tiers' sizes and
//! hit counts, the bytes and blobs served) plus the DHT, tracker and pin handles, so the page
//! adds no counting of its own to the request path. The 24-hour history is a sample of the
//! served totals every [`SAMPLE_EVERY`], at most [`HISTORY`] points (bounded memory).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus::proto::{MetricFamily, MetricType};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the served totals are sampled for the chart.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(300);
/// Most served streams listed.
const TOP_SHOWN: usize = 20;
/// Samples kept: 24 hours' worth.
pub const HISTORY: usize = 24 * 3600 / 300;

/// Served bytes counters, one per door (reflector.go's names; exposed as `untyped`, counters
/// inside the registry).
const OUT_BYTES: [&str; 3] = [
    "reflector_http_out_bytes",
    "reflector_tcp_out_bytes",
    "reflector_udp_out_bytes",
];

/// What the page shows beside the metrics; filled in as start-up goes.
#[derive(Default)]
pub struct Sources {
    pub dht: Arc<OnceLock<crate::dht::Dht>>,
    pub trackers: Arc<OnceLock<crate::tracker::Trackers>>,
    pub pins: Arc<OnceLock<Arc<crate::store::pins::Pins>>>,
    /// The channel prefetcher's runs, when `prefetch:` is configured.
    pub prefetch: Option<crate::prefetch::report::StatusHandle>,
    /// The reachability self-check (it also holds the NAT mapping state).
    pub reachability: Arc<OnceLock<Arc<crate::reachability::SelfCheck>>>,
}

/// One sample: unix seconds, bytes served, blobs served (totals since start).
type Sample = (u64, f64, f64);

pub struct StatusPage {
    metrics: Arc<Metrics>,
    sources: Sources,
    history: Mutex<VecDeque<Sample>>,
}

impl StatusPage {
    pub fn new(metrics: Arc<Metrics>, sources: Sources) -> StatusPage {
        StatusPage {
            metrics,
            sources,
            history: Mutex::new(VecDeque::with_capacity(HISTORY + 1)),
        }
    }

    /// Samples the served totals every [`SAMPLE_EVERY`] until `shutdown`.
    pub async fn sample_forever(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample(),
                _ = shutdown.cancelled() => break,
            }
        }
    }

    fn sample(&self) {
        let point = self.current();
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(point);
    }

    fn current(&self) -> Sample {
        let families = self.metrics.registry.gather();
        let bytes = OUT_BYTES.iter().map(|n| sum(&families, n)).sum();
        (
            unix_now(),
            bytes,
            sum(&families, "reflector_blob_download_total"),
        )
    }

    /// The samples, oldest first, ending with the current totals.
    fn series(&self) -> Vec<Sample> {
        let mut points: Vec<Sample> = self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        points.push(self.current());
        points
    }

    /// `GET /status.json`.
    pub fn json(&self) -> Value {
        let families = self.metrics.registry.gather();
        let series = self.series();
        let (first, last) = (series[0], series[series.len() - 1]);
        json!({
            "tiers": tiers(&families),
            "served": {
                "bytes_total": last.1,
                "blobs_total": last.2,
                "bytes_24h": last.1 - first.1,
                "blobs_24h": last.2 - first.2,
                "history": series.iter().map(|(t, b, n)| json!([t, b, n])).collect::<Vec<_>>(),
            },
            "streams": self
                .metrics
                .family::<crate::store::served::ServedStreams>()
                .top()
                .iter()
                .take(TOP_SHOWN)
                .map(|(sd, bytes)| json!({"sd_hash": sd.to_string(), "served_bytes": bytes}))
                .collect::<Vec<_>>(),
            "channels": self.channels(),
            "dht": self.sources.dht.get().map(|d| d.status()),
            "trackers": self.sources.trackers.get().map(|t| t.status()),
            "pins": self.sources.pins.get().map(|p| p.to_json()),
            "nat": self
                .sources
                .reachability
                .get()
                .and_then(|c| c.nat.as_ref())
                .map(|nat| nat.status()),
            "reachability": self.sources.reachability.get().map(|check| match check.current() {
                Some(report) => serde_json::to_value(&report).unwrap_or(Value::Null),
                None => json!({"reachable": "unknown", "because": "checking (reload in a moment)"}),
            }),
        })
    }

    /// Per channel (every configured one, and any that served bytes): streams warm after the
    /// last prefetch run, the bytes that run found held, when it finished; streams and bytes
    /// pinned; bytes served.
    fn channels(&self) -> Vec<Value> {
        let mut rows: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
        let served = self
            .metrics
            .family::<crate::store::served::ServedStreams>()
            .channels();
        for (channel, bytes) in served {
            rows.entry(channel)
                .or_default()
                .insert("served_bytes".into(), json!(bytes));
        }
        if let Some(run) = self
            .sources
            .prefetch
            .as_ref()
            .and_then(|p| p.snapshot().last_run)
        {
            for c in &run.channels {
                let row = rows.entry(c.channel.clone()).or_default();
                row.insert("streams_selected".into(), json!(c.streams_selected));
                row.insert("streams_complete".into(), json!(c.streams_complete));
                // What the run found in the cache or put there: the channel's bytes held then.
                row.insert("held_bytes".into(), json!(c.bytes_fetched + c.bytes_cached));
                row.insert(
                    "last_prefetch_unix".into(),
                    json!(run.finished_at.map(|t| t as u64)),
                );
            }
        }
        if let Some(pins) = self.sources.pins.get() {
            let pins = pins.to_json();
            for stream in pins["streams"].as_array().into_iter().flatten() {
                let Some(channel) = stream["source"]
                    .as_str()
                    .and_then(|s| s.strip_prefix("channel "))
                else {
                    continue;
                };
                let row = rows.entry(channel.to_string()).or_default();
                let add = |row: &mut serde_json::Map<String, Value>, key: &str, n: u64| {
                    let before = row.get(key).and_then(Value::as_u64).unwrap_or(0);
                    row.insert(key.into(), json!(before + n));
                };
                add(row, "pinned_streams", 1);
                add(row, "pinned_bytes", stream["bytes"].as_u64().unwrap_or(0));
            }
        }
        rows.into_iter()
            .map(|(channel, mut row)| {
                row.insert("channel".into(), json!(channel));
                Value::Object(row)
            })
            .collect()
    }

    /// `GET /`.
    pub fn html(&self) -> String {
        let status = self.json();
        let mut page = String::with_capacity(8192);
        page.push_str(HEAD);
        let served = &status["served"];
        let _ = write!(
            page,
            "<h2>Served</h2><p id=served>{} in {} blobs since start; {} in {} blobs in the last 24 h</p>",
            bytes(served["bytes_total"].as_f64().unwrap_or(0.0)),
            count(&served["blobs_total"]),
            bytes(served["bytes_24h"].as_f64().unwrap_or(0.0)),
            count(&served["blobs_24h"]),
        );
        page.push_str(&chart(&self.series()));
        page.push_str("<h2>Cache tiers</h2><table id=tiers><tr><th>tier<th>size<th>fill<th>blobs<th>hit ratio</tr>");
        for (name, tier) in status["tiers"].as_object().into_iter().flatten() {
            let fill = tier["fill"]
                .as_f64()
                .map_or("–".into(), |f| format!("{:.0}%", f * 100.0));
            let hit = tier["hit_ratio"]
                .as_f64()
                .map_or("–".into(), |h| format!("{:.0}%", h * 100.0));
            let _ = write!(
                page,
                "<tr><td>{}<td>{}<td>{fill}<td>{}<td>{hit}</tr>",
                escape(name),
                bytes(tier["size_bytes"].as_f64().unwrap_or(0.0)),
                count(&tier["blobs"]),
            );
        }
        page.push_str("</table>");
        streams(&mut page, &status["streams"]);
        channels(&mut page, &status["channels"]);
        section(
            &mut page,
            "DHT",
            &status["dht"],
            &["routing_table_size", "announced_blobs", "tcp_port"],
        );
        trackers(&mut page, &status["trackers"]);
        reachability(&mut page, &status["reachability"], &status["nat"]);
        pins(&mut page, &status["pins"]);
        page.push_str("<p><a href=/status.json>status.json</a> · <a href=/metrics>metrics</a></p></body></html>\n");
        page
    }
}

const HEAD: &str = "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content='width=device-width,initial-scale=1'><title>prism-lite status</title>\
<style>body{font:15px system-ui,sans-serif;margin:1em auto;max-width:46em;padding:0 1em}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.2em .4em;border-bottom:1px solid #ddd}\
th{font-size:.85em}p,td{overflow-wrap:anywhere}\
svg{width:100%;height:auto;background:#f6f6f6}</style></head><body><h1>prism-lite</h1>";

/// Bytes served per sample interval, as a polyline (no script, no external assets).
fn chart(series: &[Sample]) -> String {
    let deltas: Vec<f64> = series
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).max(0.0))
        .collect();
    let max = deltas.iter().copied().fold(0.0f64, f64::max).max(1.0);
    let step = 600.0 / (HISTORY as f64);
    let points: String = deltas
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{:.1},{:.1} ", i as f64 * step, 100.0 - d / max * 95.0))
        .collect();
    format!(
        "<svg id=chart viewBox='0 0 600 100' role=img aria-label='bytes served per 5 minutes, last 24 h'>\
         <polyline fill=none stroke='#36c' stroke-width=2 points='{points}'/></svg>\
         <p><small>bytes served per 5 minutes over the last 24 h (peak {})</small></p>",
        bytes(max)
    )
}

fn section(page: &mut String, title: &str, value: &Value, keys: &[&str]) {
    let _ = write!(page, "<h2>{title}</h2>");
    if value.is_null() {
        page.push_str("<p>off</p>");
        return;
    }
    page.push_str("<table>");
    for key in keys {
        let _ = write!(
            page,
            "<tr><td>{key}<td>{}</tr>",
            escape(&value[key].to_string())
        );
    }
    page.push_str("</table>");
}

fn trackers(page: &mut String, value: &Value) {
    page.push_str("<h2>Trackers</h2>");
    let Some(list) = value["trackers"].as_array() else {
        page.push_str("<p>off</p>");
        return;
    };
    let _ = write!(
        page,
        "<p>{} streams announced</p><table><tr><th>tracker<th>last result<th>last announce</tr>",
        value["announced_streams"]
    );
    for t in list {
        let _ = write!(
            page,
            "<tr><td>{}<td>{}<td>{}</tr>",
            escape(t["server"].as_str().unwrap_or("")),
            escape(t["last_result"].as_str().unwrap_or("–")),
            t["last_announce_unix"].as_u64().map_or("–".into(), ago),
        );
    }
    page.push_str("</table>");
}

/// "Reachable from outside: yes/no/unknown, because ..." and the router's port mappings.
fn reachability(page: &mut String, value: &Value, nat: &Value) {
    page.push_str("<h2>Reachable from outside</h2>");
    if value.is_null() {
        page.push_str(
            "<p id=reachable>not checked: LBRY clients are told about this cache only when it \
             has a peer door and announces it in the DHT or to trackers</p>",
        );
    } else {
        let _ = write!(
            page,
            "<p id=reachable><b>{}</b>, because {}</p>",
            escape(value["reachable"].as_str().unwrap_or("unknown")),
            escape(value["because"].as_str().unwrap_or("")),
        );
    }
    if nat.is_null() {
        page.push_str("<p id=nat>Port mapping (nat:) is off.</p>");
        return;
    }
    let _ = write!(
        page,
        "<p id=nat>Router {} ({}), external address {}{}</p><table><tr><th>port<th>mapped to<th>lease</tr>",
        escape(&nat["gateway"].as_str().map_or("–".into(), str::to_string)),
        escape(nat["method"].as_str().unwrap_or("nothing mapped")),
        escape(nat["external_ip"].as_str().unwrap_or("–")),
        nat["error"].as_str().map_or(String::new(), |e| format!("; {}", escape(e))),
    );
    for m in nat["mappings"].as_array().into_iter().flatten() {
        let _ = write!(
            page,
            "<tr><td>{} {} ({})<td>{}<td>{} s</tr>",
            escape(m["request"]["transport"].as_str().unwrap_or("")),
            m["request"]["port"],
            escape(m["request"]["purpose"].as_str().unwrap_or("")),
            m["external_port"],
            m["lease_seconds"],
        );
    }
    page.push_str("</table>");
}

fn streams(page: &mut String, value: &Value) {
    page.push_str("<h2>Most served streams</h2><table id=streams><tr><th>stream<th>served</tr>");
    for s in value.as_array().into_iter().flatten() {
        let sd = s["sd_hash"].as_str().unwrap_or("");
        let _ = write!(
            page,
            "<tr><td title='{0}'>{1}…<td>{2}</tr>",
            escape(sd),
            escape(sd.get(..12).unwrap_or(sd)),
            bytes(s["served_bytes"].as_f64().unwrap_or(0.0)),
        );
    }
    page.push_str("</table>");
}

fn channels(page: &mut String, value: &Value) {
    page.push_str(
        "<h2>Channels</h2><table id=channels><tr><th>channel<th>warm<th>pinned\
         <th>prefetched<th>served</tr>",
    );
    for c in value.as_array().into_iter().flatten() {
        let warm = match (
            c["streams_complete"].as_u64(),
            c["streams_selected"].as_u64(),
        ) {
            (Some(done), Some(chosen)) => format!(
                "{done} of {chosen}, {}",
                bytes(c["held_bytes"].as_f64().unwrap_or(0.0))
            ),
            _ => "–".into(),
        };
        let pinned = match c["pinned_streams"].as_u64() {
            Some(n) => format!("{n} ({})", bytes(c["pinned_bytes"].as_f64().unwrap_or(0.0))),
            None => "–".into(),
        };
        let _ = write!(
            page,
            "<tr><td>{}<td>{warm}<td>{pinned}<td>{}<td>{}</tr>",
            escape(c["channel"].as_str().unwrap_or("")),
            c["last_prefetch_unix"].as_u64().map_or("–".into(), ago),
            bytes(c["served_bytes"].as_f64().unwrap_or(0.0)),
        );
    }
    page.push_str("</table>");
}

fn pins(page: &mut String, value: &Value) {
    page.push_str("<h2>Pinned</h2>");
    if value.is_null() {
        page.push_str("<p>no disk tier</p>");
        return;
    }
    let _ = write!(
        page,
        "<p>{} of {} (pin_max)</p><table><tr><th>stream<th>bytes<th>source</tr>",
        bytes(value["pinned_bytes"].as_f64().unwrap_or(0.0)),
        bytes(value["pin_max"].as_f64().unwrap_or(0.0)),
    );
    for s in value["streams"].as_array().into_iter().flatten().take(100) {
        let sd = s["sd_hash"].as_str().unwrap_or("");
        let _ = write!(
            page,
            "<tr><td title='{0}'>{1}…<td>{2}<td>{3}</tr>",
            escape(sd),
            escape(sd.get(..12).unwrap_or(sd)),
            bytes(s["bytes"].as_f64().unwrap_or(0.0)),
            escape(s["source"].as_str().unwrap_or("")),
        );
    }
    page.push_str("</table>");
}

/// Each local store (by `component`: cache tiers, and a local origin): size, capacity, fill, blobs, and its hit ratio as a
/// caching layer's `cache_type`.
fn tiers(families: &[MetricFamily]) -> Value {
    let size = by_label(families, "prism_store_size_bytes", "component");
    let capacity = by_label(families, "prism_store_capacity_bytes", "component");
    let blobs = by_label(families, "prism_store_blobs", "component");
    let hits = by_label(families, "reflector_cache_hit_total", "cache_type");
    let misses = by_label(families, "reflector_cache_miss_total", "cache_type");
    let tiers: serde_json::Map<String, Value> = size
        .iter()
        .map(|(name, size)| {
            let cap = capacity.get(name).copied().filter(|c| *c > 0.0);
            let (h, m) = (hits.get(name).copied(), misses.get(name).copied());
            let ratio = match (h, m) {
                (Some(h), Some(m)) if h + m > 0.0 => Some(h / (h + m)),
                _ => None,
            };
            let tier = json!({
                "size_bytes": size,
                "capacity_bytes": cap,
                "fill": cap.map(|c| size / c),
                "blobs": blobs.get(name),
                "hit_ratio": ratio,
            });
            (name.clone(), tier)
        })
        .collect();
    Value::Object(tiers)
}

fn value(family: &MetricFamily, m: &prometheus::proto::Metric) -> f64 {
    match family.get_field_type() {
        MetricType::COUNTER => m.get_counter().get_value(),
        MetricType::GAUGE => m.get_gauge().get_value(),
        _ => 0.0,
    }
}

fn sum(families: &[MetricFamily], name: &str) -> f64 {
    families
        .iter()
        .filter(|f| f.get_name() == name)
        .flat_map(|f| f.get_metric().iter().map(move |m| value(f, m)))
        .sum()
}

fn by_label(families: &[MetricFamily], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in families.iter().filter(|f| f.get_name() == name) {
        for m in f.get_metric() {
            if let Some(l) = m.get_label().iter().find(|l| l.get_name() == label) {
                *out.entry(l.get_value().to_string()).or_insert(0.0) += value(f, m);
            }
        }
    }
    out
}

fn count(n: &Value) -> u64 {
    n.as_f64().unwrap_or(0.0).max(0.0) as u64
}

fn bytes(n: f64) -> String {
    bytesize::ByteSize(n.max(0.0) as u64).to_string()
}

fn ago(unix: u64) -> String {
    format!("{} s ago", unix_now().saturating_sub(unix))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// HTML-escapes text (names come from the configuration; still, never trust a string).
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}
