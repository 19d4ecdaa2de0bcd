//! The `switchboard` binary: command-line parsing and process edges only; the
//! protocol work lives in the library crates.

mod calls;
mod cluster;
mod cluster_status;
mod config;
mod demux;
mod error;
mod heap;
mod http;
mod metrics;
mod natprobe;
mod plan;
mod serve;
mod service;
mod settings;
mod sfu;
mod signal;
mod sip;
mod tls;
mod turn;
mod web;

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
    /// Print a room token (JWT, HS256) for servers run with --room-token-secret.
    Token {
        /// The --room-token-secret the server verifies with.
        #[arg(long, env = "SWITCHBOARD_ROOM_TOKEN_SECRET")]
        secret: String,
        /// The room it admits to, or `*` for any room.
        #[arg(long)]
        room: String,
        /// Identity of the holder (the `sub` claim, shown to other peers).
        #[arg(long)]
        identity: Option<String>,
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Grants, comma-separated: publish, subscribe, admin. [default: publish,subscribe]
        #[arg(long, value_delimiter = ',')]
        grant: Vec<String>,
    },
    /// Find out how the NAT in front of this machine maps and filters UDP (RFC 5780
    /// against a STUN server) and what that means for calls. Exit 0 when the probe ran,
    /// 1 when the server gave no UDP answer, 2 on bad arguments.
    NatProbe(natprobe::Args),
    /// Look at a cluster of switchboard nodes (`--cluster`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Print the live nodes with their load, and the rooms with the node each lives on.
    /// Exit 1 when the cluster's Redis cannot be reached.
    Status(cluster_status::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // Parsed again below, with the --config file's values under the command line.
        Command::Serve(_) => serve(std::env::args_os().skip(2).collect()),
        Command::NatProbe(a) => natprobe::run(a),
        Command::Cluster {
            command: ClusterCommand::Status(a),
        } => cluster_status::run(a),
        Command::Token {
            secret,
            room,
            identity,
            ttl,
            grant,
        } => token(&secret, room, identity, ttl, grant),
        Command::TurnCredentials { secret, user, ttl } => {
            let now = switchboard_util::unix_now();
            let creds = switchboard_turn::rest::mint(secret.as_bytes(), now + ttl, &user);
            let out = serde_json::json!({
                "username": creds.username,
                "credential": creds.password,
                "ttl": ttl,
            });
            println!("{out}");
            ExitCode::SUCCESS
        }
    }
}

fn token(
    secret: &str,
    room: String,
    identity: Option<String>,
    ttl: u64,
    grant: Vec<String>,
) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("switchboard token: {msg}");
        ExitCode::from(2)
    };
    // The secret may come from the environment as a comma-separated list: the first signs.
    let secret = secret.split(',').next().unwrap_or_default();
    if secret.len() < 16 {
        return fail("--secret must be at least 16 characters, as the server requires".into());
    }
    if room != "*" && !switchboard_signal::protocol::valid_room(&room) {
        return fail(format!(
            "--room `{room}` is not `*` or 1-64 characters of A-Z a-z 0-9 _ - ."
        ));
    }
    if ttl == 0 {
        return fail("--ttl must be at least 1 second".into());
    }
    let grants = if grant.is_empty() {
        None
    } else {
        if let Err(e) = switchboard_signal::Grants::from_names(&grant) {
            return fail(format!("--grant: {e} (use publish, subscribe, admin)"));
        }
        Some(grant)
    };
    let claims = switchboard_signal::Claims {
        room,
        sub: identity,
        exp: switchboard_util::unix_now() + ttl,
        nbf: None,
        grants,
    };
    match switchboard_signal::token::mint(secret.as_bytes(), &claims) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

/// `serve`: `args` are the command line after `serve` (clap has checked them already).
fn serve(args: Vec<std::ffi::OsString>) -> ExitCode {
    let loaded = settings::load(&args).and_then(|s| Ok((plan::build(&s, None)?, s)));
    let (plan, settings) = match loaded {
        Ok(p) => p,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let env_filter = match tracing_subscriber::EnvFilter::try_new(&settings.process.log) {
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
    match serve::run(args, plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
