//! A small LBRY JSON-RPC client: `resolve` (channel URL -> claim id) and `claim_search`
//! (a channel's streams, newest first, page by page).
//!
//! Responses are read by key through `serde_json::Value`, never into strict structs: the SDK
//! and the public API proxies add fields release after release, and a missing optional field
//! (`release_time`, `size`) must not lose the whole page. Transport failures, timeouts and 5xx
//! answers are retried with bounded exponential backoff; a JSON-RPC `error` object is an answer
//! (e.g. "channel not found") and is not retried.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::blob::BlobHash;

/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What an API call can end in.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No usable answer after every retry (connection refused, timeout, HTTP 5xx, garbage).
    #[error("LBRY API unreachable after {attempts} attempts: {last}")]
    Unreachable { attempts: u32, last: String },
    /// The API answered with a JSON-RPC error or a 4xx.
    #[error("LBRY API error for {method}: {message}")]
    Rpc { method: String, message: String },
    /// The answer is JSON but lacks what the call needs.
    #[error("unexpected LBRY API answer for {method}: {message}")]
    Shape { method: String, message: String },
}

impl ApiError {
    /// Whether the API could not be reached at all (the CLI exits non-zero on this).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Unreachable { .. })
    }
}

/// One stream claim as `claim_search` lists it, reduced to what prefetching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClaim {
    pub claim_id: String,
    pub name: String,
    /// `value.source.sd_hash`; `None` when absent or not a valid blob hash.
    pub sd_hash: Option<BlobHash>,
    /// `value.source.size` (declared stream size), when present.
    pub size: Option<u64>,
    /// `value.release_time`, else the claim's `timestamp` (unix seconds).
    pub release_time: Option<i64>,
}

/// One page of `claim_search`.
#[derive(Debug, Clone)]
pub struct ClaimPage {
    pub items: Vec<StreamClaim>,
    /// How many items the server returned (including ones we could not use), for the
    /// short-page test.
    pub returned: usize,
}

/// A JSON-RPC client for one endpoint.
#[derive(Clone)]
pub struct LbryApi {
    client: reqwest::Client,
    url: String,
    retries: u32,
    backoff: Duration,
}

impl LbryApi {
    pub fn new(
        url: &str,
        timeout: Duration,
        retries: u32,
        backoff: Duration,
    ) -> anyhow::Result<LbryApi> {
        use anyhow::Context;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("prism-lite/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the LBRY API HTTP client")?;
        Ok(LbryApi {
            client,
            url: url.to_string(),
            retries,
            backoff,
        })
    }

    /// The endpoint this client talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `resolve` one URL and return its entry (the claim as JSON). An error the API reports for
    /// that URL (e.g. not found) is [`ApiError::Rpc`].
    pub async fn resolve_entry(&self, url: &str) -> Result<Value, ApiError> {
        let result = self.call("resolve", json!({ "urls": [url] })).await?;
        resolve_entry_in(&result, url).cloned()
    }

    /// `resolve` one channel URL to its claim id.
    pub async fn resolve_channel(&self, url: &str) -> Result<String, ApiError> {
        let entry = self.resolve_entry(url).await?;
        channel_claim_id(&entry, url)
    }

    /// The claim with this full claim id, as `claim_search` (`claim_id`, `page_size: 1`) lists
    /// it; `None` when there is none.
    pub async fn claim_by_id(&self, claim_id: &str) -> Result<Option<Value>, ApiError> {
        let params = json!({ "claim_id": claim_id, "page": 1, "page_size": 1, "no_totals": true });
        let result = self.call("claim_search", params).await?;
        let items = result
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::Shape {
                method: "claim_search".into(),
                message: "no items list in the result".into(),
            })?;
        Ok(items.first().cloned())
    }

    /// One page of a channel's streams, newest first.
    pub async fn claim_search(
        &self,
        channel_id: &str,
        page: u32,
        page_size: u32,
        released_after: Option<i64>,
    ) -> Result<ClaimPage, ApiError> {
        let mut params = json!({
            "channel_ids": [channel_id],
            "claim_type": "stream",
            "order_by": ["release_time"],
            "page": page,
            "page_size": page_size,
            "no_totals": true,
        });
        if let (Some(since), Some(map)) = (released_after, params.as_object_mut()) {
            map.insert("release_time".into(), Value::String(format!(">{since}")));
        }
        let result = self.call("claim_search", params).await?;
        claim_page(&result)
    }

    /// One JSON-RPC call with retries; returns `result`.
    async fn call(&self, method: &str, params: Value) -> Result<Value, ApiError> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(method, &body).await {
                Ok(result) => return Ok(result),
                Err(Attempt::Final(err)) => return Err(err),
                Err(Attempt::Retry(last)) => {
                    if attempt > self.retries {
                        return Err(ApiError::Unreachable {
                            attempts: attempt,
                            last,
                        });
                    }
                    let delay = self
                        .backoff
                        .saturating_mul(1u32 << (attempt - 1).min(16))
                        .min(MAX_BACKOFF);
                    tracing::warn!(method, attempt, error = %last, ?delay, "LBRY API call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn call_once(&self, method: &str, body: &Value) -> Result<Value, Attempt> {
        let response = self
            .client
            .post(&self.url)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                // Without reqwest's copy of the URL: it may carry a password.
                let shown = crate::secret::redact_url(&self.url);
                Attempt::Retry(format!("{shown}: {}", e.without_url()))
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Attempt::Retry(format!("reading the answer: {}", e.without_url())))?;
        read_answer(method, status, &text)
    }
}

/// Reads one HTTP answer to a JSON-RPC call (status and body text): its `result`, or whether
/// to try again.
pub fn read_answer(method: &str, status: StatusCode, text: &str) -> Result<Value, Attempt> {
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(Attempt::Retry(format!("HTTP {status}")));
    }
    let parsed: Result<Value, _> = serde_json::from_str(text);
    if !status.is_success() {
        return Err(Attempt::Final(ApiError::Rpc {
            method: method.into(),
            message: format!("HTTP {status}: {}", preview(text)),
        }));
    }
    let value = parsed.map_err(|e| Attempt::Retry(format!("answer is not JSON: {e}")))?;
    if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err(Attempt::Final(ApiError::Rpc {
            method: method.into(),
            message,
        }));
    }
    match value.get("result") {
        Some(result) => Ok(result.clone()),
        None => Err(Attempt::Final(ApiError::Shape {
            method: method.into(),
            message: "neither result nor error in the answer".into(),
        })),
    }
}

/// The entry for `url` in a `resolve` result; an error the API reports for that URL (e.g. not
/// found) is [`ApiError::Rpc`].
pub fn resolve_entry_in<'a>(result: &'a Value, url: &str) -> Result<&'a Value, ApiError> {
    let shape = |message: String| ApiError::Shape {
        method: "resolve".into(),
        message,
    };
    let entry = match result.get(url) {
        Some(e) => e,
        // Some proxies normalise the key (e.g. add `lbry://`); with one URL asked, one
        // entry answered is ours.
        None => match result.as_object() {
            Some(map) if map.len() == 1 => map.values().next().unwrap_or(&Value::Null),
            _ => return Err(shape(format!("no entry for {url:?} in the result"))),
        },
    };
    if let Some(err) = entry.get("error") {
        let message = err
            .get("text")
            .or_else(|| err.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err(ApiError::Rpc {
            method: "resolve".into(),
            message: format!("{url}: {message}"),
        });
    }
    Ok(entry)
}

/// The claim id of a resolved channel entry.
pub fn channel_claim_id(entry: &Value, url: &str) -> Result<String, ApiError> {
    entry
        .get("claim_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .ok_or_else(|| ApiError::Shape {
            method: "resolve".into(),
            message: format!("{url}: no claim_id in the resolved entry"),
        })
}

/// One page of `claim_search` from its `result`.
pub fn claim_page(result: &Value) -> Result<ClaimPage, ApiError> {
    let items = result
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::Shape {
            method: "claim_search".into(),
            message: "no items list in the result".into(),
        })?;
    Ok(ClaimPage {
        returned: items.len(),
        items: items.iter().filter_map(parse_claim).collect(),
    })
}

/// How one call went wrong: worth another attempt (transport, 5xx, 429, not JSON), or final.
#[derive(Debug)]
pub enum Attempt {
    Retry(String),
    Final(ApiError),
}

fn preview(text: &str) -> String {
    text.chars().take(200).collect()
}

/// A number that real servers send either as a JSON number or as a decimal string.
fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads one `claim_search` item by key; `None` for things that are not claims at all.
pub fn parse_claim(item: &Value) -> Option<StreamClaim> {
    let claim_id = item.get("claim_id")?.as_str()?.to_string();
    let value = item.get("value");
    let source = value.and_then(|v| v.get("source"));
    let sd_hash = source
        .and_then(|s| s.get("sd_hash"))
        .and_then(Value::as_str)
        .and_then(|h| BlobHash::parse(h).ok());
    let size = source
        .and_then(|s| s.get("size"))
        .and_then(number)
        .and_then(|n| u64::try_from(n).ok());
    let release_time = value
        .and_then(|v| v.get("release_time"))
        .and_then(number)
        .or_else(|| item.get("timestamp").and_then(number));
    Some(StreamClaim {
        claim_id,
        name: item
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        sd_hash,
        size,
        release_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_claim_search_item_leniently() {
        let item = json!({
            "claim_id": "ad25e05aa7dc5e9994869040c6103f9a8728db46",
            "name": "astream",
            "timestamp": 1655141671,
            "extra": {"new": "field"},
            "value": {"source": {
                "sd_hash": "9ddea316b511d9f720b1f67f5958cac381fdac5d1d3beabc754b9a1220a891024e983241e2fc7549f0f89ea0636c6c83",
                "size": "11"}, "stream_type": "binary"}
        });
        let c = parse_claim(&item).unwrap();
        assert_eq!(c.size, Some(11));
        assert_eq!(c.release_time, Some(1655141671));
        assert!(c.sd_hash.is_some());
        let with_release = json!({"claim_id": "ab", "timestamp": 5,
            "value": {"release_time": "7", "source": {"sd_hash": "nothex"}}});
        let c = parse_claim(&with_release).unwrap();
        assert_eq!(c.release_time, Some(7));
        assert_eq!(c.sd_hash, None);
        assert!(parse_claim(&json!({"name": "no id"})).is_none());
    }
}
