//! The one error type of configuration: which option is wrong and why, so the binary can
//! say so and exit with code 2 (never a panic). A leaf module: every section's
//! validation, the file loader and TLS use it without depending on each other.

/// A bad option value (from the command line, the environment or the `--config` file).
#[derive(Debug, thiserror::Error)]
#[error("invalid --{option}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    /// The option's long name, without `--`.
    pub option: &'static str,
    pub message: String,
    /// The line of the `--config` file, when the value came from there.
    pub line: Option<usize>,
}

impl ConfigError {
    pub fn new(option: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            option,
            message: message.into(),
            line: None,
        }
    }

    pub fn with_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}
