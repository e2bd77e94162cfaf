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

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

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

/// One `[text](target)` found in a markdown file.
#[derive(Debug)]
struct Link {
    line: usize,
    text: String,
    target: String,
}

/// The inline links and images of a markdown text, outside code blocks and
/// code spans.
fn links(markdown: &str) -> Vec<Link> {
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
fn line_anchor(anchor: &str) -> Option<(usize, usize)> {
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

fn headings(markdown: &str) -> BTreeSet<String> {
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
fn normalize(path: &Path) -> PathBuf {
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
fn named(text: &str) -> Option<String> {
    let start = text.find('`')?;
    let rest = &text[start..];
    let ticks = rest.chars().take_while(|&c| c == '`').count();
    let inner = &rest[ticks..];
    let end = inner.find(&"`".repeat(ticks))?;
    Some(inner[..end].trim().replace("\\|", "|"))
}

/// Keywords that declare a named item.
const ITEM_KEYWORDS: &[&str] = &[
    "fn", "struct", "enum", "const", "static", "trait", "mod", "type", "union", "impl",
];

fn is_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a link's backticked text asks the lines to hold.
#[derive(Debug)]
enum Named<'a> {
    /// An item: `Type::name` (owner `Type`), `fn name`, `struct Name`,
    /// `impl Name`, ...
    Item {
        keyword: Option<&'a str>,
        owner: Option<&'a str>,
        name: &'a str,
    },
    /// A word or a snippet of code, on the range's first line.
    Text(&'a str),
}

fn classify(named: &str) -> Named<'_> {
    if let Some((keyword, name)) = named.split_once(' ')
        && ITEM_KEYWORDS.contains(&keyword)
        && is_identifier(name)
    {
        return Named::Item {
            keyword: Some(keyword),
            owner: None,
            name,
        };
    }
    let segments: Vec<&str> = named.split("::").collect();
    if segments.len() >= 2 && segments.iter().all(|s| is_identifier(s)) {
        return Named::Item {
            keyword: None,
            owner: Some(segments[segments.len() - 2]),
            name: segments[segments.len() - 1],
        };
    }
    Named::Text(named)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// True if `line` declares `name`: `keyword name` (any item keyword when
/// `keyword` is `None`, or an enum variant), or `impl ... name`.
fn declares(line: &str, keyword: Option<&str>, name: &str) -> bool {
    let words = words(line);
    if keyword == Some("impl") {
        return words.first() == Some(&"impl") && words.contains(&name);
    }
    let by_keyword = words.windows(2).any(|w| {
        w[1] == name && keyword.map_or(ITEM_KEYWORDS.contains(&w[0]), |k| w[0] == k)
    });
    let variant = keyword.is_none()
        && line.trim_start().strip_prefix(name).is_some_and(|after| {
            after.is_empty() || after.starts_with([',', '(', ' ', '{'])
        });
    by_keyword || variant
}

/// The index of the last line of the item declared at `decl`: the `}` at
/// its indentation, or the line ending it with `;` or `,` (a `const`, a
/// tuple struct, a variant).
fn item_end(lines: &[&str], decl: usize) -> usize {
    let depth = indent(lines[decl]);
    let (mut parens, mut braced) = (0i32, false);
    for (i, line) in lines.iter().enumerate().skip(decl) {
        let trimmed = line.trim();
        if i > decl && indent(line) == depth && trimmed.starts_with('}') {
            return i;
        }
        for c in trimmed.chars() {
            match c {
                '(' | '[' => parens += 1,
                ')' | ']' => parens -= 1,
                _ => {}
            }
        }
        if parens > 0 {
            continue;
        }
        if trimmed.ends_with('{') {
            braced = true;
        } else if !braced && (trimmed.ends_with(';') || trimmed.ends_with(',')) {
            return i;
        } else if i == decl && trimmed.ends_with('}') {
            return i; // `fn close(&mut self) {}` on one line
        }
    }
    lines.len() - 1
}

/// Comments, doc comments and attributes: what may stand above an item.
fn is_preamble(line: &str) -> bool {
    let trimmed = line.trim_start();
    (trimmed.starts_with("//") && !trimmed.starts_with("//!")) || trimmed.starts_with("#[")
}

/// Why the lines `first..=last` (1-based) of `code` do not hold what the
/// link names, or `None` if they do.
fn check_lines(code: &str, first: usize, last: usize, named: &str) -> Option<String> {
    let lines: Vec<&str> = code.lines().collect();
    if first == 0 || first > last || last > lines.len() {
        return Some(format!(
            "lines {first}-{last} do not exist (the file has {} lines)",
            lines.len()
        ));
    }
    let (from, to) = (first - 1, last - 1);
    let (keyword, owner, name) = match classify(named) {
        Named::Text(text) => {
            return (!lines[from].contains(text)).then(|| {
                format!(
                    "line {first} does not contain `{text}`: it reads {:?}",
                    lines[from].trim()
                )
            });
        }
        Named::Item {
            keyword,
            owner,
            name,
        } => (keyword, owner, name),
    };
    let Some(decl) = (from..=to).find(|&i| !is_preamble(lines[i])) else {
        return Some(format!("lines {first}-{last} hold only comments"));
    };
    if !declares(lines[decl], keyword, name) {
        return Some(format!(
            "line {} should declare `{name}` but reads {:?}",
            decl + 1,
            lines[decl].trim()
        ));
    }
    if decl > from && from > 0 && is_preamble(lines[from - 1]) {
        let doc = (0..from).rev().take_while(|&i| is_preamble(lines[i])).last();
        return Some(format!(
            "the range starts inside the comment above `{name}`: start at line {} or {}",
            doc.unwrap_or(from) + 1,
            decl + 1
        ));
    }
    let end = item_end(&lines, decl);
    if end != to {
        return Some(format!(
            "`{name}` (line {}) ends on line {}, the range on line {last}",
            decl + 1,
            end + 1
        ));
    }
    // `Type::name`: the item must be inside `impl ... Type` (or `enum Type`).
    let owner = owner.filter(|o| o.starts_with(|c: char| c.is_ascii_uppercase()))?;
    let parent = (0..decl)
        .rev()
        .find(|&i| !lines[i].trim().is_empty() && indent(lines[i]) < indent(lines[decl]));
    match parent {
        Some(p) if words(lines[p]).contains(&owner) => None,
        Some(p) => Some(format!(
            "`{name}` (line {}) is inside {:?} (line {}), not `{owner}`",
            decl + 1,
            lines[p].trim(),
            p + 1
        )),
        None => Some(format!(
            "`{name}` (line {}) is not inside `{owner}`",
            decl + 1
        )),
    }
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
        let place = format!("{}:{}: [{}]({})", shown(markdown_path), link.line, link.text, target);
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
                problems.push(format!("{place}: {} has no heading #{anchor}", shown(&path)));
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
    assert_eq!(
        rules,
        (1..=12).collect(),
        "DESIGN.md's rules are numbered 1 to 12"
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
    assert!(count > 20, "found only {count} rule citations: is the search broken?");
    assert!(
        missing.is_empty(),
        "rules cited but not in docs/DESIGN.md (numbered 1 to 12):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_checks_catch_what_they_are_for() {
    let code = "\
impl Loop {
    /// Doc.
    fn admit(&mut self) {
        body();
    }

    fn close(&mut self) {}
}
";
    assert_eq!(check_lines(code, 2, 5, "Loop::admit"), None);
    assert_eq!(check_lines(code, 3, 5, "fn admit"), None, "the doc may be left out");
    assert!(check_lines(code, 3, 6, "Loop::admit").is_some(), "one line too many");
    assert!(check_lines(code, 1, 5, "Loop::admit").is_some(), "starts before");
    assert!(check_lines(code, 7, 7, "Loop::admit").is_some(), "the neighbour");
    assert!(check_lines(code, 2, 5, "Conn::admit").is_some(), "another type's");
    assert_eq!(check_lines(code, 7, 7, "Loop::close"), None);
    assert_eq!(check_lines(code, 4, 4, "body()"), None);
    assert!(check_lines(code, 5, 5, "body()").is_some());
    assert!(check_lines(code, 9, 12, "body()").is_some(), "past the end");
    assert_eq!(
        cited_rules("rule 7; Rule 2: x; rules 11 and 12; rules 4, 5 and 6; mio's rule"),
        [7, 2, 11, 12, 4, 5, 6].map(|n| (1, n))
    );
    let found = links("[`a`](x.rs#L1) `[no](link)` [b](y.md)\n```\n[c](z)\n```\n");
    let targets: Vec<&str> = found.iter().map(|l| l.target.as_str()).collect();
    assert_eq!(targets, ["x.rs#L1", "y.md"]);
}
