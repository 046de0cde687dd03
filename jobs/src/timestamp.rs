//! RFC 3339 / ISO 8601 timestamps, as events.md specifies them, to and from epoch milliseconds.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]`, with `T` or a space between date
//! and time, a fraction of 1 to 9 digits (truncated to milliseconds), and no offset meaning UTC
//! (the reference's Spark format). Written: `YYYY-MM-DDTHH:MM:SS.mmmZ`.

use std::cell::Cell;

use sluice_connectors::civil_from_days;

/// Parses a timestamp to milliseconds since the Unix epoch, or `None` if it is not valid.
///
/// Consecutive events mostly fall in the same minute: each thread remembers the last valid
/// timestamp's first 16 bytes (`YYYY-MM-DDTHH:MM`) and the seconds they stand for, and a
/// timestamp that starts with the same bytes only has its seconds, fraction and offset read.
/// Those 16 bytes decide alone whether the date and the hour and minute are valid, so the
/// answer is the same as a full parse's (the test `the_minute_cache_changes_no_answer`).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    thread_local! {
        static LAST_MINUTE: Cell<([u8; 16], i64)> = const { Cell::new(([0; 16], 0)) };
    }
    let b = s.as_bytes();
    let head: &[u8; 16] = b.first_chunk()?;
    let (last, minute_secs) = LAST_MINUTE.with(Cell::get);
    if *head == last {
        return parse_after_minute(b, minute_secs);
    }
    let (minute_secs, ms) = parse_full(b)?;
    LAST_MINUTE.with(|c| c.set((*head, minute_secs)));
    Some(ms)
}

/// The rest of a timestamp whose first 16 bytes (valid) stand for `minute_secs`.
fn parse_after_minute(b: &[u8], minute_secs: i64) -> Option<i64> {
    if b.len() < 19 || b[16] != b':' {
        return None;
    }
    let second = decimal(b, 17, 2)?;
    if second > 60 {
        return None;
    }
    let (millis, offset_minutes) = parse_fraction_and_offset(b)?;
    Some((minute_secs + second.min(59) - offset_minutes * 60) * 1_000 + millis)
}

/// The `len` decimal digits of `b` from `from` on, if they are all there and all digits.
fn decimal(b: &[u8], from: usize, len: usize) -> Option<i64> {
    let mut v = 0i64;
    for &c in b.get(from..from + len)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// A full parse: the seconds the first 16 bytes stand for (date, hour and minute, before the
/// offset), and the timestamp in milliseconds.
fn parse_full(b: &[u8]) -> Option<(i64, i64)> {
    if b.len() < 19 {
        return None;
    }
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (decimal(b, 0, 4)?, decimal(b, 5, 2)?, decimal(b, 8, 2)?);
    let (hour, minute, second) = (decimal(b, 11, 2)?, decimal(b, 14, 2)?, decimal(b, 17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let (millis, offset_minutes) = parse_fraction_and_offset(b)?;
    let minute_secs = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60;
    let secs = minute_secs + second.min(59) - offset_minutes * 60;
    Some((minute_secs, secs * 1_000 + millis))
}

/// What follows the seconds (from byte 19): the milliseconds of an optional fraction, and the
/// offset in minutes (`Z`, `+HH:MM`, `-HH:MM` or nothing).
fn parse_fraction_and_offset(b: &[u8]) -> Option<(i64, i64)> {
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (decimal(b, i + 1, 2)?, decimal(b, i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 60 + m;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    Some((millis, offset_minutes))
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_ms(ms, &mut out);
    out
}

/// Appends the `YYYY-MM-DDTHH:MM:SS.mmmZ` form of `ms` to `out`.
pub fn write_rfc3339_ms(ms: i64, out: &mut String) {
    with_rfc3339_ms(ms, |t| out.push_str(ascii(t)));
}

/// Calls `f` with the `YYYY-MM-DDTHH:MM:SS.mmmZ` form of `ms`, as bytes (ASCII: see [`ascii`]
/// for a `&str`): formatted on the stack for years 0 to 9999 (every valid event's), in a
/// `String` only outside them.
pub(crate) fn with_rfc3339_ms<R>(ms: i64, f: impl FnOnce(&[u8]) -> R) -> R {
    match rfc3339_ms_bytes(ms) {
        Some(buf) => f(&buf),
        None => {
            let mut slow = String::with_capacity(32);
            write_rfc3339_ms_slow(ms, &mut slow);
            f(slow.as_bytes())
        }
    }
}

/// A formatted timestamp as a `&str` (it holds ASCII digits and separators only). The check
/// costs a pass over its bytes: writers of bytes skip it.
pub(crate) fn ascii(t: &[u8]) -> &str {
    std::str::from_utf8(t).unwrap_or_default()
}

/// The `YYYY-MM-DDTHH:MM:SS.mmmZ` form of `ms` as bytes, for years 0 to 9999 (`None` outside:
/// those need more or fewer characters). Written digit by digit: the generator and the sinks
/// format one timestamp per event, and `write!` with padding costs several times more.
///
/// Each thread remembers the minute it formatted last (an event stream's timestamps mostly
/// share it) and, apart from that, the day: a timestamp in the same minute only has its
/// seconds and milliseconds written.
pub(crate) fn rfc3339_ms_bytes(ms: i64) -> Option<[u8; 24]> {
    let (minute, head) = MINUTE.get();
    // Exact: a real minute start and `ms` are both far from the ends of `i64`.
    let into = ms.wrapping_sub(minute);
    if minute != i64::MIN && (0..60_000).contains(&into) {
        let mut b = [0u8; 24];
        b[..16].copy_from_slice(&head);
        b[16..].copy_from_slice(&seconds(into));
        return Some(b);
    }
    // Out of line: merged with the path above, the compiler assembled the result byte by byte.
    in_a_new_minute(ms)
}

thread_local! {
    /// The first millisecond of the last minute [`rfc3339_ms_bytes`] formatted, and its
    /// `YYYY-MM-DDTHH:MM` (`i64::MIN`: none yet; no formattable minute starts there).
    static MINUTE: std::cell::Cell<(i64, [u8; 16])> =
        const { std::cell::Cell::new((i64::MIN, [0; 16])) };
    /// The last day it formatted, and its `YYYY-MM-DD`.
    static DAY: std::cell::Cell<(i64, [u8; 10])> = const { std::cell::Cell::new((i64::MIN, [0; 10])) };
}

/// [`rfc3339_ms_bytes`] for a timestamp outside the thread's last minute, which it becomes.
#[inline(never)]
fn in_a_new_minute(ms: i64) -> Option<[u8; 24]> {
    fn put(b: &mut [u8; 24], at: usize, width: usize, mut v: i64) {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let secs = ms.div_euclid(1_000);
    let sod = secs.rem_euclid(86_400);
    let days = secs.div_euclid(86_400);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let (cached, date) = DAY.get();
    if cached == days {
        b[..10].copy_from_slice(&date);
    } else {
        let (y, m, d) = civil_from_days(days);
        if !(0..=9_999).contains(&y) {
            return None;
        }
        put(&mut b, 0, 4, y);
        put(&mut b, 5, 2, m);
        put(&mut b, 8, 2, d);
        let mut date = [0u8; 10];
        date.copy_from_slice(&b[..10]);
        DAY.set((days, date));
    }
    b[11..13].copy_from_slice(&two_digits(sod / 3_600));
    b[14..16].copy_from_slice(&two_digits(sod / 60 % 60));
    let into = ms.rem_euclid(60_000);
    b[16..].copy_from_slice(&seconds(into));
    let mut head = [0u8; 16];
    head.copy_from_slice(&b[..16]);
    MINUTE.set((ms - into, head));
    Some(b)
}

/// `:SS.mmmZ` of a timestamp `into` ms (0 to 59,999) past its minute.
#[inline]
fn seconds(into: i64) -> [u8; 8] {
    let (s, millis) = (two_digits(into / 1_000), into % 1_000);
    let m = two_digits(millis % 100);
    [
        b':',
        s[0],
        s[1],
        b'.',
        b'0' + (millis / 100) as u8,
        m[0],
        m[1],
        b'Z',
    ]
}

/// `n` (0 to 99) as two decimal digits, from a table (cheaper than dividing digit by digit,
/// once per field of every timestamp and number written).
#[inline]
pub(crate) fn two_digits(n: i64) -> [u8; 2] {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839404142434445464748495051525354555657585960616263\
        646566676869707172737475767778798081828384858687888990919293949596979899";
    let i = n as usize * 2;
    [PAIRS[i], PAIRS[i + 1]]
}

fn write_rfc3339_ms_slow(ms: i64, out: &mut String) {
    use std::fmt::Write;
    let secs = ms.div_euclid(1_000);
    let millis = ms.rem_euclid(1_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3_600,
        sod / 60 % 60,
        sod % 60
    );
}

/// The (year, month, day-of-month) and hour of a timestamp, in UTC.
pub fn utc_parts(ms: i64) -> (i64, i64, i64, i64) {
    let secs = ms.div_euclid(1_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    (y, m, d, secs.rem_euclid(86_400) / 3_600)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minute_cache_changes_no_answer() {
        let suffixes = [
            ":00Z",
            ":07.5Z",
            ":59.999Z",
            ":60Z",
            ":61Z",
            ":0aZ",
            ":00.Z",
            ":00.1234567891Z",
            ":00.123456789Z",
            ":00+01:30",
            ":00-23:59",
            ":00+24:00",
            ":00+01:60",
            ":00+1:00",
            ":00",
            "",
            ":00Zx",
            "x00Z",
            ":00z",
            ":00.999999",
            ":00 Z",
        ];
        for head in [
            "2026-01-05T07:00",
            "2026-01-05 23:59",
            "2024-02-29T00:00",
            "2026-02-29T07:00",
            "2026-01-05T24:00",
            "2026-01-05T07:60",
            "2026-13-05T07:00",
            "2026/01/05T07:00",
            "1969-12-31T23:59",
        ] {
            for warm in [true, false] {
                for suffix in suffixes {
                    if warm {
                        // Whatever the cache holds for this head, if it is valid.
                        parse_rfc3339_ms(&format!("{head}:00Z"));
                    } else {
                        parse_rfc3339_ms("2000-01-01T00:00:00Z").expect("valid");
                    }
                    let s = format!("{head}{suffix}");
                    let full = parse_full(s.as_bytes()).map(|(_, ms)| ms);
                    assert_eq!(parse_rfc3339_ms(&s), full, "{s} (warm: {warm})");
                }
            }
        }
        assert_eq!(
            parse_rfc3339_ms("2026-01-05T07:00:59.999Z").unwrap() + 1,
            parse_rfc3339_ms("2026-01-05T07:01:00Z").unwrap()
        );
    }

    #[test]
    fn parses_the_formats_events_md_allows() {
        let base = parse_rfc3339_ms("2026-11-26T08:15:30Z").unwrap();
        assert_eq!(base, 1_795_680_930_000);
        assert_eq!(
            parse_rfc3339_ms("2026-11-26T08:15:30.123456Z"),
            Some(base + 123)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-26T08:15:30.123456789Z"),
            Some(base + 123)
        );
        assert_eq!(parse_rfc3339_ms("2026-11-26T08:15:30.5"), Some(base + 500));
        assert_eq!(parse_rfc3339_ms("2026-11-26T08:15:30"), Some(base));
        assert_eq!(parse_rfc3339_ms("2026-11-26T09:15:30+01:00"), Some(base));
        assert_eq!(parse_rfc3339_ms("2026-11-26T07:45:30-00:30"), Some(base));
        assert_eq!(parse_rfc3339_ms("2026-11-26 08:15:30Z"), Some(base));
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T08:15:30.Z",
            "2026-11-26T08:15:30.1234567890Z",
            "2026-11-26T08:15:30+0100",
            "2026-11-26T08:15:30Zjunk",
            "yesterday at noon",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn fast_formatting_matches_the_formatter() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut samples = vec![
            // First: the thread has formatted nothing yet, and its empty minute cache must
            // not take this for a timestamp in its minute.
            i64::MIN + 5,
            0,
            -1,
            1,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
        ];
        for _ in 0..10_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            samples.push((rng % 600_000_000_000_000) as i64 - 300_000_000_000_000);
        }
        // Walks of small steps, either way, so that most timestamps fall in the minute the
        // thread formatted last (and some just outside it), near the ends of the range too.
        for start in [
            0,
            1_795_680_930_123,
            -62_167_219_200_000,
            253_402_300_700_000,
            -1_000_000,
        ] {
            let mut ms = start;
            for _ in 0..5_000 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                samples.push(ms);
                ms += (rng % 130_001) as i64 - 60_000;
            }
        }
        for ms in samples {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_rfc3339_ms(ms, &mut fast);
            write_rfc3339_ms_slow(ms, &mut slow);
            assert_eq!(fast, slow, "{ms}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [0, 1_795_680_930_123, 1_704_067_200_000, 951_782_400_000] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(
            format_rfc3339_ms(1_704_067_200_000),
            "2024-01-01T00:00:00.000Z"
        );
        assert_eq!(utc_parts(1_795_680_930_000), (2026, 11, 26, 8));
    }
}
