//! Output guardrails: what a policy declares (`ctx.guard_output(#{block, redact, hold})`) to
//! check a reply's text before the client sees it. The checks run in Rust, not in the script,
//! on the reply as it passes (`proxy/guarded.rs`): a JSON reply whole, a stream through a
//! hold-back window, so a script costs nothing per chunk.
//!
//! A check is a built-in (`"email"`, `"phone"`, `"card"`: card numbers with a Luhn check), a
//! `ctx.regex(...)`, or a word list of `policies/data/` (whole words, ASCII case ignored).

use super::library::{DataFile, ScriptRegex};
use regex::Regex;
use std::sync::{Arc, OnceLock};

/// What a blocked reply says.
pub const BLOCKED_MESSAGE: &str = "the reply was blocked by a content policy";
/// What a redacted match becomes unless the policy says otherwise.
pub const DEFAULT_REPLACEMENT: &str = "[redacted]";
/// Characters of a stream held back by default before they are released.
pub const DEFAULT_HOLD: usize = 64;
/// Characters gathered past the hold before a release: text reaches the client in steps of
/// about this much (and the checks run once per step).
pub const RELEASE_STEP: usize = 16;
/// The most text a stream's check holds, whatever its patterns match: what one reply can
/// make the gateway keep and re-check is bounded.
pub const MAX_HELD_BYTES: usize = 64 * 1024;
/// The longest hold-back a policy may ask for.
pub const MAX_HOLD: usize = 4096;

/// One check.
#[derive(Clone)]
pub enum Check {
    Email,
    Phone,
    Card,
    Pattern(ScriptRegex),
    Words(DataFile),
}

impl Check {
    /// A built-in by name.
    pub fn builtin(name: &str) -> Option<Check> {
        match name {
            "email" => Some(Check::Email),
            "phone" => Some(Check::Phone),
            "card" => Some(Check::Card),
            _ => None,
        }
    }

    /// What the check is called in a block message and a simulation.
    pub fn name(&self) -> String {
        match self {
            Check::Email => "email".into(),
            Check::Phone => "phone".into(),
            Check::Card => "card".into(),
            Check::Pattern(r) => format!("regex {}", r.regex().as_str()),
            Check::Words(_) => "word list".into(),
        }
    }

    /// Every match in `text`, as byte ranges, in order, not overlapping.
    pub fn matches(&self, text: &str) -> Vec<(usize, usize)> {
        match self {
            Check::Email => ranges(email(), text),
            Check::Phone => ranges(phone(), text)
                .into_iter()
                .filter(|(s, e)| {
                    let digits = text[*s..*e].bytes().filter(u8::is_ascii_digit).count();
                    (9..=15).contains(&digits)
                })
                .collect(),
            Check::Card => ranges(card(), text)
                .into_iter()
                .filter(|(s, e)| luhn(&text[*s..*e]))
                .collect(),
            Check::Pattern(r) => ranges(Some(r.regex()), text),
            Check::Words(list) => list.word_ranges(text),
        }
    }
}

fn ranges(re: Option<&Regex>, text: &str) -> Vec<(usize, usize)> {
    re.map(|re| re.find_iter(text).map(|m| (m.start(), m.end())).collect())
        .unwrap_or_default()
}

fn email() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").ok()
    })
    .as_ref()
}

fn phone() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    // An optional +country code, then groups of digits separated by a space, dot, dash or
    // brackets; the digit count (9 to 15, E.164's bounds) is checked after.
    RE.get_or_init(|| {
        Regex::new(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}\b")
            .ok()
    })
    .as_ref()
}

fn card() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    // 13 to 19 digits, in groups separated by single spaces or dashes.
    RE.get_or_init(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").ok())
        .as_ref()
}

/// The Luhn check of the digits in `text`.
fn luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum % 10 == 0
}

/// What the policies declared for a request's reply.
#[derive(Clone, Default)]
pub struct OutputGuard {
    /// Any match blocks the reply.
    pub block: Vec<Check>,
    /// Matches are replaced by `replacement`.
    pub redact: Vec<Check>,
    pub replacement: String,
    /// Characters of a stream kept back until the text after them has arrived.
    pub hold: usize,
}

/// What a check of some text found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A block check matched (named).
    Blocked(String),
    /// The text, redacted where a redact check matched.
    Pass(String),
}

impl OutputGuard {
    /// Adds another policy's declaration: the checks of both, the longer hold.
    pub fn merge(&mut self, other: OutputGuard) {
        self.block.extend(other.block);
        self.redact.extend(other.redact);
        if !other.replacement.is_empty() {
            self.replacement = other.replacement;
        }
        self.hold = self.hold.max(other.hold);
    }

    /// The first block check that matches `text`.
    pub fn blocked_by(&self, text: &str) -> Option<String> {
        self.block
            .iter()
            .find(|c| !c.matches(text).is_empty())
            .map(Check::name)
    }

    /// As [`Self::blocked_by`], for text that may go on: a match that reaches the end of
    /// `text` is not settled (`Internal-only` may be the start of `Internal-onlyness`), so it
    /// counts only once more text follows it, or the text ends.
    fn blocked_by_settled(&self, text: &str) -> Option<String> {
        self.block
            .iter()
            .find(|c| c.matches(text).iter().any(|(_, e)| *e < text.len()))
            .map(Check::name)
    }

    /// The redactions in `text`: merged byte ranges, in order.
    pub fn redactions(&self, text: &str) -> Vec<(usize, usize)> {
        let mut all: Vec<(usize, usize)> =
            self.redact.iter().flat_map(|c| c.matches(text)).collect();
        all.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(all.len());
        for (s, e) in all {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// `text` with `ranges` replaced.
    pub fn redact(&self, text: &str, ranges: &[(usize, usize)]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (s, e) in ranges {
            out.push_str(&text[at..*s]);
            out.push_str(&self.replacement);
            at = *e;
        }
        out.push_str(&text[at..]);
        out
    }

    /// A whole text (a JSON reply, or a stream's last part).
    pub fn check(&self, text: &str) -> Verdict {
        if let Some(by) = self.blocked_by(text) {
            return Verdict::Blocked(by);
        }
        let ranges = self.redactions(text);
        if ranges.is_empty() {
            Verdict::Pass(text.to_string())
        } else {
            Verdict::Pass(self.redact(text, &ranges))
        }
    }
}

/// A stream's text for one choice, checked as it arrives: text goes out only once `hold`
/// characters have arrived after it, so a match up to `hold` characters long is whole in the
/// held text when it is checked, and is blocked or redacted before any of it is released.
pub struct StreamCheck {
    guard: Arc<OutputGuard>,
    pending: String,
}

impl StreamCheck {
    pub fn new(guard: Arc<OutputGuard>) -> Self {
        StreamCheck {
            guard,
            pending: String::new(),
        }
    }

    /// Takes the next piece of text; returns what can be released now.
    pub fn push(&mut self, text: &str) -> Verdict {
        self.pending.push_str(text);
        // Nothing goes out until `RELEASE_STEP` characters past the hold have gathered, so the
        // checks run once per step rather than once per chunk (a chunk is often one word); a
        // match in held text is found when the text around it is released, or at the end.
        if self.pending.chars().count() <= self.guard.hold + RELEASE_STEP {
            return Verdict::Pass(String::new());
        }
        if let Some(by) = self.guard.blocked_by_settled(&self.pending) {
            return Verdict::Blocked(by);
        }
        // Release up to `hold` characters before the end...
        let Some((boundary, _)) = self.pending.char_indices().rev().nth(self.guard.hold) else {
            return Verdict::Pass(String::new());
        };
        let mut cut = boundary
            + self.pending[boundary..]
                .chars()
                .next()
                .map_or(0, char::len_utf8);
        if self.guard.hold == 0 {
            cut = self.pending.len();
        }
        // ...but never part of a redaction: one that crosses the cut holds the cut back. Held
        // text is bounded: past `MAX_HELD_BYTES` (a pattern that keeps matching, `.*`), the
        // match goes out whole and redacted instead of holding everything behind it.
        let over = self.pending.len() > MAX_HELD_BYTES;
        let ranges = self.guard.redactions(&self.pending);
        for (s, e) in &ranges {
            if *s < cut && *e > cut {
                cut = if over { *e } else { *s };
            }
        }
        let released: Vec<(usize, usize)> = ranges.into_iter().filter(|(_, e)| *e <= cut).collect();
        let head = self.guard.redact(&self.pending[..cut], &released);
        self.pending.drain(..cut);
        Verdict::Pass(head)
    }

    /// The stream ended: the held text, checked whole.
    pub fn finish(&mut self) -> Verdict {
        let rest = std::mem::take(&mut self.pending);
        self.guard.check(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(block: Vec<Check>, redact: Vec<Check>, hold: usize) -> Arc<OutputGuard> {
        Arc::new(OutputGuard {
            block,
            redact,
            replacement: DEFAULT_REPLACEMENT.into(),
            hold,
        })
    }

    #[test]
    fn builtins_find_what_they_name() {
        assert_eq!(
            Check::Email
                .matches("write to ann.lee@mail.example.com now")
                .len(),
            1
        );
        assert!(Check::Card.matches("card 4111 1111 1111 1111 ok").len() == 1);
        assert!(
            Check::Card.matches("order 4111 1111 1111 1112").is_empty(),
            "fails the Luhn check"
        );
        assert_eq!(Check::Phone.matches("call +1 415-555-0100 today").len(), 1);
        assert!(Check::Phone.matches("in 2024 we sold 12").is_empty());
    }

    #[test]
    fn a_whole_text_is_blocked_or_redacted() {
        let g = guard(vec![], vec![Check::Email, Check::Card], 8);
        assert_eq!(
            g.check("mail a@b.io, pay 4111-1111-1111-1111."),
            Verdict::Pass("mail [redacted], pay [redacted].".into())
        );
        let g = guard(vec![Check::Card], vec![], 8);
        assert_eq!(
            g.check("pay 4111111111111111"),
            Verdict::Blocked("card".into())
        );
    }

    /// Feeds `text` in pieces of `step` characters; what came out, and whether it was blocked.
    fn stream(g: &Arc<OutputGuard>, text: &str, step: usize) -> (String, bool) {
        let mut check = StreamCheck::new(g.clone());
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        for piece in chars.chunks(step) {
            match check.push(&piece.iter().collect::<String>()) {
                Verdict::Pass(t) => out.push_str(&t),
                Verdict::Blocked(_) => return (out, true),
            }
        }
        match check.finish() {
            Verdict::Pass(t) => out.push_str(&t),
            Verdict::Blocked(_) => return (out, true),
        }
        (out, false)
    }

    #[test]
    fn a_pattern_that_keeps_matching_holds_back_a_bounded_amount() {
        let everything = Check::Pattern(
            crate::policy::library::Library::default()
                .regex("[a-z ]+")
                .unwrap(),
        );
        let g = guard(vec![], vec![everything], 8);
        let mut check = StreamCheck::new(g);
        let mut released = String::new();
        for _ in 0..8_000 {
            match check.push("abcdefgh ") {
                Verdict::Pass(t) => released.push_str(&t),
                Verdict::Blocked(_) => panic!("nothing blocks"),
            }
            assert!(check.pending.len() <= MAX_HELD_BYTES + 64);
        }
        assert!(released.contains(DEFAULT_REPLACEMENT), "released, redacted");
        assert!(
            !released.contains("abc"),
            "never in clear: {}",
            &released[..64]
        );
    }

    #[test]
    fn a_stream_blocks_only_whole_words() {
        let list = DataFile::read_list_for_tests("internal-only\n");
        let g = guard(vec![Check::Words(list)], vec![], 16);
        for step in 1..6 {
            assert_eq!(
                stream(&g, "Internal-onlyness is fine", step),
                ("Internal-onlyness is fine".into(), false)
            );
            assert!(
                stream(&g, "it is internal-only, sorry", step).1,
                "step {step}"
            );
        }
    }

    #[test]
    fn a_stream_never_releases_part_of_a_match_shorter_than_the_hold() {
        let text =
            "Your card 4111 1111 1111 1111 is on file; mail ann@example.com. Done — ünïcode ✓";
        let g = guard(vec![], vec![Check::Card, Check::Email], 24);
        for step in 1..12 {
            let (out, blocked) = stream(&g, text, step);
            assert!(!blocked);
            assert_eq!(
                out, "Your card [redacted] is on file; mail [redacted]. Done — ünïcode ✓",
                "step {step}"
            );
        }
        let g = guard(vec![Check::Card], vec![], 24);
        for step in 1..12 {
            let (out, blocked) = stream(&g, text, step);
            assert!(blocked, "step {step}");
            assert!(!out.contains("4111"), "nothing of the card got out: {out}");
        }
    }
}
