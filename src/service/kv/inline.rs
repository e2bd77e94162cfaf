//! Inline requests (`SET k "a b"\r\n`, typed in `nc` or sent by
//! `redis-benchmark`'s PING_INLINE): words split and unquoted exactly as
//! Redis' `sdssplitargs` does.

use std::ops::Range;

/// Splits an inline line into words as Redis' `sdssplitargs`: blanks
/// separate words; `"..."` understands `\n \r \t \b \a \\ \"` and `\xHH`;
/// `'...'` only `\'`; a closing quote must be followed by a blank or the
/// end. The words go into `out`, their ranges into `args`.
pub(crate) fn split_inline(
    line: &[u8],
    out: &mut Vec<u8>,
    args: &mut Vec<Range<usize>>,
) -> Result<(), &'static str> {
    const UNBALANCED: &str = "unbalanced quotes in request";
    let blank = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0);
    let mut i = 0;
    loop {
        while i < line.len() && blank(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let start = out.len();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let Some(&c) = line.get(i) else {
                if in_double || in_single {
                    return Err(UNBALANCED);
                }
                break;
            };
            if in_double {
                match c {
                    b'\\'
                        if line.get(i + 1) == Some(&b'x')
                            && line.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
                            && line.get(i + 3).is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        let hex = |b: u8| (b as char).to_digit(16).expect("hex digit") as u8;
                        out.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                        i += 3;
                    }
                    b'\\' if i + 1 < line.len() => {
                        i += 1;
                        out.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    b'"' => {
                        if line.get(i + 1).is_some_and(|&b| !blank(b)) {
                            return Err(UNBALANCED);
                        }
                        i += 1;
                        break; // the closing quote ends the word
                    }
                    _ => out.push(c),
                }
            } else if in_single {
                match c {
                    b'\\' if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        out.push(b'\'');
                    }
                    b'\'' => {
                        if line.get(i + 1).is_some_and(|&b| !blank(b)) {
                            return Err(UNBALANCED);
                        }
                        i += 1;
                        break;
                    }
                    _ => out.push(c),
                }
            } else {
                match c {
                    _ if blank(c) => break,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => out.push(c),
                }
            }
            i += 1;
        }
        args.push(start..out.len());
    }
}
