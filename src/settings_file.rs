//! The settings file (`--config FILE`, `SWITCHBOARD_CONFIG`, or `switchboard.yaml` in the
//! working directory when present): every command-line setting, as YAML.
//!
//! The file's keys are the long flag names with `_` for `-` (`body_limit: 1048576`,
//! `cors_origin: [https://app.example.com]`), so a flag added to the command line is at once a
//! setting of the file, with the same parser, and the two can never disagree. Precedence is
//! flag > environment > file > default: clap resolves flags and the environment, and a value of
//! the file is given to clap only for a setting neither of them set (see
//! [`SettingsFile::arguments_for`]).
//!
//! The whole file is checked before any of it is used, like providers.d: an unknown key, a value
//! of the wrong type, or a value the flag's parser refuses is an error naming the file, the line
//! and the key, and all of them are listed at once. Values of secret settings (those whose
//! environment value clap hides) are never repeated in an error.

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use utoipa::ToSchema;

/// Read from the working directory when neither `--config` nor `SWITCHBOARD_CONFIG` names a file.
pub const DEFAULT_FILE: &str = "switchboard.yaml";

/// The settings that apply on reload; every other one needs a restart.
pub const RELOADABLE: &[&str] = &[
    "cors_origin",
    "cors_methods",
    "cors_headers",
    "cors_expose_headers",
    "cors_credentials",
    "cors_max_age",
    "log_level",
    "otlp_sampling_ratio",
];

/// Arguments of the command line that are not settings: the file cannot name itself, and
/// clap's own.
const NOT_SETTINGS: &[&str] = &["config", "help", "version"];

/// One problem with the settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key at fault, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One setting of the file, checked against the flag of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// As written in the file (`body_limit`).
    key: String,
    /// clap's id of the argument.
    id: String,
    /// `--body-limit`.
    flag: String,
    /// A switch (`--no-watch`): given when the file says `true`.
    switch: bool,
    /// The values, as they would be written after the flag.
    values: Vec<String>,
}

/// A checked settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsFile {
    pub path: PathBuf,
    entries: Vec<Entry>,
}

/// Which file to read: the one named (by `--config` or `SWITCHBOARD_CONFIG`), which must exist,
/// or `switchboard.yaml` in the working directory if there is one.
pub fn locate(named: Option<&Path>) -> Result<Option<PathBuf>, SettingsError> {
    match named {
        Some(path) if path.is_file() => Ok(Some(path.to_path_buf())),
        Some(path) => Err(SettingsError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message: "no such settings file".to_string(),
        }),
        None => {
            let default = PathBuf::from(DEFAULT_FILE);
            Ok(default.is_file().then_some(default))
        }
    }
}

impl SettingsFile {
    /// Reads and checks the file against `command`'s arguments (the gateway's `serve` flags).
    pub fn read(path: &Path, command: &Command) -> Result<SettingsFile, Vec<SettingsError>> {
        let error = |line, column, field: Option<&str>, message: String| SettingsError {
            file: path.to_path_buf(),
            line,
            column,
            field: field.map(str::to_string),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![error(None, None, None, format!("cannot read it: {e}"))])?;
        let value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
            let at = e.location();
            vec![error(
                at.as_ref().map(|l| l.line()),
                at.as_ref().map(|l| l.column()),
                None,
                without_location(&e.to_string()),
            )]
        })?;
        let mapping = match value {
            serde_yaml::Value::Mapping(m) => m,
            // An empty file (or only comments) sets nothing.
            serde_yaml::Value::Null => serde_yaml::Mapping::new(),
            _ => {
                return Err(vec![error(
                    Some(1),
                    None,
                    None,
                    "expected a mapping of settings (`name: value` lines)".to_string(),
                )])
            }
        };
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for (key, value) in &mapping {
            let Some(key) = key.as_str() else {
                errors.push(error(
                    None,
                    None,
                    None,
                    format!("a setting's name must be text, not {}", describe(key)),
                ));
                continue;
            };
            let line = line_of(&text, key);
            match entry(command, key, value) {
                Ok(e) => entries.push(e),
                Err(why) => errors.push(error(line, None, Some(key), why.to_string())),
            }
        }
        if errors.is_empty() {
            Ok(SettingsFile {
                path: path.to_path_buf(),
                entries,
            })
        } else {
            Err(errors)
        }
    }

    /// `argv` with the file's settings appended, for each setting the active (sub)command takes
    /// and neither a flag nor the environment set (as `matches`, clap's first parse of `argv`,
    /// says). Returns the names of the settings taken from the file.
    pub fn arguments_for(
        &self,
        argv: &[OsString],
        command: &Command,
        matches: &ArgMatches,
    ) -> (Vec<OsString>, Vec<String>) {
        let (leaf, leaf_matches) = active(command, matches);
        let mut out = argv.to_vec();
        let mut applied = Vec::new();
        for e in &self.entries {
            if !leaf.get_arguments().any(|a| a.get_id() == e.id.as_str()) {
                continue;
            }
            let set_outside = matches!(
                leaf_matches.value_source(&e.id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            if set_outside {
                continue;
            }
            applied.push(e.key.clone());
            if e.switch {
                if e.values.first().map(String::as_str) == Some("true") {
                    out.push(e.flag.clone().into());
                }
                continue;
            }
            for v in &e.values {
                // `--flag=value`: a value that starts with `-` is not taken for a flag.
                out.push(format!("{}={v}", e.flag).into());
            }
        }
        (out, applied)
    }

    /// The line a setting is on (for errors found after the file was read, e.g. CORS).
    pub fn line_of(&self, key: &str) -> Option<usize> {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| line_of(&text, key))
    }
}

/// The (sub)command that runs and its matches: settings apply only to the arguments it has.
fn active<'a>(command: &'a Command, matches: &'a ArgMatches) -> (&'a Command, &'a ArgMatches) {
    let mut cmd = command;
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        match cmd.find_subcommand(name) {
            Some(c) => {
                cmd = c;
                m = sub;
            }
            None => break,
        }
    }
    (cmd, m)
}

/// A key of the file, checked against the argument it names.
fn entry(command: &Command, key: &str, value: &serde_yaml::Value) -> Result<Entry, KeyError> {
    let flag_name = key.replace('_', "-");
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(flag_name.as_str()) && !NOT_SETTINGS.contains(&key))
        .ok_or_else(|| unknown(command, key))?;
    if key.contains('-') {
        return Err(KeyError::Dashed(key.replace('-', "_")));
    }
    let secret = arg.is_hide_env_values_set();
    let switch = matches!(arg.get_action(), ArgAction::SetTrue);
    let many = matches!(arg.get_action(), ArgAction::Append);
    let values: Vec<String> = match value {
        serde_yaml::Value::Sequence(items) if many => items
            .iter()
            .map(scalar)
            .collect::<Result<_, _>>()
            .map_err(KeyError::ItemNotValue)?,
        serde_yaml::Value::Sequence(_) => {
            return Err(KeyError::NotAList);
        }
        other => vec![scalar(other).map_err(KeyError::NotValue)?],
    };
    if switch {
        return match value {
            serde_yaml::Value::Bool(b) => Ok(Entry {
                key: key.to_string(),
                id: arg.get_id().to_string(),
                flag: format!("--{flag_name}"),
                switch: true,
                values: vec![b.to_string()],
            }),
            _ => Err(KeyError::NotBool),
        };
    }
    // The flag's own parser, on a command with only that flag (the full command would also
    // enforce the flag's relations to others, which the whole command line checks later).
    let probe = Command::new("switchboard").no_binary_name(true).arg(
        clap::Arg::new(arg.get_id().clone())
            .index(1)
            .allow_hyphen_values(true)
            .action(ArgAction::Set)
            .value_parser(arg.get_value_parser().clone()),
    );
    for v in &values {
        // A list flag may take comma-separated values in one item, as on the command line.
        let parts: Vec<&str> = match arg.get_value_delimiter() {
            Some(d) => v.split(d).collect(),
            None => vec![v.as_str()],
        };
        for part in parts {
            if let Err(e) = probe.clone().try_get_matches_from([part]) {
                return Err(if secret {
                    KeyError::SecretInvalid
                } else {
                    KeyError::Invalid(clap_reason(&e, part))
                });
            }
        }
    }
    Ok(Entry {
        key: key.to_string(),
        id: arg.get_id().to_string(),
        flag: format!("--{flag_name}"),
        switch: false,
        values,
    })
}

/// What is wrong with one key of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum KeyError {
    #[error("unknown setting; did you mean `{0}`?")]
    Suggest(String),
    #[error("unknown setting (see the settings table in README.md)")]
    Unknown,
    #[error("a settings file cannot name another one")]
    Nested,
    #[error("write it `{0}` (settings are the flag names with `_` for `-`)")]
    Dashed(String),
    #[error("each item must be a single value, not {0}")]
    ItemNotValue(&'static str),
    #[error("takes one value, not a list")]
    NotAList,
    #[error("expected a value, not {0}")]
    NotValue(&'static str),
    #[error("expected true or false")]
    NotBool,
    /// clap's reason (it names the value: never for a secret).
    #[error("{0}")]
    Invalid(String),
    #[error("the value is not valid")]
    SecretInvalid,
}

fn unknown(command: &Command, key: &str) -> KeyError {
    let normalized = key.replace('-', "_");
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|l| l.replace('-', "_"))
        .filter(|k| !NOT_SETTINGS.contains(&k.as_str()))
        .collect();
    if key == "config" {
        return KeyError::Nested;
    }
    // As clap suggests a mistyped flag: the closest known name, if close enough.
    let closest = known
        .iter()
        .map(|k| (strsim::jaro(k, &normalized), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, k)) if k != key => KeyError::Suggest(k.clone()),
        _ => KeyError::Unknown,
    }
}

/// A scalar as the command line would spell it.
fn scalar(value: &serde_yaml::Value) -> Result<String, &'static str> {
    match value {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        other => Err(describe(other)),
    }
}

fn describe(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Null => "nothing (null)",
        serde_yaml::Value::Bool(_) => "true/false",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "text",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// clap's reason a value was refused, without its `error:` prefix and help hint.
fn clap_reason(e: &clap::Error, value: &str) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let reason = first.strip_prefix("error: ").unwrap_or(first).trim();
    if reason.is_empty() {
        format!("`{value}` is not a valid value")
    } else {
        reason.to_string()
    }
}

/// serde_yaml's message without the " at line L column C" it ends with (said separately).
fn without_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// The line a top-level key is written on (settings are top-level, so at column 1).
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let rest = line
                .strip_prefix(key)
                .or_else(|| {
                    line.strip_prefix('"')
                        .and_then(|l| l.strip_prefix(key))
                        .and_then(|l| l.strip_prefix('"'))
                })
                .or_else(|| {
                    line.strip_prefix('\'')
                        .and_then(|l| l.strip_prefix(key))
                        .and_then(|l| l.strip_prefix('\''))
                });
            rest.is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Flag,
    Environment,
    File,
    Default,
    /// Not set anywhere, and no default (an optional setting that is off).
    Unset,
}

/// One setting as `GET /admin/config` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SettingReport {
    /// The name in the settings file (`body_limit`).
    pub name: String,
    /// The command-line flag (`--body-limit`).
    pub flag: String,
    /// The environment variable, if the setting has one.
    pub env: Option<String>,
    /// The value in use (text, a number as text, true/false, a list, or null when unset);
    /// `"<set>"` for a secret that is set.
    #[schema(value_type = Value)]
    pub value: serde_json::Value,
    pub source: Source,
    /// Applies on reload (the others need a restart).
    pub reloadable: bool,
    /// The settings file now says something else than the running value, which only a restart
    /// applies.
    pub restart_pending: bool,
}

/// Every setting of `command` (the serve flags) as `matches` resolved them, `from_file` naming
/// those the settings file gave.
pub fn report(command: &Command, matches: &ArgMatches, from_file: &[String]) -> Vec<SettingReport> {
    command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let name = long.replace('-', "_");
            if NOT_SETTINGS.contains(&name.as_str()) {
                return None;
            }
            let id = arg.get_id().as_str();
            let raw: Vec<String> = matches
                .get_raw(id)
                .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let source = if from_file.contains(&name) {
                Source::File
            } else {
                match matches.value_source(id) {
                    Some(ValueSource::CommandLine) => Source::Flag,
                    Some(ValueSource::EnvVariable) => Source::Environment,
                    Some(ValueSource::DefaultValue) => Source::Default,
                    _ => Source::Unset,
                }
            };
            let switch = matches!(arg.get_action(), ArgAction::SetTrue);
            let value = if raw.is_empty() {
                serde_json::Value::Null
            } else if arg.is_hide_env_values_set() {
                serde_json::Value::String("<set>".to_string())
            } else if switch {
                serde_json::Value::Bool(raw.iter().any(|v| v == "true"))
            } else if matches!(arg.get_action(), ArgAction::Append) {
                let split: Vec<serde_json::Value> = raw
                    .iter()
                    .flat_map(|v| match arg.get_value_delimiter() {
                        Some(d) => v.split(d).map(str::to_string).collect::<Vec<_>>(),
                        None => vec![v.clone()],
                    })
                    .map(serde_json::Value::String)
                    .collect();
                serde_json::Value::Array(split)
            } else {
                // A URL setting (`--otlp-endpoint`) may carry a user and password.
                let text = raw.join(",");
                serde_json::Value::String(
                    crate::url_credentials::without_credentials(&text).unwrap_or(text),
                )
            };
            Some(SettingReport {
                reloadable: RELOADABLE.contains(&name.as_str()),
                name,
                flag: format!("--{long}"),
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                value,
                source,
                restart_pending: false,
            })
        })
        .collect()
}

/// `now` with `restart_pending` set on each setting that needs a restart and whose value differs
/// from the one the process started with.
pub fn mark_pending(started: &[SettingReport], mut now: Vec<SettingReport>) -> Vec<SettingReport> {
    for s in &mut now {
        s.restart_pending = !s.reloadable
            && started
                .iter()
                .find(|o| o.name == s.name)
                .is_some_and(|o| o.value != s.value);
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn command() -> Command {
        Command::new("t")
            .arg(
                Arg::new("body_limit")
                    .long("body-limit")
                    .env("T_BODY_LIMIT")
                    .value_parser(clap::value_parser!(usize))
                    .default_value("10"),
            )
            .arg(
                Arg::new("no_watch")
                    .long("no-watch")
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("origins")
                    .long("cors-origin")
                    .action(ArgAction::Append)
                    .value_delimiter(','),
            )
            .arg(
                Arg::new("token")
                    .long("metrics-token")
                    .hide_env_values(true)
                    .value_parser(clap::value_parser!(u32)),
            )
            .arg(Arg::new("config").long("config"))
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn every_error_is_named_with_its_line_and_key() {
        let (_d, path) = file(
            "# settings\nbody_limit: lots\nno_watch: yes please\nbogus: 1\nbody-limit: 3\nconfig: x.yaml\n",
        );
        let errors = SettingsFile::read(&path, &command()).unwrap_err();
        let shown: Vec<String> = errors
            .iter()
            .map(|e| format!("{:?}:{:?}", e.line, e.field))
            .collect();
        assert_eq!(
            shown,
            [
                "Some(2):Some(\"body_limit\")",
                "Some(3):Some(\"no_watch\")",
                "Some(4):Some(\"bogus\")",
                "Some(5):Some(\"body-limit\")",
                "Some(6):Some(\"config\")",
            ]
        );
        assert!(errors[0].message.contains("lots"), "{}", errors[0].message);
        assert!(errors[3].message.contains("body_limit"));
        assert!(errors[0]
            .to_string()
            .contains("switchboard.yaml:2: body_limit: "));
    }

    #[test]
    fn a_secret_value_is_never_repeated() {
        let (_d, path) = file("metrics_token: hunter2\n");
        let errors = SettingsFile::read(&path, &command()).unwrap_err();
        assert!(!errors[0].to_string().contains("hunter2"), "{}", errors[0]);
    }

    #[test]
    fn yaml_syntax_errors_have_a_line() {
        let (_d, path) = file("body_limit: 1\n  bad: [\n");
        let errors = SettingsFile::read(&path, &command()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].line.is_some(), "{:?}", errors[0]);
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let (_d, path) = file(
            "body_limit: 42\nno_watch: true\ncors_origin: [https://a.example, https://b.example]\n",
        );
        let cmd = command();
        let settings = SettingsFile::read(&path, &cmd).unwrap();
        let argv: Vec<OsString> = vec!["t".into(), "--body-limit".into(), "7".into()];
        let first = cmd.clone().try_get_matches_from(&argv).unwrap();
        let (args, applied) = settings.arguments_for(&argv, &cmd, &first);
        assert_eq!(applied, ["no_watch", "cors_origin"]);
        let m = cmd.clone().try_get_matches_from(&args).unwrap();
        assert_eq!(m.get_one::<usize>("body_limit"), Some(&7));
        assert!(m.get_flag("no_watch"));
        let origins: Vec<&String> = m.get_many("origins").unwrap().collect();
        assert_eq!(origins, ["https://a.example", "https://b.example"]);
        let report = report(&cmd, &m, &applied);
        let by = |n: &str| report.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!(by("body_limit").source, Source::Flag);
        assert_eq!(by("no_watch").source, Source::File);
        assert_eq!(
            by("cors_origin").value,
            serde_json::json!(["https://a.example", "https://b.example"])
        );
        assert_eq!(by("metrics_token").source, Source::Unset);

        // Without the flag, the file's value.
        let argv: Vec<OsString> = vec!["t".into()];
        let first = cmd.clone().try_get_matches_from(&argv).unwrap();
        let (args, _) = settings.arguments_for(&argv, &cmd, &first);
        let m = cmd.clone().try_get_matches_from(&args).unwrap();
        assert_eq!(m.get_one::<usize>("body_limit"), Some(&42));
    }

    #[test]
    fn pending_restarts_are_the_changed_settings_a_reload_cannot_apply() {
        let make = |name: &str, value: i64| SettingReport {
            name: name.into(),
            flag: String::new(),
            env: None,
            value: value.into(),
            source: Source::File,
            reloadable: RELOADABLE.contains(&name),
            restart_pending: false,
        };
        let started = vec![
            make("body_limit", 1),
            make("cors_max_age", 1),
            make("workers", 2),
        ];
        let now = vec![
            make("body_limit", 2),
            make("cors_max_age", 2),
            make("workers", 2),
        ];
        let marked = mark_pending(&started, now);
        let pending: Vec<_> = marked.iter().map(|s| s.restart_pending).collect();
        assert_eq!(pending, [true, false, false]);
    }
}
