//! What a load of the policies gives every script besides the request: regular expressions
//! compiled once (`ctx.regex(pattern)`) and the data files of `policies/data/`
//! (`ctx.data(name)`), both kept for the life of that load.
//!
//! Bounded like everything a script can reach: a pattern's compiled size is capped, a load
//! caches at most [`MAX_PATTERNS`] distinct patterns (so a script cannot compile client text
//! on every request), and data files are capped in size and number. Scripts read data files,
//! never any other file.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Position};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The most items an array this module builds holds: the engine's array limit
/// (`engine::MAX_ARRAY_SIZE`, checked equal in engine's tests), so a result is never an array
/// the engine refuses.
pub const MAX_RESULTS: usize = 10_000;
/// Distinct patterns one load compiles; more is a script error.
pub const MAX_PATTERNS: usize = 256;
/// The largest compiled pattern (regex's own size measure).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// The largest data file, and the most files, read from `policies/data/`.
pub const MAX_DATA_FILE_BYTES: u64 = 8 << 20;
pub const MAX_DATA_FILES: usize = 64;

type Res<T> = Result<T, Box<EvalAltResult>>;

fn script_err(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        Position::NONE,
    ))
}

/// The regexes and data files of one load.
#[derive(Default)]
pub struct Library {
    regexes: Mutex<HashMap<String, ScriptRegex>>,
    data: HashMap<String, DataFile>,
}

impl Library {
    pub fn with_data(data: HashMap<String, DataFile>) -> Self {
        Library {
            regexes: Mutex::default(),
            data,
        }
    }

    /// The same data files with an empty regex cache: for a copy of a policy set (a draft from
    /// the editor, a fixture run) whose patterns must not fill the serving set's cache.
    pub fn detached(&self) -> Self {
        Library::with_data(self.data.clone())
    }

    /// The compiled pattern, compiled on first use in this load.
    pub fn regex(&self, pattern: &str) -> Res<ScriptRegex> {
        let mut cache = self.regexes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cache.get(pattern) {
            return Ok(r.clone());
        }
        if cache.len() >= MAX_PATTERNS {
            return Err(script_err(format!(
                "ctx.regex: more than {MAX_PATTERNS} distinct patterns in one load; write patterns in the script, not from request text"
            )));
        }
        let compiled = RegexBuilder::new(pattern)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| script_err(format!("ctx.regex: {e}")))?;
        let r = ScriptRegex(Arc::new(compiled));
        cache.insert(pattern.to_string(), r.clone());
        Ok(r)
    }

    pub fn data(&self, name: &str) -> Res<DataFile> {
        self.data.get(name).cloned().ok_or_else(|| {
            script_err(format!(
                "ctx.data: no data file `{name}` in the policies' data folder"
            ))
        })
    }
}

/// A compiled pattern, as scripts hold it.
#[derive(Clone)]
pub struct ScriptRegex(Arc<Regex>);

impl ScriptRegex {
    pub fn regex(&self) -> &Regex {
        &self.0
    }

    fn is_match(&mut self, text: ImmutableString) -> bool {
        self.0.is_match(&text)
    }

    /// The first match, or `()`.
    fn find(&mut self, text: ImmutableString) -> Dynamic {
        self.0
            .find(&text)
            .map_or(Dynamic::UNIT, |m| Dynamic::from(m.as_str().to_string()))
    }

    fn find_all(&mut self, text: ImmutableString) -> Array {
        self.0
            .find_iter(&text)
            .take(MAX_RESULTS)
            .map(|m| Dynamic::from(m.as_str().to_string()))
            .collect()
    }

    /// Every match replaced (`$1`, `${name}` refer to groups).
    fn replace(&mut self, text: ImmutableString, with: ImmutableString) -> String {
        self.0.replace_all(&text, with.as_str()).into_owned()
    }

    /// The groups of the first match (group 0 is the whole match; an unmatched group is
    /// `()`), or `()` when nothing matches.
    fn captures(&mut self, text: ImmutableString) -> Dynamic {
        match self.0.captures(&text) {
            Some(caps) => Dynamic::from(
                caps.iter()
                    .map(|g| g.map_or(Dynamic::UNIT, |m| Dynamic::from(m.as_str().to_string())))
                    .collect::<Array>(),
            ),
            None => Dynamic::UNIT,
        }
    }

    pub fn register(engine: &mut Engine) {
        engine
            .register_type_with_name::<ScriptRegex>("Regex")
            .register_fn("is_match", Self::is_match)
            .register_fn("find", Self::find)
            .register_fn("find_all", Self::find_all)
            .register_fn("replace", Self::replace)
            .register_fn("captures", Self::captures);
    }
}

/// A file of `policies/data/`: a word or phrase list (`.txt`: one entry a line, blank lines
/// and `#` comments skipped) or structured data (`.json`, `.yaml`, `.yml`).
#[derive(Clone)]
pub struct DataFile(Arc<DataInner>);

enum DataInner {
    List {
        entries: Vec<String>,
        /// Lower-cased, for `contains`.
        set: HashSet<String>,
        /// Every entry at once, ASCII case ignored, for `find_in`.
        matcher: Option<AhoCorasick>,
    },
    Value(serde_json::Value),
}

impl DataFile {
    /// Reads one file; the error says why, for the load's error list.
    pub fn read(path: &Path) -> Result<DataFile, DataError> {
        let size = std::fs::metadata(path).map_err(DataError::Read)?.len();
        if size > MAX_DATA_FILE_BYTES {
            return Err(DataError::TooLarge(size));
        }
        let text = std::fs::read_to_string(path).map_err(DataError::Read)?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "txt" => Ok(Self::list(&text)),
            "json" => serde_json::from_str(&text)
                .map(|v| DataFile(Arc::new(DataInner::Value(v))))
                .map_err(DataError::Json),
            "yaml" | "yml" => serde_yaml::from_str(&text)
                .map(|v| DataFile(Arc::new(DataInner::Value(v))))
                .map_err(DataError::Yaml),
            _ => Err(DataError::Kind),
        }
    }

    /// A list from text, as a `.txt` file would give it (for tests elsewhere).
    #[cfg(test)]
    pub fn read_list_for_tests(text: &str) -> DataFile {
        Self::list(text)
    }

    fn list(text: &str) -> DataFile {
        let entries: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        let set = entries.iter().map(|e| e.to_lowercase()).collect();
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&entries)
            .ok();
        DataFile(Arc::new(DataInner::List {
            entries,
            set,
            matcher,
        }))
    }

    /// A list holds this entry (case ignored); a map has this key.
    fn contains(&mut self, item: ImmutableString) -> bool {
        match self.0.as_ref() {
            DataInner::List { set, .. } => set.contains(&item.to_lowercase()),
            DataInner::Value(serde_json::Value::Object(map)) => map.contains_key(item.as_str()),
            DataInner::Value(serde_json::Value::Array(items)) => {
                items.iter().any(|v| v.as_str() == Some(item.as_str()))
            }
            DataInner::Value(_) => false,
        }
    }

    /// Where entries of a list occur in `text` as whole words or phrases (ASCII case
    /// ignored): byte ranges, in order. Empty for structured data.
    pub fn word_ranges(&self, text: &str) -> Vec<(usize, usize)> {
        self.word_matches(text).map(|(s, e, _)| (s, e)).collect()
    }

    fn word_matches<'a>(
        &'a self,
        text: &'a str,
    ) -> impl Iterator<Item = (usize, usize, usize)> + 'a {
        let matcher = match self.0.as_ref() {
            DataInner::List {
                matcher: Some(m), ..
            } => Some(m),
            _ => None,
        };
        let bytes = text.as_bytes();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        matcher
            .into_iter()
            .flat_map(move |m| m.find_iter(text))
            .filter(move |m| {
                let before = m.start().checked_sub(1).and_then(|i| bytes.get(i).copied());
                let after = bytes.get(m.end()).copied();
                !before.is_some_and(word) && !after.is_some_and(word)
            })
            .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
    }

    /// The first entry of a list that occurs in `text` as a whole word or phrase (ASCII case
    /// ignored), or `()`. One pass over the text, however long the list.
    fn find_in(&mut self, text: ImmutableString) -> Dynamic {
        let first = self.word_matches(&text).next().map(|(_, _, i)| i);
        match (first, self.0.as_ref()) {
            (Some(i), DataInner::List { entries, .. }) => Dynamic::from(entries[i].clone()),
            _ => Dynamic::UNIT,
        }
    }

    /// A map's value at `key` (converted when read), or `()`.
    fn get(&mut self, key: ImmutableString) -> Res<Dynamic> {
        match self.0.as_ref() {
            DataInner::Value(serde_json::Value::Object(map)) => match map.get(key.as_str()) {
                Some(v) => rhai::serde::to_dynamic(v),
                None => Ok(Dynamic::UNIT),
            },
            _ => Err(script_err(
                "data.get(key) reads a map (a .json or .yaml object)",
            )),
        }
    }

    fn len(&mut self) -> i64 {
        match self.0.as_ref() {
            DataInner::List { entries, .. } => entries.len() as i64,
            DataInner::Value(serde_json::Value::Object(m)) => m.len() as i64,
            DataInner::Value(serde_json::Value::Array(a)) => a.len() as i64,
            DataInner::Value(_) => 1,
        }
    }

    /// The whole file as a Rhai value (a list: an array of strings). A copy: prefer
    /// `contains`, `find_in` and `get` on large files.
    fn value(&mut self) -> Res<Dynamic> {
        match self.0.as_ref() {
            DataInner::List { entries, .. } => Ok(Dynamic::from(
                entries
                    .iter()
                    .take(MAX_RESULTS)
                    .map(|e| Dynamic::from(e.clone()))
                    .collect::<Array>(),
            )),
            DataInner::Value(v) => rhai::serde::to_dynamic(v),
        }
    }

    pub fn register(engine: &mut Engine) {
        engine
            .register_type_with_name::<DataFile>("DataFile")
            .register_fn("contains", Self::contains)
            .register_fn("find_in", Self::find_in)
            .register_fn("get", Self::get)
            .register_fn("len", Self::len)
            .register_get("value", Self::value);
    }
}

/// Why a data file (or the data folder) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("{0} bytes; data files may have at most {MAX_DATA_FILE_BYTES}")]
    TooLarge(u64),
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("not valid YAML: {0}")]
    Yaml(serde_yaml::Error),
    #[error("data files end in .txt, .json, .yaml or .yml")]
    Kind,
    #[error("{0} files; the data folder may hold at most {MAX_DATA_FILES}")]
    TooMany(usize),
}

/// A data file and where it was read from.
pub type DataEntry = (std::path::PathBuf, DataFile);
/// A file that could not be used, and why.
pub type DataProblem = (std::path::PathBuf, DataError);

/// Reads `dir` (`policies/data/`): every file by name. A missing folder is no data.
pub fn read_data_dir(dir: &Path) -> Result<Vec<DataEntry>, Vec<DataProblem>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(vec![(dir.to_path_buf(), DataError::Read(e))]),
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && !n.ends_with('~'))
        })
        .collect();
    paths.sort();
    if paths.len() > MAX_DATA_FILES {
        return Err(vec![(dir.to_path_buf(), DataError::TooMany(paths.len()))]);
    }
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match DataFile::read(&path) {
            Ok(f) => files.push((path, f)),
            Err(e) => errors.push((path, e)),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_list_finds_whole_words_only_case_ignored() {
        let mut list = DataFile::list("# blocked\nforbidden\nsecret plan\n\n");
        assert_eq!(list.len(), 2);
        assert!(list.contains("FORBIDDEN".into()));
        assert_eq!(
            list.find_in("this is Forbidden.".into())
                .into_string()
                .unwrap(),
            "forbidden"
        );
        assert!(list.find_in("unforbiddenness".into()).is_unit());
        assert_eq!(
            list.find_in("the SECRET PLAN is".into())
                .into_string()
                .unwrap(),
            "secret plan"
        );
    }

    #[test]
    fn patterns_are_cached_and_bounded() {
        let lib = Library::default();
        let mut r = lib.regex(r"\d{4}").unwrap();
        assert!(r.is_match("card 1234".into()));
        assert_eq!(r.replace("1234 5678".into(), "####".into()), "#### ####");
        for i in 0..MAX_PATTERNS - 1 {
            lib.regex(&format!("p{i}")).unwrap();
        }
        assert!(lib.regex(r"\d{4}").is_ok(), "a cached pattern is free");
        assert!(lib.regex("one too many").is_err());
        assert!(Library::default().regex("(unclosed").is_err());
    }
}
