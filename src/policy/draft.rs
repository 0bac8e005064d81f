//! Drafts from the dashboard's editor: a script's text compiled exactly as a load compiles a
//! file (same engine, same checks), and a copy of a loaded set with that script swapped in,
//! added or taken out, so a draft can be simulated and tested before it is saved.

use super::{LoadError, PolicySet};
use std::path::Path;
use std::sync::Arc;

/// The longest script name accepted.
const MAX_NAME_LEN: usize = 128;

/// Whether `name` can be a script's file name in the policies folder: a plain `*.rhai` name,
/// never a path (no `/`, no `..`), never hidden (the loader skips hidden files, and the editor's
/// temporary files are hidden). Returns why not.
pub fn check_name(name: &str) -> Result<(), BadName> {
    let stem = name.strip_suffix(".rhai").unwrap_or_default();
    if stem.is_empty() {
        return Err(BadName::NotRhai(
            crate::error::truncated(name, 64).into_owned(),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(BadName::TooLong);
    }
    if name.starts_with('.') || name.contains("..") {
        return Err(BadName::Hidden);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(BadName::Characters);
    }
    Ok(())
}

/// Why a name cannot be a script's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    #[error("`{0}` is not a script name: use a file name ending in `.rhai`")]
    NotRhai(String),
    #[error("a script name is at most {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("a script name cannot start with `.` or contain `..`")]
    Hidden,
    #[error("a script name is a file name of letters, digits, `-`, `_` and `.` (no folders)")]
    Characters,
}

impl PolicySet {
    /// A copy of this set for simulations and fixture runs: its regex cache starts empty, so
    /// whatever the copy compiles never fills the serving set's (bounded) cache.
    pub fn detached(&self) -> PolicySet {
        let mut copy = self.clone();
        copy.library = Arc::new(self.library.detached());
        copy
    }

    /// The text a loaded script was compiled from.
    pub fn source(&self, name: &str) -> Option<Arc<str>> {
        self.scripts
            .iter()
            .find(|s| &*s.name == name)
            .map(|s| s.source.clone())
    }

    /// This set with script `name` (in `dir`) replaced by `source`, or added in file-name order
    /// when it is new, or taken out when `source` is `None`. Only the draft is compiled; its
    /// errors are what a load of the same text would report. The name must have passed
    /// [`check_name`].
    pub fn with_draft(
        &self,
        dir: &Path,
        name: &str,
        source: Option<&str>,
    ) -> Result<PolicySet, LoadError> {
        let path = dir.join(name);
        let mut set = self.detached();
        let at = set.scripts.iter().position(|s| &*s.name == name);
        // `files` starts with the scripts' files, in the same order (the data files follow).
        match (source, at) {
            (None, None) => {}
            (None, Some(i)) => {
                set.scripts.remove(i);
                set.files.remove(i);
            }
            (Some(text), at) => {
                let (script, sha256) = set.compile_text(&path, text)?;
                let file = crate::config::SourceFile { path, sha256 };
                match at {
                    Some(i) => {
                        set.scripts[i] = script;
                        set.files[i] = file;
                    }
                    None => {
                        let i = set
                            .scripts
                            .iter()
                            .position(|s| &*s.name > name)
                            .unwrap_or(set.scripts.len());
                        set.scripts.insert(i, script);
                        set.files.insert(i, file);
                    }
                }
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_rhai_file_names() {
        for good in ["10-aliases.rhai", "a.rhai", "x_y.z.rhai"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".rhai",
            "a.yaml",
            "../a.rhai",
            "a/b.rhai",
            "..rhai",
            ".hidden.rhai",
            "a..b.rhai",
            "a b.rhai",
            "a\\b.rhai",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name(&format!("{}.rhai", "a".repeat(200))).is_err());
    }

    #[test]
    fn a_draft_replaces_adds_or_removes_one_script_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["10-a.rhai", "30-c.rhai"] {
            std::fs::write(dir.path().join(name), "fn on_request(req, ctx) {}").unwrap();
        }
        let engine = Arc::new(super::super::engine::build(1 << 20));
        let set = PolicySet::load_dir(engine, dir.path(), false).unwrap();
        let hook = "fn on_request(req, ctx) { ctx.tag(\"x\", \"1\"); }";

        let added = set.with_draft(dir.path(), "20-b.rhai", Some(hook)).unwrap();
        assert_eq!(
            added.script_names(),
            ["10-a.rhai", "20-b.rhai", "30-c.rhai"]
        );
        assert_eq!(added.files.len(), 3);
        assert_eq!(added.source("20-b.rhai").as_deref(), Some(hook));
        assert_eq!(set.script_names().len(), 2, "the loaded set is untouched");
        assert!(
            !Arc::ptr_eq(&set.library, &added.library),
            "a draft's regexes go to a cache of its own, never the serving set's"
        );

        let replaced = set.with_draft(dir.path(), "30-c.rhai", Some(hook)).unwrap();
        assert_eq!(replaced.script_names(), ["10-a.rhai", "30-c.rhai"]);
        assert_eq!(replaced.source("30-c.rhai").as_deref(), Some(hook));

        let removed = set.with_draft(dir.path(), "10-a.rhai", None).unwrap();
        assert_eq!(removed.script_names(), ["30-c.rhai"]);

        let err = set
            .with_draft(
                dir.path(),
                "10-a.rhai",
                Some("fn on_request(req, ctx) {\n  let = 1;\n}"),
            )
            .err()
            .unwrap();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.file.ends_with("10-a.rhai"));
        let err = set
            .with_draft(dir.path(), "10-a.rhai", Some("let x = 1;"))
            .err()
            .unwrap();
        assert!(err.message.contains("defines neither"), "{err}");
    }
}
