//! The lesson's links stay true (issue 11, item 5).
//!
//! Reads every markdown file of the repository (outside `target/`, `.git/`
//! and fuzz corpora) and checks every relative link in it:
//!
//! - the file (or directory) it points at exists;
//! - a `#heading` anchor into a markdown file names one of its headings;
//! - a `#Lx` or `#Lx-Ly` anchor into code names, in backticks in the link
//!   text, what those lines show, and the lines show it:
//!   - an item (`` `Loop::admit` ``, `` `fn admit` ``, `` `struct Conn` ``,
//!     `` `Verdict::Close` ``): the range is exactly the item, from its
//!     first doc-comment or attribute line (or its first line) to its last
//!     line, so a link goes stale the moment the item moves;
//!   - anything else (`` `WouldBlock` ``, `` `conn.pump()` ``): the first
//!     line of the range contains that text.
//!
//! And every "rule N" cited in `src/`, `examples/`, `tests/` or the markdown
//! is one of the numbered rules in `docs/DESIGN.md`.
//!
//! What it may not do: fetch anything (links to other sites are not
//! checked) or depend on a crate: it is plain text processing over std.

#[path = "links/code.rs"]
mod code;
#[path = "links/markdown.rs"]
mod markdown;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use code::check_lines;
use markdown::{headings, line_anchor, links, named, normalize};

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directories never searched: build output, VCS data, fuzz inputs.
fn skipped(dir: &Path) -> bool {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let in_fuzz = dir.components().any(|c| c.as_os_str() == "fuzz");
    matches!(name, "target" | ".git" | "node_modules")
        || (in_fuzz && matches!(name, "corpus" | "artifacts"))
}

/// Every file under `dir` whose name ends with one of `extensions`.
fn files(dir: &Path, extensions: &[&str], found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if !skipped(&path) {
                files(&path, extensions, found);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            found.push(path);
        }
    }
}

fn markdown_files() -> Vec<PathBuf> {
    let mut found = Vec::new();
    files(&root(), &["md"], &mut found);
    found
}

/// `path` relative to the root, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every problem with the links of one markdown file.
fn check_file(markdown_path: &Path) -> Vec<String> {
    let markdown = fs::read_to_string(markdown_path).expect("markdown is UTF-8");
    let dir = markdown_path.parent().expect("a file has a directory");
    let mut problems = Vec::new();
    for link in links(&markdown) {
        let target = link.target.split_whitespace().next().unwrap_or("");
        if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
            continue;
        }
        let place = format!(
            "{}:{}: [{}]({})",
            shown(markdown_path),
            link.line,
            link.text,
            target
        );
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target, None),
        };
        let path = if file.is_empty() {
            markdown_path.to_path_buf()
        } else {
            normalize(&dir.join(file))
        };
        if !path.starts_with(root()) || !path.exists() {
            problems.push(format!("{place}: {} does not exist", shown(&path)));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if path.extension().is_some_and(|e| e == "md") {
            let text = fs::read_to_string(&path).unwrap_or_default();
            if !headings(&text).contains(anchor) {
                problems.push(format!(
                    "{place}: {} has no heading #{anchor}",
                    shown(&path)
                ));
            }
            continue;
        }
        let Some((first, last)) = line_anchor(anchor) else {
            problems.push(format!(
                "{place}: #{anchor} is not a line anchor: write #L12 or #L12-L30"
            ));
            continue;
        };
        let Some(named) = named(&link.text) else {
            problems.push(format!(
                "{place}: the link text names nothing: put the item it shows in backticks, \
                 e.g. [`Loop::admit`](../src/server/evloop.rs#L357-L378) for a whole item, \
                 or [`WouldBlock`](...#L287) for a line that contains that text"
            ));
            continue;
        };
        let Ok(code) = fs::read_to_string(&path) else {
            problems.push(format!("{place}: {} is not a text file", shown(&path)));
            continue;
        };
        if let Some(why) = check_lines(&code, first, last, &named) {
            problems.push(format!("{place}: {why}"));
        }
    }
    problems
}

#[test]
fn every_link_from_markdown_points_at_what_it_names() {
    let markdown = markdown_files();
    assert!(
        markdown.iter().any(|p| p.ends_with("examples/README.md")),
        "the walk to find markdown missed examples/README.md"
    );
    let problems: Vec<String> = markdown.iter().flat_map(|p| check_file(p)).collect();
    assert!(
        problems.is_empty(),
        "{} stale or unnamed links:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The numbers of the rules listed in DESIGN.md's "rules" section.
fn design_rules() -> BTreeSet<u32> {
    let design = fs::read_to_string(root().join("docs/DESIGN.md")).expect("docs/DESIGN.md");
    let section = design
        .split("\n## ")
        .find(|s| s.to_lowercase().contains("rules it must keep"))
        .expect("DESIGN.md has a section of the loop's numbered rules");
    section
        .lines()
        .filter_map(|line| line.split_once(". ").and_then(|(n, _)| n.parse().ok()))
        .collect()
}

/// The rule numbers a text cites: "rule 7", "Rule 2:", "rules 11 and 12",
/// "rules 4, 5 and 6".
fn cited_rules(text: &str) -> Vec<(usize, u32)> {
    let mut cited = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lower = line.to_lowercase();
        let mut rest = lower.as_str();
        while let Some(at) = rest.find("rule") {
            rest = &rest[at + 4..];
            let after = rest.strip_prefix('s').unwrap_or(rest);
            let mut numbers = after;
            loop {
                let digits = numbers.trim_start_matches([' ', ',']);
                let digits = digits.strip_prefix("and ").unwrap_or(digits);
                let len = digits.chars().take_while(char::is_ascii_digit).count();
                if len == 0 || !numbers.starts_with([' ', ',']) {
                    break;
                }
                cited.push((i + 1, digits[..len].parse().expect("digits")));
                numbers = &digits[len..];
            }
        }
    }
    cited
}

#[test]
fn every_cited_rule_is_in_design_md() {
    let rules = design_rules();
    let last = rules.last().copied().unwrap_or(0);
    assert!(
        last >= 12 && rules == (1..=last).collect(),
        "DESIGN.md's rules should be numbered from 1 without a gap: found {rules:?}"
    );
    let mut sources = markdown_files();
    for dir in ["src", "examples", "tests"] {
        files(&root().join(dir), &["rs"], &mut sources);
    }
    let mut missing = Vec::new();
    let mut count = 0;
    for path in &sources {
        let text = fs::read_to_string(path).unwrap_or_default();
        for (line, rule) in cited_rules(&text) {
            count += 1;
            if !rules.contains(&rule) {
                missing.push(format!("{}:{line}: rule {rule}", shown(path)));
            }
        }
    }
    assert!(
        count > 20,
        "found only {count} rule citations: is the search broken?"
    );
    assert!(
        missing.is_empty(),
        "rules cited but not in docs/DESIGN.md (numbered 1 to {last}):\n{}",
        missing.join("\n")
    );
}

#[test]
fn rule_citations_are_read_in_every_form() {
    assert_eq!(
        cited_rules("rule 7; Rule 2: x; rules 11 and 12; rules 4, 5 and 6; mio's rule"),
        [7, 2, 11, 12, 4, 5, 6].map(|n| (1, n))
    );
}
