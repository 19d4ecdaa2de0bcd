//! `switchboard serve` settings: the sections of `config/`, read from the command line,
//! the environment (`SWITCHBOARD_*`) and a TOML file (`--config`), in that order of
//! precedence.
//!
//! Each option is declared once, in its section, as a clap argument with its default. The
//! file is layered under the command line and the environment by clap itself: every key
//! becomes that argument's default value for this parse, so precedence, list handling and
//! value parsing are exactly those of the command line, and no second list of options
//! exists. File keys are the long option names, at the top level (as always) or inside
//! the table of the option's section (`[turn]`, `[tls]`, `[http]`, `[signal]`,
//! `[sfu]`, `[sip]`, `[calls]`, `[federation]`, `[cluster]`, `[metrics]`, `[process]`).

use crate::config::{
    calls::CallsSettings, cluster::ClusterSettings, federation::FederationSettings,
    http::HttpSettings, metrics::MetricsSettings, process::ProcessSettings, sfu::SfuSettings,
    signal::SignalSettings, sip::SipSettings, tls::TlsSettings, turn::TurnSettings,
};
use crate::error::ConfigError;
use clap::{Args, Command, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// TOML configuration file; command-line options and SWITCHBOARD_* variables override it.
    #[arg(long, short = 'c', value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub turn: TurnSettings,
    #[command(flatten)]
    pub tls: TlsSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub signal: SignalSettings,
    #[command(flatten)]
    pub sfu: SfuSettings,
    #[command(flatten)]
    pub sip: SipSettings,
    #[command(flatten)]
    pub calls: CallsSettings,
    #[command(flatten)]
    pub federation: FederationSettings,
    #[command(flatten)]
    pub cluster: ClusterSettings,
    #[command(flatten)]
    pub metrics: MetricsSettings,
    #[command(flatten)]
    pub process: ProcessSettings,
}

/// The options of `serve` as a command of its own (`args` are what follows `serve`).
fn command() -> Command {
    Settings::augment_args(Command::new("serve").no_binary_name(true))
}

/// Parse `args` (the command line after `serve`; the environment is read too), then,
/// when `--config` names a file, again with the file's values under them.
pub fn load(args: &[OsString]) -> Result<Settings, ConfigError> {
    let first = parse(command(), args)?;
    let Some(path) = first.config.clone() else {
        return Ok(first);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new("config", format!("cannot read {}: {e}", path.display())))?;
    let defaults = file_values(&path, &text)?;
    let mut cmd = command();
    for (id, values) in defaults {
        cmd = cmd.mut_arg(id, |a| a.default_values(values));
    }
    parse(cmd, args)
}

fn parse(cmd: Command, args: &[OsString]) -> Result<Settings, ConfigError> {
    let clap_error = |e: clap::Error| ConfigError::new("config", first_line(&e));
    let matches = cmd.try_get_matches_from(args).map_err(clap_error)?;
    Settings::from_arg_matches(&matches).map_err(clap_error)
}

/// clap's message without its `error: ` prefix and usage hints.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The file's values by argument id, each checked by the argument's own parser.
fn file_values(path: &Path, text: &str) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let file = path.display().to_string();
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigError::new("config", format!("{file}: {}", e.message().trim()))
            .with_line(e.span().map(|s| line_at(text, s.start)))
    })?;
    let cmd = command();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut take = |section: Option<&str>, key: &str, value: &toml::Value| {
        let line = line_of_key(text, section, key);
        let err =
            |msg: String| ConfigError::new("config", format!("{file}: {msg}")).with_line(line);
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key) && key != "config")
            .ok_or_else(|| err(format!("unknown option `{key}`")))?;
        let id = arg.get_id().as_str().to_string();
        if let Some(section) = section {
            let group = cmd.get_groups().find(|g| g.get_id().as_str() == section);
            if !group.is_some_and(|g| g.get_args().any(|a| a.as_str() == id)) {
                return Err(err(format!("`{key}` is not an option of [{section}]")));
            }
        }
        if out.contains_key(&id) {
            return Err(err(format!("`{key}` is given twice")));
        }
        let values = strings(value).ok_or_else(|| {
            err(format!(
                "`{key}` takes a string, number, boolean or a list of them"
            ))
        })?;
        let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
            || matches!(arg.get_action(), clap::ArgAction::Append);
        if values.len() != 1 && !many {
            return Err(err(format!("`{key}` takes one value, not a list")));
        }
        // The argument's own parser, alone (no environment, no default), judges the value.
        let alone = arg.clone().env(None).default_value(None).required(false);
        for v in &values {
            Command::new("file")
                .no_binary_name(true)
                .arg(alone.clone())
                .try_get_matches_from([format!("--{key}={v}")])
                .map_err(|e| err(format!("`{key}`: {}", first_line(&e))))?;
        }
        out.insert(id, values);
        Ok(())
    };
    for (key, value) in &table {
        match value {
            toml::Value::Table(t) if cmd.get_groups().any(|g| g.get_id().as_str() == key) => {
                for (k, v) in t {
                    take(Some(key), k, v)?;
                }
            }
            v => take(None, key, v)?,
        }
    }
    Ok(out)
}

/// A TOML value as command-line values; None for tables and nested lists.
fn strings(value: &toml::Value) -> Option<Vec<String>> {
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    };
    match value {
        toml::Value::Array(list) => list.iter().map(one).collect(),
        v => one(v).map(|s| vec![s]),
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key` is set (in `[section]`, or before any table), for messages.
fn line_of_key(text: &str, section: Option<&str>, key: &str) -> Option<usize> {
    let mut current: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_end_matches(']').trim();
            if section.is_none() && name == key {
                return Some(i + 1);
            }
            current = Some(name);
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        if current == section && k.trim().trim_matches('"') == key {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(file: &str, args: &[&str]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("switchboard.toml");
        std::fs::write(&path, file).expect("write");
        let mut argv: Vec<OsString> = vec!["--config".into(), path.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        load(&argv)
    }

    #[test]
    fn file_values_sit_under_the_command_line() {
        let s = load_with(
            "min-port = 50000\nmax-port = 50100\nuser = [\"a:b\", \"c:d\"]\nno-udp = true\n",
            &["--max-port", "60000"],
        )
        .expect("valid");
        assert_eq!(s.turn.min_port, 50000);
        assert_eq!(s.turn.max_port, 60000, "the command line wins");
        assert_eq!(s.turn.user, ["a:b", "c:d"]);
        assert!(s.turn.no_udp);
        assert_eq!(s.turn.listening_port, 3478, "unset keeps the default");
        let s = load_with("user = \"x:y\"\n", &["--user", "cli:pw"]).expect("valid");
        assert_eq!(
            s.turn.user,
            ["cli:pw"],
            "a list on the command line replaces the file's"
        );
    }

    #[test]
    fn sections_hold_their_own_options_only() {
        let s = load_with(
            "log = \"debug\"\n[turn]\nrealm = \"example.org\"\n[signal]\nroom-capacity = 3\n[http]\nhttp-listen = \"off\"\n",
            &[],
        )
        .expect("valid");
        assert_eq!(s.turn.realm, "example.org");
        assert_eq!(s.signal.room_capacity, 3);
        assert_eq!(s.http.http_listen.0, None);
        assert_eq!(s.process.log, "debug");
        let e = load_with("[signal]\nrealm = \"x\"\n", &[]).expect_err("wrong section");
        assert!(e.to_string().contains("not an option of [signal]"), "{e}");
        assert_eq!(e.line, Some(2));
        let e = load_with("realm = \"x\"\n[turn]\nrealm = \"y\"\n", &[]).expect_err("twice");
        assert!(e.to_string().contains("given twice"), "{e}");
    }

    #[test]
    fn the_example_in_config_md_loads() {
        let doc = include_str!("../../../docs/config.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a TOML example in docs/config.md");
        let s = load_with(example, &[]).expect("the documented example is valid");
        assert_eq!(s.turn.realm, "example.org");
        assert!(s.tls.cert.is_some());
        assert_eq!(s.sfu.sfu_candidate, ["203.0.113.5"]);
        assert_eq!(s.sfu.sfu_bind, Some([0, 0, 0, 0].into()));
    }

    #[test]
    fn bad_file_values_name_the_key_and_line() {
        let e = load_with("\nmin-port = 70000\n", &[]).expect_err("out of range");
        let msg = e.to_string();
        assert!(
            msg.contains("min-port") && msg.contains("(line 2)"),
            "{msg}"
        );
        let e = load_with("realm = [\"a\", \"b\"]\n", &[]).expect_err("list");
        assert!(e.to_string().contains("one value"), "{e}");
        let e = load_with("realm = \"x\"\n\n[nosuch]\na = 1\n", &[]).expect_err("no section");
        assert!(
            e.to_string().contains("unknown option `nosuch` (line 3)"),
            "{e}"
        );
        let e = load_with("config = \"x\"\n", &[]).expect_err("config in config");
        assert!(e.to_string().contains("unknown option `config`"), "{e}");
        let e = load_with("metrics-listen = \"nowhere\"\n", &[]).expect_err("addr");
        assert!(e.to_string().contains("IP:PORT"), "{e}");
    }
}
