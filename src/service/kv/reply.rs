//! RESP replies, in the protocol the connection chose (`HELLO 2|3`):
//! RESP2 by default; RESP3 has nulls, maps, sets and doubles of its own,
//! written as Redis 7 writes them.
//!
//! Everything is appended to the connection's output buffer; numbers are
//! formatted on the stack (itoa), so a reply allocates nothing.

/// The output buffer, and the protocol version to write it in.
#[derive(Debug)]
pub(crate) struct Reply<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    /// True after `HELLO 3`.
    pub(crate) resp3: bool,
}

impl Reply<'_> {
    /// `+OK`.
    pub(crate) fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// A status line, `+<text>`.
    pub(crate) fn simple(&mut self, text: &str) {
        self.out.push(b'+');
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error line; `text` starts with its code (`ERR ...`, `WRONGTYPE ...`).
    pub(crate) fn error(&mut self, text: &str) {
        self.out.push(b'-');
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// `WRONGTYPE`, Redis' text.
    pub(crate) fn wrong_type(&mut self) {
        self.error("WRONGTYPE Operation against a key holding the wrong kind of value");
    }

    /// `ERR syntax error`.
    pub(crate) fn syntax(&mut self) {
        self.error("ERR syntax error");
    }

    /// `ERR value is not an integer or out of range`.
    pub(crate) fn not_integer(&mut self) {
        self.error("ERR value is not an integer or out of range");
    }

    /// `ERR value is not a valid float`.
    pub(crate) fn not_float(&mut self) {
        self.error("ERR value is not a valid float");
    }

    /// An error made of parts, some of them client bytes (made printable).
    pub(crate) fn error_parts(&mut self, parts: &[&[u8]]) {
        self.out.push(b'-');
        for part in parts {
            printable(part, self.out);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// An integer.
    pub(crate) fn int(&mut self, n: i64) {
        self.line(b':', n);
    }

    /// A bulk string.
    pub(crate) fn bulk(&mut self, value: &[u8]) {
        self.line(b'$', value.len() as i64);
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
    }

    /// An integer as a bulk string (`INCRBYFLOAT`-like replies, `CONFIG`).
    pub(crate) fn bulk_int(&mut self, n: i64) {
        self.bulk(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A missing value: `$-1` (RESP2) or `_` (RESP3).
    pub(crate) fn null(&mut self) {
        self.out
            .extend_from_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    /// A missing array: `*-1` (RESP2) or `_` (RESP3).
    pub(crate) fn null_array(&mut self) {
        self.out
            .extend_from_slice(if self.resp3 { b"_\r\n" } else { b"*-1\r\n" });
    }

    /// Out-of-band data of `len` items (pub/sub): a RESP3 push frame, or a
    /// plain array in RESP2; the items follow.
    pub(crate) fn push(&mut self, len: usize) {
        self.line(if self.resp3 { b'>' } else { b'*' }, len as i64);
    }

    /// An array of `len` items; the items follow.
    pub(crate) fn array(&mut self, len: usize) {
        self.line(b'*', len as i64);
    }

    /// A map of `len` pairs (RESP3), or a flat array of `2 * len` (RESP2).
    pub(crate) fn map(&mut self, len: usize) {
        if self.resp3 {
            self.line(b'%', len as i64);
        } else {
            self.line(b'*', 2 * len as i64);
        }
    }

    /// A set of `len` members (RESP3), or an array (RESP2).
    pub(crate) fn set(&mut self, len: usize) {
        self.line(if self.resp3 { b'~' } else { b'*' }, len as i64);
    }

    /// A double: `,<d>` in RESP3, a bulk string in RESP2, as `%.17g`.
    pub(crate) fn double(&mut self, d: f64) {
        let mut text = [0u8; 32];
        let text = format_double(d, &mut text);
        if self.resp3 {
            self.out.push(b',');
            self.out.extend_from_slice(text);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }

    /// A boolean-ish integer 0/1.
    pub(crate) fn bool(&mut self, b: bool) {
        self.int(i64::from(b));
    }

    fn line(&mut self, kind: u8, n: i64) {
        self.out.push(kind);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Copies client bytes into an error line: at most 128 bytes, CR and LF
/// made spaces (they would end the line early), as Redis does.
pub(crate) fn printable(word: &[u8], out: &mut Vec<u8>) {
    out.extend(word.iter().take(128).map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
}

/// Formats `d` as C's `%.17g` (Redis' double replies) into `buf`, on the
/// stack: no allocation per reply.
pub(crate) fn format_double(d: f64, buf: &mut [u8; 32]) -> &[u8] {
    use std::io::Write;
    let mut sci = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if d.is_infinite() {
        let _ = cursor.write_all(if d > 0.0 { b"inf" } else { b"-inf" });
    } else if d.is_nan() {
        let _ = cursor.write_all(b"nan");
    } else if d == 0.0 {
        let _ = cursor.write_all(if d.is_sign_negative() { b"-0" } else { b"0" });
    } else {
        // 17 significant digits, then %g's choice of notation.
        let mut sci_cursor = std::io::Cursor::new(&mut sci[..]);
        let _ = write!(sci_cursor, "{d:.16e}");
        let len = sci_cursor.position() as usize;
        let sci = std::str::from_utf8(&sci[..len]).expect("ASCII");
        let (mantissa, exp) = sci.split_once('e').expect("an exponent");
        let exp: i32 = exp.parse().expect("a number");
        if (-4..17).contains(&exp) {
            let mut fixed = [0u8; 32];
            let mut fixed_cursor = std::io::Cursor::new(&mut fixed[..]);
            let _ = write!(
                fixed_cursor,
                "{d:.prec$}",
                prec = (16 - exp).max(0) as usize
            );
            let len = fixed_cursor.position() as usize;
            let fixed = std::str::from_utf8(&fixed[..len]).expect("ASCII");
            let _ = cursor.write_all(trim_zeros(fixed).as_bytes());
        } else {
            let sign = if exp < 0 { '-' } else { '+' };
            let _ = write!(
                cursor,
                "{}e{sign}{:02}",
                trim_zeros(mantissa),
                exp.unsigned_abs()
            );
        }
    }
    let len = cursor.position() as usize;
    &buf[..len]
}

/// `%g`'s trailing zeros (and a bare point) removed.
fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// Formats `d` as Redis' `INCRBYFLOAT` does (`%.17Lf`, trailing zeros
/// removed: never an exponent). Redis computes in `long double`; this is
/// `f64`, so a result can differ in its last digits.
pub(crate) fn format_human(d: f64) -> String {
    let fixed = format!("{d:.17}");
    trim_zeros(&fixed).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_format_as_percent_17g() {
        let mut buf = [0; 32];
        for (d, want) in [
            (1.1, "1.1000000000000001"),
            (1.0, "1"),
            (2.5, "2.5"),
            (-3.0, "-3"),
            (1e17, "1e+17"),
            (1.5e-5, "1.5e-05"),
            (0.1, "0.10000000000000001"),
            (0.0001, "0.0001"),
            (123456789.0, "123456789"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(format_double(d, &mut buf), want.as_bytes(), "{d}");
        }
        assert_eq!(format_human(3.5), "3.5");
        assert_eq!(format_human(10.0), "10");
    }
}
