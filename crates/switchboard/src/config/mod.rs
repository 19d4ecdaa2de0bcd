//! The sections of `switchboard serve`'s configuration, one file per subsystem: its
//! options (command line, `SWITCHBOARD_*` variable and `--config` file key, all three
//! from one clap declaration, defaults included, which `--help` shows) and `validate()`,
//! which turns them into what the subsystem runs with or a [`ConfigError`] naming the
//! option. Sections do not know each other; what crosses them (the certificate, the
//! HTTP address) is passed in by `plan::build`.
//!
//! [`ConfigError`]: crate::error::ConfigError

pub mod calls;
pub mod cluster;
pub mod federation;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod process;
pub mod sfu;
pub mod signal;
pub mod sip;
pub mod tls;
pub mod turn;
