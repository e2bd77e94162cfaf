//! The `Date` header's value (RFC 9110 5.6.7 IMF-fixdate, e.g.
//! `Sun, 06 Nov 1994 08:49:37 GMT`), formatted at most once a second per
//! thread, as nginx caches its time strings.
//!
//! Hand-formatted rather than with the `httpdate` crate: the format is fixed
//! width, so it fits a `[u8; 29]` written in place with no `String` (hyper's
//! `httpdate` goes through `Display`), and the calendar arithmetic is twenty
//! lines with tests against known dates. Pure: the time comes in as an
//! argument; this module never reads the clock.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of an IMF-fixdate.
pub(super) const LEN: usize = 29;

/// An IMF-fixdate, ready to copy into a response head.
pub(super) type HttpDate = [u8; LEN];

/// The latest second formattable with a four-digit year: 9999-12-31 23:59:59.
const LAST_SECOND: u64 = 253_402_300_799;

thread_local! {
    /// The last second formatted on this thread and its text. A server
    /// thread answers many requests a second; each second is formatted once.
    static CACHE: Cell<(u64, HttpDate)> = const { Cell::new((u64::MAX, [0; LEN])) };
}

/// The `Date` value for `wall`, from the cache when `wall` is in the second
/// last formatted on this thread.
pub(super) fn http_date(wall: SystemTime) -> HttpDate {
    let second = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
        .min(LAST_SECOND);
    CACHE.with(|cache| {
        let (cached, text) = cache.get();
        if cached == second {
            return text;
        }
        let text = format(second);
        cache.set((second, text));
        text
    })
}

/// Formats the second `since_epoch` (at most [`LAST_SECOND`]).
fn format(since_epoch: u64) -> HttpDate {
    const WEEKDAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = since_epoch / 86_400;
    let in_day = since_epoch % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday.
    text[..3].copy_from_slice(WEEKDAYS[(days % 7) as usize]);
    two_digits(&mut text[5..7], day);
    text[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two_digits(&mut text[12..14], year / 100);
    two_digits(&mut text[14..16], year % 100);
    two_digits(&mut text[17..19], in_day / 3600);
    two_digits(&mut text[20..22], in_day / 60 % 60);
    two_digits(&mut text[23..25], in_day % 60);
    text
}

/// Writes `n` (below 100) as two ASCII digits.
fn two_digits(slot: &mut [u8], n: u64) {
    slot[0] = b'0' + (n / 10) as u8;
    slot[1] = b'0' + (n % 10) as u8;
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01, by
/// Howard Hinnant's `civil_from_days` (eras of 400 years starting in March,
/// so the leap day is the last day of its year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> String {
        String::from_utf8(http_date(UNIX_EPOCH + Duration::from_secs(seconds)).to_vec()).unwrap()
    }

    #[test]
    fn formats_known_dates() {
        for (seconds, text) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"), // RFC 9110's example
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"), // a 400-year leap day
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"), // 2100 has no leap day
            (LAST_SECOND, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (1 << 40, "Fri, 31 Dec 9999 23:59:59 GMT"), // year 36812
        ] {
            assert_eq!(at(seconds), text);
        }
    }

    #[test]
    fn the_cache_follows_the_second_and_ignores_its_fraction() {
        let second = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let later = second + Duration::from_millis(999);
        assert_eq!(http_date(second), http_date(later));
        assert_eq!(at(784_111_778), "Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        // Before the epoch: the epoch (a broken clock must not panic).
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(5)),
            *b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
