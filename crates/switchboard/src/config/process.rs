//! `[process]`: the server as a whole: logging, how long a drain may take, handing heap
//! back to the kernel, and the ready file that tells supervisors (and the end-to-end
//! tests) where everything listens.

use crate::error::ConfigError;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
#[group(id = "process")]
pub struct ProcessSettings {
    /// Seconds SIGTERM waits for allocations to end before exiting.
    #[arg(
        long,
        value_name = "SECS",
        env = "SWITCHBOARD_DRAIN_TIMEOUT",
        default_value_t = 30
    )]
    pub drain_timeout: u64,

    /// Seconds between handing freed heap memory back to the kernel (glibc
    /// `malloc_trim`); 0 = never.
    #[arg(
        long,
        value_name = "SECS",
        env = "SWITCHBOARD_HEAP_TRIM",
        default_value_t = 60
    )]
    pub heap_trim: u64,

    /// Log filter (tracing env-filter syntax, e.g. `info`, `debug`).
    #[arg(
        long,
        value_name = "FILTER",
        env = "SWITCHBOARD_LOG",
        default_value = "info"
    )]
    pub log: String,

    /// Once every listener is up, write their addresses (and the TLS certificate's
    /// fingerprint) as JSON to this file, replacing it whole: for supervisors and tests
    /// that start the server on port 0.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_READY_FILE")]
    pub ready_file: Option<PathBuf>,
}

/// The validated `[process]` section.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub drain_timeout: Duration,
    pub heap_trim: Duration,
    pub ready_file: Option<PathBuf>,
}

impl ProcessSettings {
    pub fn validate(&self) -> Result<ProcessConfig, ConfigError> {
        if self
            .ready_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::new("ready-file", "must not be empty"));
        }
        Ok(ProcessConfig {
            drain_timeout: Duration::from_secs(self.drain_timeout),
            heap_trim: Duration::from_secs(self.heap_trim),
            ready_file: self.ready_file.clone(),
        })
    }
}
