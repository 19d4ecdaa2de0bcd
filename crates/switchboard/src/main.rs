//! The `switchboard` binary: command-line parsing and process edges only; the
//! protocol work lives in the library crates.

mod metrics;
mod plan;
mod serve;
mod settings;
mod tls;
mod web;

use base64::Engine;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Self-hosted WebRTC communication server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (STUN/TURN on 127.0.0.1:3478 UDP+TCP by default).
    Serve(Box<settings::Settings>),
    /// Print TURN REST API credentials (coturn format) signed with a shared secret.
    TurnCredentials {
        /// The --static-auth-secret the server verifies with.
        #[arg(long, env = "SWITCHBOARD_STATIC_AUTH_SECRET")]
        secret: String,
        /// Identity to embed in the username.
        #[arg(long, default_value = "user")]
        user: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86400)]
        ttl: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(s) => serve(*s),
        Command::TurnCredentials { secret, user, ttl } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let username = format!("{}:{user}", now + ttl);
            let mac = switchboard_stun::rest_api_password(secret.as_bytes(), username.as_bytes());
            let credential = base64::engine::general_purpose::STANDARD.encode(mac);
            println!(
                "{{\"username\":\"{username}\",\"credential\":\"{credential}\",\"ttl\":{ttl}}}"
            );
            ExitCode::SUCCESS
        }
    }
}

fn serve(cli: settings::Settings) -> ExitCode {
    let mut merged = cli.clone();
    let plan = merged.load_file().and_then(|()| plan::build(&merged));
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = merged.log.clone().unwrap_or_else(|| "info".into());
    let env_filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("switchboard: invalid --log: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_target(false)
        .init();
    match serve::run(cli, plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
