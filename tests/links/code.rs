//! Whether the lines a link points at hold what its text names: an item
//! (exactly its lines, doc comment included or not) or a snippet (on the
//! first line). Text only: this file never opens a file.

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
    let by_keyword = words
        .windows(2)
        .any(|w| w[1] == name && keyword.map_or(ITEM_KEYWORDS.contains(&w[0]), |k| w[0] == k));
    let variant = keyword.is_none()
        && line
            .trim_start()
            .strip_prefix(name)
            .is_some_and(|after| after.is_empty() || after.starts_with([',', '(', ' ', '{']));
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
pub(crate) fn check_lines(code: &str, first: usize, last: usize, named: &str) -> Option<String> {
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
            if lines[from].contains(text) {
                return None;
            }
            let holding: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].contains(text))
                .collect();
            let now = match holding[..] {
                [] => "no line of the file does".to_string(),
                [i] => format!("line {} does", i + 1),
                _ => format!("{} lines do", holding.len()),
            };
            return Some(format!(
                "line {first} does not contain `{text}` (it reads {:?}); {now}",
                lines[from].trim()
            ));
        }
        Named::Item {
            keyword,
            owner,
            name,
        } => (keyword, owner, name),
    };
    let problem = check_item(&lines, from, to, keyword, owner, name)?;
    Some(match locate(&lines, keyword, owner, name) {
        Some((start, end)) => format!("{problem}; it is at #L{}-L{}", start + 1, end + 1),
        None => format!("{problem}; the file does not declare it"),
    })
}

/// Why `lines[from..=to]` is not exactly the item, or `None` if it is.
fn check_item(
    lines: &[&str],
    from: usize,
    to: usize,
    keyword: Option<&str>,
    owner: Option<&str>,
    name: &str,
) -> Option<String> {
    let Some(decl) = (from..=to).find(|&i| !is_preamble(lines[i])) else {
        return Some(format!("lines {}-{} hold only comments", from + 1, to + 1));
    };
    if !declares(lines[decl], keyword, name) {
        return Some(format!(
            "line {} should declare `{name}` but reads {:?}",
            decl + 1,
            lines[decl].trim()
        ));
    }
    if decl > from && from > 0 && is_preamble(lines[from - 1]) {
        return Some(format!(
            "the range starts inside the comment above `{name}`"
        ));
    }
    let end = item_end(lines, decl);
    if end != to {
        return Some(format!(
            "`{name}` (line {}) ends on line {}, the range on line {}",
            decl + 1,
            end + 1,
            to + 1
        ));
    }
    owner_problem(lines, decl, owner?)
}

/// For `Type::name`: why the item declared at `decl` is not inside `impl
/// ... Type` (or `enum Type`, ...), or `None` if it is. A lower-case owner
/// is a module path (`stats::add`) and is not checked.
fn owner_problem(lines: &[&str], decl: usize, owner: &str) -> Option<String> {
    if !owner.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let parent = (0..decl)
        .rev()
        .find(|&i| !lines[i].trim().is_empty() && indent(lines[i]) < indent(lines[decl]));
    match parent {
        Some(p) if words(lines[p]).contains(&owner) => None,
        Some(p) => Some(format!(
            "line {} is inside {:?} (line {}), not `{owner}`",
            decl + 1,
            lines[p].trim(),
            p + 1
        )),
        None => Some(format!("line {} is not inside `{owner}`", decl + 1)),
    }
}

/// Where the item is now: (first line of its comment, last line), 0-based.
fn locate(
    lines: &[&str],
    keyword: Option<&str>,
    owner: Option<&str>,
    name: &str,
) -> Option<(usize, usize)> {
    let decl = (0..lines.len()).find(|&i| {
        !is_preamble(lines[i])
            && declares(lines[i], keyword, name)
            && owner.is_none_or(|o| owner_problem(lines, i, o).is_none())
    })?;
    let start = (0..decl)
        .rev()
        .take_while(|&i| is_preamble(lines[i]))
        .last()
        .unwrap_or(decl);
    Some((start, item_end(lines, decl)))
}

#[test]
fn an_item_link_must_span_exactly_the_item() {
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
    assert_eq!(
        check_lines(code, 3, 5, "fn admit"),
        None,
        "the doc may be left out"
    );
    assert!(
        check_lines(code, 3, 6, "Loop::admit").is_some(),
        "one line too many"
    );
    assert!(
        check_lines(code, 1, 5, "Loop::admit").is_some(),
        "starts before"
    );
    assert!(
        check_lines(code, 7, 7, "Loop::admit").is_some(),
        "the neighbour"
    );
    assert!(
        check_lines(code, 2, 5, "Conn::admit").is_some(),
        "another type's"
    );
    assert_eq!(check_lines(code, 7, 7, "Loop::close"), None);
    assert_eq!(check_lines(code, 4, 4, "body()"), None);
    assert!(check_lines(code, 5, 5, "body()").is_some());
    assert!(check_lines(code, 9, 12, "body()").is_some(), "past the end");
    let moved = check_lines(code, 3, 5, "Loop::close").expect("the wrong item");
    assert!(moved.ends_with("it is at #L7-L7"), "{moved}");
}
