//! Secrets in the configuration, and how they are kept inside the process.
//!
//! prism-lite faces anonymous clients, so a secret must never reach a response, a metric or a
//! log line. What counts as a secret: every `edge_token`, the S3 keys, the password in a URL's
//! userinfo, and the query string of an `http` store's endpoint (signed CDN URLs carry their
//! signature there).
//!
//! Two types carry them, so that leaking one takes a deliberate call rather than a `{:?}`:
//!
//! - [`SecretString`] (the `secrecy` crate) for whole values (tokens, keys). It has no
//!   `Display`, its `Debug` prints `[REDACTED]`, it is zeroed on drop, and the one way to read it
//!   is [`ExposeSecret::expose_secret`], at the few places that really send it. We use the crate
//!   rather than a home-made newtype because that is exactly what it is for, and it is small and
//!   widely used (it is the wrapper the RustCrypto and tokio ecosystems share).
//! - [`SensitiveUrl`] for URLs that are mostly not secret (an operator wants to see which host
//!   a store talks to) but may contain secret parts. Its `Display` and `Debug` print the URL
//!   with the userinfo password and the query replaced by [`REDACTED`]; [`SensitiveUrl::expose`]
//!   gives the real one to the code that builds requests. `secrecy` cannot redact part of a
//!   value, so this one is ours.

use std::fmt;

use serde::Deserialize;

pub use secrecy::{ExposeSecret, SecretString};

/// What is printed in place of a secret (in `check-config`, the start-up log, `Debug` output).
pub const REDACTED: &str = "***";

/// A configured URL whose userinfo password and query string are secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SensitiveUrl(String);

impl SensitiveUrl {
    /// The URL as configured, secrets included: only for building requests.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SensitiveUrl {
    fn from(url: String) -> SensitiveUrl {
        SensitiveUrl(url)
    }
}

impl From<&str> for SensitiveUrl {
    fn from(url: &str) -> SensitiveUrl {
        SensitiveUrl(url.to_owned())
    }
}

impl fmt::Display for SensitiveUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for SensitiveUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

/// `url` with the userinfo password and the query (and fragment) replaced by [`REDACTED`].
///
/// Works on the text, not on a parsed URL, so that it also redacts what does not parse (a bare
/// `user:pass@host:port`, a typo) instead of printing it whole in the error about it.
pub fn redact_url(url: &str) -> String {
    let (base, has_query) = match url.find(['?', '#']) {
        Some(i) => (&url[..i], true),
        None => (url, false),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let authority = &base[authority_start..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&base[..authority_start]);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(&base[authority_end..]);
    if has_query {
        out.push('?');
        out.push_str(REDACTED);
    }
    out
}

/// `***` when a secret is configured, `none` when not: how `check-config` shows one.
pub fn shown(secret: Option<&SecretString>) -> &'static str {
    match secret {
        Some(_) => REDACTED,
        None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_queries_are_redacted() {
        for (url, want) in [
            ("https://cdn.example/b/", "https://cdn.example/b/"),
            (
                "https://cdn.example/b/?sig=SECRET&exp=1",
                "https://cdn.example/b/?***",
            ),
            (
                "https://user:SECRET@cdn.example:8443/b",
                "https://user:***@cdn.example:8443/b",
            ),
            ("https://user@cdn.example/b", "https://user@cdn.example/b"),
            ("user:SECRET@host:5569", "user:***@host:5569"),
            ("http://h/p#SECRET", "http://h/p?***"),
            ("http://u:p@ss@h/x?y", "http://u:***@h/x?***"),
            ("host:5569", "host:5569"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(!redact_url(url).contains("SECRET"));
        }
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let url = SensitiveUrl::from("https://u:SECRET@h/b?sig=SECRET");
        assert!(!format!("{url} {url:?}").contains("SECRET"));
        assert_eq!(url.expose(), "https://u:SECRET@h/b?sig=SECRET");
        let token = SecretString::from("SECRET");
        assert!(!format!("{token:?}").contains("SECRET"));
        assert_eq!(shown(Some(&token)), "***");
        assert_eq!(shown(None), "none");
    }
}
