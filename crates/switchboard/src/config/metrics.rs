//! `[metrics]`: where Prometheus scrapes `/metrics`.

use super::listen::Listen;
use clap::Args;

#[derive(Args, Debug, Clone)]
#[group(id = "metrics")]
pub struct MetricsSettings {
    /// Prometheus metrics address (`off` to disable).
    #[arg(
        long,
        value_name = "ADDR",
        env = "SWITCHBOARD_METRICS_LISTEN",
        default_value = "127.0.0.1:9641"
    )]
    pub metrics_listen: Listen,
}
