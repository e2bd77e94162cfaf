//! Finding links in markdown: inline links and images outside code blocks
//! and code spans, their anchors, and the headings an anchor may name.
//! Text only: this file never opens a file.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// One `[text](target)` found in a markdown file.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) line: usize,
    pub(crate) text: String,
    pub(crate) target: String,
}

/// The inline links and images of a markdown text, outside code blocks and
/// code spans.
pub(crate) fn links(markdown: &str) -> Vec<Link> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut at = 0;
        while at < chars.len() {
            match chars[at] {
                '`' => at = skip_code_span(&chars, at),
                '[' => match link_at(&chars, at) {
                    Some((text, target, end)) => {
                        found.push(Link {
                            line: i + 1,
                            text,
                            target,
                        });
                        at = end;
                    }
                    None => at += 1,
                },
                _ => at += 1,
            }
        }
    }
    found
}

/// The index just past the code span opening at `at` (or past the lone backtick).
fn skip_code_span(chars: &[char], at: usize) -> usize {
    let ticks = chars[at..].iter().take_while(|&&c| c == '`').count();
    let mut i = at + ticks;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        if run == ticks {
            return i + run;
        }
        i += run.max(1);
    }
    at + ticks
}

/// The link whose `[` is at `at`: (text, target, index past its `)`).
fn link_at(chars: &[char], at: usize) -> Option<(String, String, usize)> {
    let mut depth = 0;
    let mut i = at;
    while i < chars.len() {
        match chars[i] {
            '`' => {
                i = skip_code_span(chars, i);
                continue;
            }
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if i >= chars.len() || chars.get(i + 1) != Some(&'(') {
        return None;
    }
    let close = i + 2 + chars[i + 2..].iter().position(|&c| c == ')')?;
    let text: String = chars[at + 1..i].iter().collect();
    let target: String = chars[i + 2..close].iter().collect();
    Some((text, target.trim().to_string(), close + 1))
}

/// `#L12` or `#L12-L30` as (12, 30); `None` if the anchor is not a line anchor.
pub(crate) fn line_anchor(anchor: &str) -> Option<(usize, usize)> {
    let (first, last) = match anchor.split_once('-') {
        Some((first, last)) => (first, last),
        None => (anchor, anchor),
    };
    let first: usize = first.strip_prefix('L')?.parse().ok()?;
    let last: usize = last.strip_prefix('L')?.parse().ok()?;
    Some((first, last))
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// become hyphens.
fn heading_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

pub(crate) fn headings(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut slugs = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            slugs.insert(heading_slug(line.trim_start_matches('#')));
        }
    }
    slugs
}

/// `a/../b/./c` as `b/c`, without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The first backticked span of a link's text (a table's `\|` read as `|`).
pub(crate) fn named(text: &str) -> Option<String> {
    let start = text.find('`')?;
    let rest = &text[start..];
    let ticks = rest.chars().take_while(|&c| c == '`').count();
    let inner = &rest[ticks..];
    let end = inner.find(&"`".repeat(ticks))?;
    Some(inner[..end].trim().replace("\\|", "|"))
}

#[test]
fn links_outside_code_are_found() {
    let found = links("[`a`](x.rs#L1) `[no](link)` [b](y.md)\n```\n[c](z)\n```\n");
    let targets: Vec<&str> = found.iter().map(|l| l.target.as_str()).collect();
    assert_eq!(targets, ["x.rs#L1", "y.md"]);
    assert_eq!(line_anchor("L3-L9"), Some((3, 9)));
    assert_eq!(line_anchor("L3-9"), None, "GitHub's form is #L3-L9");
    assert_eq!(
        named("see `Loop::admit` here").as_deref(),
        Some("Loop::admit")
    );
}
