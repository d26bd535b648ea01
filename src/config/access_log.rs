//! `access_log:`: where the per-request log goes and in which format.

use std::path::PathBuf;

use serde::Deserialize;

/// `access_log: {path: FILE or "-", format: combined | json}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// The file lines are appended to (created if missing, reopened on SIGHUP so logrotate can
    /// move it away); `-` writes to standard output.
    pub path: PathBuf,
    #[serde(default)]
    pub format: AccessLogFormat,
}

impl AccessLogConfig {
    /// Whether the log goes to standard output (`path: "-"`).
    pub fn is_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }
}

/// How a line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// nginx's `combined`: `client - - [time] "request" status bytes "referer" "user-agent"`.
    #[default]
    Combined,
    /// One JSON object a line: the same fields plus door, duration and cache result.
    Json,
}
