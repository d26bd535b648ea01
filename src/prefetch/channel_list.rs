//! Reflector Lite's channel list file (`prefetch.channel_list_file`): one channel per line.
//!
//! It is read again at the start of every run, so an operator can edit it without a restart; a
//! bad line there is reported and skipped instead of stopping the whole run.

use std::fmt;
use std::path::Path;

use crate::config::prefetch::{normalize_channel, ChannelSpec, Day};

/// A problem on one line of the channel list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListLineError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ListLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses Reflector Lite's channel list: one channel per line, an optional `,YYYY-MM-DD`
/// (skip content released before that day), blank lines and `#` comments.
///
/// A `#` starts a comment only at the start of a line or after whitespace, because `#` is also
/// the claim-id separator of `lbry://@name#id` URLs. Bad lines are returned, not fatal: the
/// file is edited by hand while the cache runs, and one typo must not stop every channel.
pub fn parse_channel_list(text: &str) -> (Vec<ChannelSpec>, Vec<ListLineError>) {
    let mut channels = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let (channel, since) = match line.split_once(',') {
            Some((c, d)) => (c.trim(), Some(d.trim())),
            None => (line, None),
        };
        let channel = match normalize_channel(channel) {
            Ok(c) => c,
            Err(message) => {
                errors.push(ListLineError {
                    line: i + 1,
                    message,
                });
                continue;
            }
        };
        let since = match since.map(str::parse::<Day>).transpose() {
            Ok(s) => s,
            Err(message) => {
                errors.push(ListLineError {
                    line: i + 1,
                    message,
                });
                continue;
            }
        };
        channels.push(ChannelSpec {
            since,
            ..ChannelSpec::plain(channel)
        });
    }
    (channels, errors)
}

fn strip_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') {
        return "";
    }
    let mut prev_space = false;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return &line[..i];
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// Reads and parses the channel list file (relative to `base_dir` when relative).
pub fn read_channel_list(
    base_dir: &Path,
    path: &Path,
) -> std::io::Result<(Vec<ChannelSpec>, Vec<ListLineError>)> {
    let full = base_dir.join(path);
    let text = std::fs::read_to_string(full)?;
    Ok(parse_channel_list(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_list_file_format() {
        let (channels, errors) = parse_channel_list(
            "# my channels\n@kauffj:f\n\nlbry://@b#12 # trailing comment\n@c:3,2023-01-31\n\
             https://odysee.com/@d:4\nbad line\n@e:5,31-01-2023\n",
        );
        let names: Vec<_> = channels.iter().map(|c| c.channel.as_str()).collect();
        assert_eq!(names, ["@kauffj:f", "lbry://@b#12", "@c:3", "@d:4"]);
        assert_eq!(
            channels[2].since.map(|d| d.to_string()).as_deref(),
            Some("2023-01-31")
        );
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 7);
        assert_eq!(errors[1].line, 8);
    }
}
