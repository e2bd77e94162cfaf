//! The `put|<name>|<size>` header of `upload`, checked before any byte is
//! written. Pure: it looks at bytes, never at the file system, so a name is
//! safe by its spelling alone (the seed's `../../etc/x` cannot get through).

use super::job::TEMP_PREFIX;

/// The longest header line, without its `\n`: room for `put|`, a 255-byte
/// name, `|` and a 20-digit size, with slack. A longer line gets
/// `error header too long ...` and the connection is closed.
pub const MAX_HEADER: usize = 512;

/// The longest file name in bytes: 255, the usual file-system limit.
pub const MAX_NAME: usize = 255;

/// The header's shape, for error replies.
pub(super) const SHAPE: &str = "expected put|<name>|<size>";

/// A checked header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// A plain file name, safe to join to the upload directory.
    pub name: String,
    /// How many body bytes follow.
    pub size: u64,
}

/// Checks one header line (without its `\n`; a trailing `\r` is ignored).
/// The error is the reason for `error <reason>\n`.
pub(super) fn parse(line: &[u8], max_size: u64) -> Result<Header, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line
        .strip_prefix(b"put|")
        .ok_or_else(|| format!("bad header: {SHAPE}"))?;
    // The size is after the last `|`, so a name may hold a `|` of its own.
    let split = rest
        .iter()
        .rposition(|&b| b == b'|')
        .ok_or_else(|| format!("bad header: {SHAPE}"))?;
    let name = check_name(&rest[..split])?;
    let size = check_size(&rest[split + 1..], max_size)?;
    Ok(Header { name, size })
}

/// A name that stays inside the upload directory: one plain path component,
/// printable, not reserved.
fn check_name(name: &[u8]) -> Result<String, String> {
    if name.is_empty() {
        return Err("bad name: the name is empty".to_owned());
    }
    if name.len() > MAX_NAME {
        return Err(format!("bad name: longer than {MAX_NAME} bytes"));
    }
    let name = std::str::from_utf8(name).map_err(|_| "bad name: not valid UTF-8".to_owned())?;
    if name.contains(['/', '\\']) {
        return Err(
            "bad name: '/' and '\\' are not allowed: send a plain file name, without directories"
                .to_owned(),
        );
    }
    if name.contains("..") {
        return Err("bad name: '..' is not allowed".to_owned());
    }
    if name == "." {
        return Err("bad name: '.' is not a file name".to_owned());
    }
    if name.chars().any(char::is_control) {
        return Err("bad name: control characters (NUL included) are not allowed".to_owned());
    }
    if let Some(c) = name.chars().find(|&c| is_invisible(c)) {
        return Err(format!(
            "bad name: U+{:04X} is an invisible or direction-changing character \
             (bidi override, BOM, zero-width): send a name that reads as it is",
            c as u32
        ));
    }
    if let Some(c) = name.chars().find(|&c| LOOK_ALIKES.contains(&c)) {
        return Err(format!(
            "bad name: U+{:04X} looks like '.', '/' or '\\' and is not allowed: \
             use the ASCII character or another one",
            c as u32
        ));
    }
    if name.starts_with(TEMP_PREFIX) {
        return Err(format!(
            "bad name: names starting with '{TEMP_PREFIX}' are reserved for temporary files"
        ));
    }
    Ok(name.to_owned())
}

/// Characters that show as nothing, or reorder what follows, so a name
/// would not read as what it is (`invoice\u{202E}fdp.exe` shows as
/// `invoiceexe.pdf`): Unicode's format characters (category Cf: bidi
/// embeddings, overrides, isolates and marks, the BOM, zero-width
/// spaces and joiners, invisible operators, tags) and the line and
/// paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' // soft hyphen
        | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{0890}'..='\u{0891}' | '\u{08E2}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
        | '\u{2028}'..='\u{202E}' // separators, bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{206F}' // bidi isolates, deprecated format controls
        | '\u{FEFF}' // BOM, zero-width no-break space
        | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}' // tags
    )
}

/// Characters that look like (or normalize, NFKC, to) `.`, `/` or `\`: a
/// name with them reads as a path (`..／etc／passwd`), and a tool that
/// normalizes names could make it one.
const LOOK_ALIKES: &[char] = &[
    '\u{2024}', // one dot leader (NFKC: '.')
    '\u{2025}', // two dot leader ('..')
    '\u{2026}', // horizontal ellipsis ('...')
    '\u{FE52}', // small full stop ('.')
    '\u{FF0E}', // fullwidth full stop ('.')
    '\u{2044}', // fraction slash
    '\u{2215}', // division slash
    '\u{27CB}', // mathematical rising diagonal
    '\u{29F8}', // big solidus
    '\u{FF0F}', // fullwidth solidus ('/')
    '\u{27CD}', // mathematical falling diagonal
    '\u{29F5}', // reverse solidus operator
    '\u{29F9}', // big reverse solidus
    '\u{FE68}', // small reverse solidus ('\\')
    '\u{FF3C}', // fullwidth reverse solidus ('\\')
];

/// A plain decimal number of bytes, at most `max_size`.
fn check_size(size: &[u8], max_size: u64) -> Result<u64, String> {
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return Err("bad size: expected a decimal number of bytes".to_owned());
    }
    // All digits: parsing fails only on overflow, which is over any limit.
    match std::str::from_utf8(size)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(size) if size <= max_size => Ok(size),
        _ => Err(format!(
            "bad size: over the limit of {max_size} bytes (the server's --max-upload)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64) -> Result<Header, String> {
        Ok(Header {
            name: name.to_owned(),
            size,
        })
    }

    #[test]
    fn good_headers() {
        assert_eq!(parse(b"put|a.txt|10", 10), header("a.txt", 10));
        assert_eq!(parse(b"put|a b|c|0\r", 10), header("a b|c", 0));
        assert_eq!(parse(b"put|.hidden|1", 10), header(".hidden", 1));
        assert_eq!(parse("put|café|1".as_bytes(), 10), header("café", 1));
        let cjk = "报告 2026。草稿.txt";
        assert_eq!(parse(format!("put|{cjk}|1").as_bytes(), 10), header(cjk, 1));
        let longest = "x".repeat(MAX_NAME);
        assert_eq!(
            parse(format!("put|{longest}|1").as_bytes(), 1),
            header(&longest, 1)
        );
    }

    #[test]
    fn refused_headers_say_why() {
        let refused = |line: &[u8]| parse(line, 100).unwrap_err();
        assert_eq!(
            refused(b"get|a|1"),
            "bad header: expected put|<name>|<size>"
        );
        assert_eq!(refused(b"put|a"), "bad header: expected put|<name>|<size>");
        assert_eq!(refused(b""), "bad header: expected put|<name>|<size>");
        assert_eq!(refused(b"put||1"), "bad name: the name is empty");
        assert!(refused(b"put|a/b|1").starts_with("bad name: '/' and '\\'"));
        assert!(refused(b"put|a\\b|1").starts_with("bad name: '/' and '\\'"));
        assert_eq!(refused(b"put|..|1"), "bad name: '..' is not allowed");
        assert_eq!(refused(b"put|a..b|1"), "bad name: '..' is not allowed");
        assert_eq!(refused(b"put|.|1"), "bad name: '.' is not a file name");
        for name in [&b"a\0b"[..], b"a\tb", b"\x1b[31m", b"a\x7f", b"a\rb"] {
            let line = [&b"put|"[..], name, b"|1"].concat();
            assert!(refused(&line).contains("control characters"), "{name:?}");
        }
        for name in [
            "invoice\u{202E}fdp.exe",
            "\u{FEFF}a",
            "a\u{200B}b",
            "a\u{2066}b",
            "a\u{E0041}",
        ] {
            let reason = refused(format!("put|{name}|1").as_bytes());
            assert!(
                reason.contains("invisible or direction-changing"),
                "{name:?}: {reason}"
            );
            let code = format!(
                "U+{:04X}",
                name.chars().find(|&c| is_invisible(c)).unwrap() as u32
            );
            assert!(reason.contains(&code), "{reason}");
        }
        for name in [
            "\u{FF0E}\u{FF0E}",
            "a\u{FF0F}b",
            "a\u{2215}b",
            "a\u{FF3C}b",
            "x\u{2024}\u{2024}",
        ] {
            let reason = refused(format!("put|{name}|1").as_bytes());
            assert!(
                reason.contains("looks like '.', '/' or '\\'"),
                "{name:?}: {reason}"
            );
        }
        assert_eq!(
            refused("put|..\u{FF0F}etc\u{FF0F}passwd|1".as_bytes()),
            "bad name: '..' is not allowed"
        );
        assert_eq!(refused(b"put|\xff|1"), "bad name: not valid UTF-8");
        let long = format!("put|{}|1", "x".repeat(MAX_NAME + 1));
        assert_eq!(refused(long.as_bytes()), "bad name: longer than 255 bytes");
        assert!(refused(b"put|.upload-1-2.part|1").contains("reserved"));
        for size in [&b""[..], b"x", b"-1", b"+1", b" 1", b"1 ", b"1e3", b"0x10"] {
            let line = [&b"put|a|"[..], size].concat();
            assert_eq!(
                refused(&line),
                "bad size: expected a decimal number of bytes"
            );
        }
        let over = "bad size: over the limit of 100 bytes (the server's --max-upload)";
        assert_eq!(refused(b"put|a|101"), over);
        assert_eq!(refused(b"put|a|99999999999999999999999"), over);
    }
}
