//! The module graph has no cycles (ARCHITECTURE.md, "Layers"). Every file under `src/` is a
//! module; a file depends on another when it names it by a `crate::`, `super::` or `self::`
//! path, in a `use` item or in code. A cycle fails with its path spelled out.
//!
//! What does not count: `#[cfg(test)]` items and comments; a parent's `mod` declarations and
//! `pub use` re-exports of its own children (that is how a folder exposes its files, not a
//! dependency); paths that start with a child's bare name (`forward::run`), or with another
//! crate. `main.rs` is the binary, a crate of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[test]
fn the_module_graph_has_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &src, &mut files);
    assert!(files.len() > 10, "read the crate's files: {files:?}");
    let graph = Graph::of(&files);
    let cycles = graph.cycles();
    assert!(
        cycles.is_empty(),
        "module cycles (a module may only use modules that do not use it back, directly or \
         not; see ARCHITECTURE.md, Layers):\n{}",
        cycles.join("\n")
    );
}

/// Every `.rs` file under `dir`, as (path relative to `src`, text).
fn collect(src: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(src, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(src).unwrap().to_path_buf();
            if relative != Path::new("main.rs") {
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

/// A module path: `[]` is the crate root, `["proxy", "admit"]` is `proxy::admit`.
type Module = Vec<String>;

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// `lib.rs` -> root, `proxy/mod.rs` -> proxy, `proxy/admit.rs` -> proxy::admit.
fn module_of(relative: &Path) -> Module {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if !(parts.is_empty() && stem == "lib") && stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// Why an edge exists: the first place that makes it.
struct Reason {
    file: PathBuf,
    line: usize,
    path: String,
}

struct Graph {
    edges: BTreeMap<Module, BTreeMap<Module, Reason>>,
}

impl Graph {
    fn of(files: &[(PathBuf, String)]) -> Graph {
        let modules: BTreeSet<Module> = files.iter().map(|(p, _)| module_of(p)).collect();
        let mut edges: BTreeMap<Module, BTreeMap<Module, Reason>> = BTreeMap::new();
        for (file, text) in files {
            let from = module_of(file);
            let targets = edges.entry(from.clone()).or_default();
            for used in paths(&strip_tests(&blank_comments_and_strings(text))) {
                let Some(absolute) = absolute(&from, &used.segments) else {
                    continue;
                };
                let to = longest_module(&modules, &absolute);
                // A folder's own re-exports of its files are how it exposes them.
                let own_child = to.len() > from.len() && to.starts_with(&from);
                if to == from || (used.re_export && own_child) {
                    continue;
                }
                targets.entry(to).or_insert_with(|| Reason {
                    file: file.clone(),
                    line: used.line,
                    path: used
                        .segments
                        .join("::")
                        .trim_end_matches("::self")
                        .to_string(),
                });
            }
        }
        Graph { edges }
    }

    /// Every cycle a depth-first walk meets, as `a -> b -> a` with where each step is made.
    fn cycles(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut done = BTreeSet::new();
        for start in self.edges.keys() {
            let mut stack = Vec::new();
            self.walk(start, &mut stack, &mut done, &mut found);
        }
        found
    }

    fn walk<'a>(
        &'a self,
        node: &'a Module,
        stack: &mut Vec<&'a Module>,
        done: &mut BTreeSet<&'a Module>,
        found: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|m| *m == node) {
            found.push(self.describe(&stack[at..]));
            return;
        }
        stack.push(node);
        for next in self.edges.get(node).into_iter().flat_map(|e| e.keys()) {
            self.walk(next, stack, done, found);
        }
        stack.pop();
        done.insert(node);
    }

    fn describe(&self, cycle: &[&Module]) -> String {
        let mut names: Vec<String> = cycle.iter().map(|m| name(m)).collect();
        names.push(name(cycle[0]));
        let mut text = names.join(" -> ");
        for (i, from) in cycle.iter().enumerate() {
            let to = cycle[(i + 1) % cycle.len()];
            let reason = &self.edges[*from][to];
            text.push_str(&format!(
                "\n    {} -> {}: src/{}:{} uses {}",
                name(from),
                name(to),
                reason.file.display(),
                reason.line,
                reason.path
            ));
        }
        text
    }
}

/// `crate::`, `super::` and `self::` paths made absolute; `None` for any other path.
fn absolute(from: &[String], segments: &[String]) -> Option<Module> {
    let mut module: Module = match segments.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self" | "super") => from.to_vec(),
        _ => return None,
    };
    let mut rest = &segments[1..];
    if segments[0] == "super" {
        module.pop();
    }
    while rest.first().is_some_and(|s| s == "super") {
        module.pop();
        rest = &rest[1..];
    }
    module.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(module)
}

/// The file module a path lands in: its longest prefix that is a file (the root at least).
fn longest_module(modules: &BTreeSet<Module>, path: &[String]) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains(m))
        .unwrap_or_default()
}

/// The source with comments and the contents of string and char literals turned into spaces
/// (line breaks kept, so line numbers hold): a path in a doc comment or a message is no use.
fn blank_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if !ident_before && raw_string_hashes(&chars, i).is_some() {
            let (start, hashes) = raw_string_hashes(&chars, i).unwrap_or_default();
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            out.extend(chars[i..start].iter());
            i = start;
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                out.push(blank(chars[i]));
                i += 1;
            }
            out.extend(closing.iter());
            i += closing.len();
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&c) = chars.get(i) {
                    out.push(blank(c));
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '"', '\n', '\u{1F600}'); anything else is a lifetime.
            out.push('\'');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `r"`, `r#"`, `br"`...: where the contents start, and how many `#` close it.
fn raw_string_hashes(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    j += hashes;
    (chars.get(j) == Some(&'"')).then_some((j + 1, hashes))
}

/// The text with every `#[cfg(test)]` item blanked (a `mod tests { ... }`, a `fn`, a
/// `use ...;`). Expects comments and strings blanked already, so braces balance.
fn strip_tests(text: &str) -> String {
    let mark: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i..].starts_with(&mark) {
            let end = item_end(&chars, i + mark.len());
            for c in &mut chars[i..end] {
                if *c != '\n' {
                    *c = ' ';
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    chars.into_iter().collect()
}

/// Where the item from `start` ends: after the brace that closes its body or after its `;`;
/// before a `,` or closing bracket that is not its own (a field's or an argument's end).
fn item_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in chars.iter().enumerate().skip(start) {
        match c {
            '{' | '(' | '[' => depth += 1,
            '}' | ')' | ']' if depth == 0 => return i,
            '}' if depth == 1 => return i + 1,
            '}' | ')' | ']' => depth -= 1,
            ';' if depth == 0 => return i + 1,
            ',' if depth == 0 => return i,
            _ => {}
        }
    }
    chars.len()
}

/// One path a file names.
#[derive(Debug, PartialEq)]
struct Used {
    segments: Vec<String>,
    line: usize,
    /// Named by a `pub use` (any visibility): a re-export.
    re_export: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Tokens with their line numbers: identifiers (with `$crate` as `crate`), `::`, and single
/// punctuation characters.
fn tokens(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Token::Ident(chars[start..i].iter().collect()), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((Token::PathSep, line));
            i += 2;
        } else {
            if c != '$' {
                out.push((Token::Punct(c), line));
            }
            i += 1;
        }
    }
    out
}

/// Every path the text names that starts with `crate`, `super` or `self` and goes on with
/// `::`, `use` trees expanded (`use crate::{a, b::c}` names `crate::a` and `crate::b::c`).
fn paths(text: &str) -> Vec<Used> {
    let tokens = tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].0 == Token::Ident("use".into()) {
            let re_export = visibility_before(&tokens, i);
            let end = tokens[i..]
                .iter()
                .position(|(t, _)| *t == Token::Punct(';'))
                .map_or(tokens.len(), |n| i + n);
            let mut leaves = Vec::new();
            use_tree(&tokens[i + 1..end], Vec::new(), &mut leaves);
            for (segments, line) in leaves {
                out.push(Used {
                    segments,
                    line,
                    re_export,
                });
            }
            i = end;
        } else if is_path_start(&tokens, i) {
            let line = tokens[i].1;
            let mut segments = Vec::new();
            while let Some((Token::Ident(s), _)) = tokens.get(i) {
                segments.push(s.clone());
                if tokens.get(i + 1).map(|t| &t.0) != Some(&Token::PathSep) {
                    break;
                }
                i += 2;
            }
            out.push(Used {
                segments,
                line,
                re_export: false,
            });
        }
        i += 1;
    }
    out.retain(|u| {
        u.segments
            .first()
            .is_some_and(|s| matches!(s.as_str(), "crate" | "super" | "self"))
    });
    out
}

/// `crate::`, `super::` or `self::` not in the middle of a longer path (`a::self` is no start).
fn is_path_start(tokens: &[(Token, usize)], i: usize) -> bool {
    let starts =
        matches!(&tokens[i].0, Token::Ident(s) if matches!(s.as_str(), "crate" | "super" | "self"));
    let continues = i > 0 && tokens[i - 1].0 == Token::PathSep;
    starts && !continues && tokens.get(i + 1).map(|t| &t.0) == Some(&Token::PathSep)
}

/// Whether the `use` at `i` is `pub use`, `pub(crate) use`, ...
fn visibility_before(tokens: &[(Token, usize)], i: usize) -> bool {
    let pub_token = Token::Ident("pub".into());
    match i.checked_sub(1).map(|j| &tokens[j].0) {
        Some(t) if *t == pub_token => true,
        Some(Token::Punct(')')) => tokens[..i]
            .iter()
            .rposition(|(t, _)| *t == Token::Punct('('))
            .and_then(|open| open.checked_sub(1))
            .is_some_and(|j| tokens[j].0 == pub_token),
        _ => false,
    }
}

/// Expands one `use` tree (the tokens between `use` and `;`) into its leaf paths.
fn use_tree(tokens: &[(Token, usize)], prefix: Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    let mut path = prefix.clone();
    let mut line = tokens.first().map_or(0, |t| t.1);
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::Ident(s) if s == "as" => i += 1, // the alias that follows is no path
            Token::Ident(s) => {
                if path.len() == prefix.len() {
                    line = tokens[i].1;
                }
                path.push(s.clone());
            }
            Token::PathSep => {}
            Token::Punct('{') => {
                let close = matching_brace(tokens, i);
                for item in split_top_level(&tokens[i + 1..close]) {
                    use_tree(item, path.clone(), out);
                }
                path = prefix.clone();
                i = close;
            }
            Token::Punct(',') => {
                if path.len() > prefix.len() {
                    out.push((std::mem::replace(&mut path, prefix.clone()), line));
                }
            }
            Token::Punct(_) => {}
        }
        i += 1;
    }
    if path.len() > prefix.len() {
        out.push((path, line));
    }
}

fn matching_brace(tokens: &[(Token, usize)], open: usize) -> usize {
    let mut depth = 0;
    for (i, (t, _)) in tokens.iter().enumerate().skip(open) {
        match t {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// The items of a `{a, b::{c, d}}` group, split at its top-level commas.
fn split_top_level(tokens: &[(Token, usize)]) -> Vec<&[(Token, usize)]> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, (t, _)) in tokens.iter().enumerate() {
        match t {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => depth -= 1,
            Token::Punct(',') if depth == 0 => {
                items.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tokens[start..]);
    items
}

// The checker itself, on made-up files.

fn graph(files: &[(&str, &str)]) -> Graph {
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect();
    Graph::of(&files)
}

#[test]
fn finds_a_cycle_through_use_items_and_expressions_and_names_it() {
    let cycles = graph(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", "use crate::{b::{self, Thing as T}, c};\n"),
        ("b.rs", "fn f() {\n    crate::c::d::run();\n}\n"),
        ("c/mod.rs", "pub mod d;\n"),
        ("c/d.rs", "fn g() -> super::super::a::X {\n    todo()\n}\n"),
    ])
    .cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(
        cycles[0],
        "a -> b -> c::d -> a\n    \
         a -> b: src/a.rs:1 uses crate::b\n    \
         b -> c::d: src/b.rs:2 uses crate::c::d::run\n    \
         c::d -> a: src/c/d.rs:1 uses super::super::a::X"
    );
    // `a` uses `c`, whose file does not use `a`: `c::d` does, and a parent is not its files.
    let cycles = graph(&[
        ("lib.rs", "pub mod a;\npub mod c;\n"),
        ("a.rs", "use crate::c::Y;\n"),
        ("c/mod.rs", "pub mod d;\npub use d::Y;\n"),
        ("c/d.rs", "fn g() -> super::super::a::X {\n    todo()\n}\n"),
    ])
    .cycles();
    assert!(cycles.is_empty(), "{cycles:?}");
}

#[test]
fn re_exports_of_own_children_tests_comments_and_strings_make_no_edge() {
    let files = [
        ("lib.rs", "pub mod p;\npub use crate::p::Q;\n"),
        (
            "p/mod.rs",
            "pub mod kid;\npub use self::kid::Kid;\npub(crate) use crate::p::kid::Other;\n\
             /// crate::p::kid::Doc in a doc comment\nconst S: &str = \"crate::p::kid::X\";\n\
             const R: &str = r#\"self::kid::Y \"quoted\"\"#;\nconst C: char = '\"';\n\
             fn f<'a>(s: &'a str) {}\n\
             #[cfg(test)]\nmod tests {\n    use super::kid::helper;\n    fn t() { let _ = '{'; }\n}\n",
        ),
        ("p/kid.rs", "use super::Shared;\nuse crate::Root;\n"),
    ];
    let g = graph(&files);
    assert!(g.cycles().is_empty(), "{:?}", g.cycles());
    let edges = |m: &[&str]| -> Vec<String> {
        let m: Module = m.iter().map(|s| s.to_string()).collect();
        g.edges[&m].keys().map(|k| name(k)).collect()
    };
    assert_eq!(edges(&[]), Vec::<String>::new());
    assert_eq!(edges(&["p"]), Vec::<String>::new());
    assert_eq!(edges(&["p", "kid"]), ["crate", "p"]);

    // A private `use` of a child, and a non-test item after the test module, still count.
    let g = graph(&[
        ("lib.rs", "pub mod p;\n"),
        (
            "p/mod.rs",
            "pub mod kid;\n#[cfg(test)]\nuse crate::p::kid::T;\nuse self::kid::Kid;\n",
        ),
        ("p/kid.rs", "fn f() -> super::Shared { todo() }\n"),
    ]);
    let cycles = g.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].contains("src/p/mod.rs:4 uses self::kid::Kid"),
        "{}",
        cycles[0]
    );
}

#[test]
fn file_paths_map_to_module_paths() {
    let m = |p: &str| name(&module_of(Path::new(p)));
    assert_eq!(m("lib.rs"), "crate");
    assert_eq!(m("proxy/mod.rs"), "proxy");
    assert_eq!(m("proxy/admit.rs"), "proxy::admit");
    assert_eq!(
        m("providers/anthropic/stream.rs"),
        "providers::anthropic::stream"
    );
    assert_eq!(m("openapi.rs"), "openapi");
    assert_eq!(m("openapi/responses.rs"), "openapi::responses");
}
