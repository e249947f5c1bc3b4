//! How a Ferry process logs: the `[log]` section of the server's and the
//! edge's config, and the `--log-level` / `--log-format` flags that
//! override it. The binary installs the subscriber; this holds the choice.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::FerryError;

/// The log level (or a full filter) used when nothing else is given:
/// openraft narrates every election and snapshot at info.
pub const DEFAULT_FILTER: &str = "info,openraft=warn";

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the
    /// event's fields (`message`, `account`, `client_addr`, …) and those
    /// of the spans around it.
    Json,
}

impl FromStr for LogFormat {
    type Err = FerryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(FerryError::invalid(format!(
                "unknown log format {other:?} (known: text, json)"
            ))),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// `[log]` of a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a filter with
    /// per-module levels (`info,ferry_edge=debug`).
    #[serde(default)]
    pub level: Option<String>,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

impl LogConfig {
    /// This config with what the command line gave put over it.
    pub fn overridden(&self, level: Option<&str>, format: Option<LogFormat>) -> Self {
        Self {
            level: level.map(str::to_owned).or_else(|| self.level.clone()),
            format: format.unwrap_or(self.format),
        }
    }
}
