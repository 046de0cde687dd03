//! The fast path of the wire parser: a hand-written scanner for the shape every well-formed
//! event has — one flat JSON object whose values are plain strings, numbers, booleans or
//! `null`.
//!
//! It fills the same [`Wire`] that `serde_json` would, borrowing strings from the line, and
//! gives up (returns `None`) on anything outside that shape or anything `serde_json` would
//! reject or treat specially: an escape sequence or control character in a string, a nested
//! value, a repeated known field, a known field of the wrong type, a number that is not a
//! finite `f64`, text after the object. The caller then parses the line with `serde_json`,
//! which decides (and words the dead letter) exactly as it always has: the scanner only ever
//! accepts lines that `serde_json` accepts too, with the same result.
//!
//! Keys are expected in the usual order (events.md's, which the generator writes and most
//! producers keep): the key expected next is compared in place, written `"key":`, and only a
//! line that differs there is scanned key by key. Either way the same bytes are accepted.
//!
//! Numbers of up to 15 digits without an exponent are exact by Clinger's fast path, the others
//! go to [`str::parse::<f64>`]; both round correctly, as `serde_json` does with its
//! `float_roundtrip` feature (which the workspace turns on), so the two paths agree.

use std::borrow::Cow;

use super::Wire;

/// Scans `line` as a flat event object into `w` (which must be empty); `None` if the slow path
/// must decide (`w` then holds part of the line). Filling the caller's `Wire` rather than
/// returning one saves copying it (it is a few hundred bytes).
pub(super) fn scan<'a>(line: &'a str, w: &mut Wire<'a>) -> Option<()> {
    let mut s = Scanner {
        b: line.as_bytes(),
        i: 0,
        line,
    };
    let mut seen = 0u32;
    // The field expected next (see `Field::usual_next`): when the line has it there, written
    // `"key":`, its key is taken without scanning it as a string and looking it up.
    let mut expected = Some(Field::EventId);
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        s.i += 1;
    } else {
        loop {
            let field = match expected.filter(|f| f.wire_key().starts(&s.b[s.i..])) {
                Some(f) => {
                    s.i += f.wire_key().key.len();
                    Some(f)
                }
                None => {
                    let key = s.string()?;
                    s.ws();
                    s.eat(b':')?;
                    Field::of(key)
                }
            };
            s.ws();
            match field {
                Some(f) => {
                    let bit = 1u32 << f as u32;
                    if seen & bit != 0 {
                        return None; // serde_json: duplicate field
                    }
                    seen |= bit;
                    s.field(w, f)?;
                    expected = f.usual_next();
                }
                None => s.skip_scalar()?,
            }
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(())
}

/// A field's key as it is written when nothing surrounds it: quoted, with its colon
/// (`"event_id":`). Keys of up to 16 bytes (the common
/// fields') are kept as two words and a mask of the bytes that count, and recognised with two
/// loads and compares instead of a call to `memcmp`.
struct WireKey {
    key: &'static [u8],
    words: [u64; 2],
    mask: [u64; 2],
}

impl WireKey {
    const fn new(key: &'static [u8]) -> Self {
        let (mut words, mut mask) = ([0u64; 2], [0u64; 2]);
        let mut i = 0;
        while i < key.len() && i < 16 {
            words[i / 8] |= (key[i] as u64) << (8 * (i % 8));
            mask[i / 8] |= 0xff << (8 * (i % 8));
            i += 1;
        }
        Self { key, words, mask }
    }

    /// Whether `b` starts with the key.
    #[inline]
    fn starts(&self, b: &[u8]) -> bool {
        match b.first_chunk::<16>() {
            Some(w) if self.key.len() <= 16 => {
                let (lo, hi) = w.split_at(8);
                let word = |half: &[u8]| u64::from_le_bytes(half.try_into().expect("8 bytes"));
                ((word(lo) ^ self.words[0]) & self.mask[0])
                    | ((word(hi) ^ self.words[1]) & self.mask[1])
                    == 0
            }
            _ => b.starts_with(self.key),
        }
    }
}

/// Defines [`Field`] from one list of variants and their keys: the enum, [`Field::of`] (a
/// key's field) and [`Field::wire_key`] (a field's key as written, from a table in field
/// order).
macro_rules! fields {
    ($($field:ident = $key:literal,)*) => {
        /// The fields of [`Wire`].
        #[derive(Clone, Copy)]
        enum Field {
            $($field,)*
        }

        /// Every field's [`WireKey`], in field order.
        static KEYS: &[WireKey] = &[$(WireKey::new(concat!("\"", $key, "\":").as_bytes()),)*];

        impl Field {
            fn of(key: &str) -> Option<Field> {
                Some(match key {
                    $($key => Field::$field,)*
                    _ => return None,
                })
            }

            /// The field's key as it is written when nothing surrounds it.
            fn wire_key(self) -> &'static WireKey {
                &KEYS[self as usize]
            }
        }
    };
}

fields! {
    EventId = "event_id",
    EventType = "event_type",
    Timestamp = "timestamp",
    GeoZone = "geo_zone",
    RiderId = "rider_id",
    DriverId = "driver_id",
    TripId = "trip_id",
    Reason = "reason",
    PickupLat = "pickup_lat",
    PickupLon = "pickup_lon",
    DropoffLat = "dropoff_lat",
    DropoffLon = "dropoff_lon",
    Latitude = "latitude",
    Longitude = "longitude",
    StartLat = "start_lat",
    StartLon = "start_lon",
    EndLat = "end_lat",
    EndLon = "end_lon",
    EstimatedDuration = "estimated_duration",
    EstimatedFare = "estimated_fare",
    ActualFare = "actual_fare",
    ActualDuration = "actual_duration",
    Rating = "rating",
}

impl Field {
    /// The field that most often follows this one, in the order of events.md's examples
    /// (which the generator writes): a guess, checked by [`scan`] before it is used, so a
    /// line in any other order is read the same, only without the shortcut.
    fn usual_next(self) -> Option<Field> {
        Some(match self {
            Field::EventId => Field::EventType,
            Field::EventType => Field::Timestamp,
            // Most events are a driver's location update.
            Field::Timestamp => Field::DriverId,
            Field::DriverId => Field::Latitude,
            Field::Latitude => Field::Longitude,
            Field::RiderId => Field::PickupLat,
            Field::PickupLat => Field::PickupLon,
            Field::PickupLon => Field::DropoffLat,
            Field::DropoffLat => Field::DropoffLon,
            Field::TripId => Field::EndLat,
            Field::StartLat => Field::StartLon,
            Field::StartLon => Field::EstimatedDuration,
            Field::EstimatedDuration => Field::EstimatedFare,
            Field::EndLat => Field::EndLon,
            Field::EndLon => Field::ActualFare,
            Field::ActualFare => Field::ActualDuration,
            Field::ActualDuration => Field::Rating,
            Field::Longitude
            | Field::DropoffLon
            | Field::EstimatedFare
            | Field::Rating
            | Field::GeoZone
            | Field::Reason => return None,
        })
    }
}

/// The index of the first `"`, `\\` or control character in `b`, eight bytes at a time.
pub(super) fn string_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // High bit set in each byte of `x` that is zero (the lowest such flag is exact; flags
    // above it may be spurious, which the first-match search below never looks at).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let hits = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            // Bytes below 0x20 (the classic "has less than" test).
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|i| at + i)
}

/// Exact powers of ten for the fast path of [`Scanner::number`].
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    line: &'a str,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters, borrowed from the line. Inlined: it
    /// runs for every key and string value, and a call costs as much as a short key's scan.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let len = string_end(&self.b[start..])?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // Both ends sit next to an ASCII quote, so they are character boundaries.
        self.line.get(start..start + len)
    }

    /// Consumes a `null` if one comes next: the field is absent, as for `serde_json`.
    fn null(&mut self) -> bool {
        let null = self.b[self.i..].starts_with(b"null");
        if null {
            self.i += 4;
        }
        null
    }

    /// A JSON number (strict grammar) that is a finite `f64`.
    fn number(&mut self) -> Option<f64> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        // The digits as one integer, read as they are scanned (wrapping: only used when there
        // are at most 15 of them, which cannot overflow).
        let mut m = 0u64;
        match self.next()? {
            b'0' => {}
            d @ b'1'..=b'9' => {
                m = u64::from(d - b'0');
                self.digits_into(&mut m);
            }
            _ => return None,
        }
        let int_end = self.i;
        let mut frac_len = 0;
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.peek().filter(u8::is_ascii_digit)?;
            self.digits_into(&mut m);
            frac_len = self.i - int_end - 1;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digit()?;
            self.digits();
        } else if (int_end - int_start) + frac_len <= 15 {
            // Clinger's fast path: the digits as an integer below 2^53 and a power of ten up to
            // 10^15 are both exact, and one division rounds correctly, as a full parse would.
            let v = m as f64 / POW10[frac_len];
            return Some(if negative { -v } else { v });
        }
        let v: f64 = self.line.get(start..self.i)?.parse().ok()?;
        v.is_finite().then_some(v)
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    /// Like [`digits`](Self::digits), appending each to `m` in base 10.
    fn digits_into(&mut self, m: &mut u64) {
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            *m = m.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            self.i += 1;
        }
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// The value of an unknown field: skipped if it is a scalar.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'n' | b't' | b'f' => {
                for lit in [&b"null"[..], b"true", b"false"] {
                    if self.b[self.i..].starts_with(lit) {
                        self.i += lit.len();
                        return Some(());
                    }
                }
                None
            }
            _ => self.number().map(drop),
        }
    }

    fn str_field(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(|s| Some(Cow::Borrowed(s)))
    }

    fn num_field(&mut self) -> Option<Option<f64>> {
        if self.null() {
            return Some(None);
        }
        self.number().map(Some)
    }

    fn field(&mut self, w: &mut Wire<'a>, f: Field) -> Option<()> {
        let str_slot = match f {
            Field::EventId => &mut w.event_id,
            Field::EventType => &mut w.event_type,
            Field::Timestamp => &mut w.timestamp,
            Field::GeoZone => &mut w.geo_zone,
            Field::RiderId => &mut w.rider_id,
            Field::DriverId => &mut w.driver_id,
            Field::TripId => &mut w.trip_id,
            Field::Reason => &mut w.reason,
            _ => {
                let num_slot = match f {
                    Field::PickupLat => &mut w.pickup_lat,
                    Field::PickupLon => &mut w.pickup_lon,
                    Field::DropoffLat => &mut w.dropoff_lat,
                    Field::DropoffLon => &mut w.dropoff_lon,
                    Field::Latitude => &mut w.latitude,
                    Field::Longitude => &mut w.longitude,
                    Field::StartLat => &mut w.start_lat,
                    Field::StartLon => &mut w.start_lon,
                    Field::EndLat => &mut w.end_lat,
                    Field::EndLon => &mut w.end_lon,
                    Field::EstimatedDuration => &mut w.estimated_duration,
                    Field::EstimatedFare => &mut w.estimated_fare,
                    Field::ActualFare => &mut w.actual_fare,
                    Field::ActualDuration => &mut w.actual_duration,
                    _ => &mut w.rating,
                };
                *num_slot = self.num_field()?;
                return Some(());
            }
        };
        *str_slot = self.str_field()?;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    /// What `serde_json` makes of the line, for comparison.
    fn slow(line: &str) -> Option<String> {
        serde_json::from_str::<Wire<'_>>(line)
            .ok()
            .map(|w| format!("{w:?}"))
    }

    fn fast(line: &str) -> Option<String> {
        let mut w = Wire::default();
        scan(line, &mut w).map(|()| format!("{w:?}"))
    }

    #[test]
    fn the_fast_path_reads_well_formed_events_as_serde_json_does() {
        for line in [
            r#"{"event_id":"s0-e1","event_type":"DRIVER_AVAILABLE","timestamp":"2026-01-05T07:00:00.264Z","driver_id":"s0-d146","latitude":40.747601,"longitude":-73.978037}"#,
            r#" { "event_id" : "e" , "rating" : 5 , "actual_fare" : -0.5e-3 , "x" : [1] } "#,
            r#"{"event_id":"e","extra":"x","flag":true,"none":null,"n":-12.5E+2,"geo_zone":null}"#,
            r#"{"event_id":"é — ✓","pickup_lat":0,"pickup_lon":1e2}"#,
            "{}",
            "{\t\"rating\":\r\n4}",
        ] {
            if line.contains('[') {
                assert_eq!(fast(line), None, "{line}");
                assert!(slow(line).is_some());
            } else {
                assert_eq!(fast(line), slow(line), "{line}");
                assert!(fast(line).is_some(), "{line}");
            }
        }
    }

    #[test]
    fn every_field_has_its_own_key_on_the_wire() {
        assert_eq!(KEYS.len(), Field::Rating as usize + 1, "one key per field");
        for (i, k) in KEYS.iter().enumerate() {
            let wire = k.key;
            let name = std::str::from_utf8(&wire[1..wire.len() - 2]).unwrap();
            assert_eq!(wire, format!("\"{name}\":").as_bytes());
            assert!(
                matches!(Field::of(name), Some(g) if g as usize == i && std::ptr::eq(g.wire_key(), k)),
                "{name}"
            );
            // Recognised at the start of a line long enough for the word compare, or not.
            let line = format!("{}1234567890123456", std::str::from_utf8(wire).unwrap());
            for end in wire.len()..line.len() {
                assert!(k.starts(&line.as_bytes()[..end]), "{name} {end}");
            }
        }
        for (line, key) in [
            (&br#""event_idx":1, "x": 12345678"#[..], Field::EventId),
            (br#""event_id" :1, "x": 12345678"#, Field::EventId),
            (br#""event_i"#, Field::EventId),
            (br#""longitude_2":1.0, "x": 12345678"#, Field::Longitude),
            (
                br#""estimated_durations":1.0, "x": 12345678"#,
                Field::EstimatedDuration,
            ),
            (br#""Timestamp":"2026-01-05T07:00:00Z""#, Field::Timestamp),
        ] {
            assert!(
                !key.wire_key().starts(line),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn fields_in_any_order_or_spacing_read_as_serde_json_reads_them() {
        let fields = [
            r#""event_id":"s0-e1""#,
            r#""event_type":"DRIVER_LOCATION_UPDATE""#,
            r#""timestamp":"2026-01-05T07:00:00.264Z""#,
            r#""driver_id":"s0-d146""#,
            r#""latitude":40.747601"#,
            r#""longitude":-73.978037"#,
            r#""trip_id":"t1""#,
            r#""event_id_2":"x""#,
        ];
        // The usual order, reversed, rotated, with spaces, and with a field given twice.
        let mut orders: Vec<Vec<&str>> =
            vec![fields.to_vec(), fields.iter().rev().copied().collect()];
        for k in 1..fields.len() {
            let mut v = fields.to_vec();
            v.rotate_left(k);
            orders.push(v);
        }
        for order in &orders {
            for sep in [",", " , "] {
                let line = format!("{{{}}}", order.join(sep));
                assert_eq!(fast(&line), slow(&line), "{line}");
                assert!(fast(&line).is_some(), "{line}");
                let spaced = line.replace("\":", "\" : ");
                assert_eq!(fast(&spaced), slow(&spaced), "{spaced}");
            }
        }
        let twice = format!("{{{},{}}}", fields[..3].join(","), fields[0]);
        assert_eq!(fast(&twice), None, "{twice}");
        assert!(serde_json::from_str::<Wire<'_>>(&twice).is_err());
    }

    #[test]
    fn anything_unusual_is_left_to_serde_json() {
        for line in [
            r#"{"event_id":"a\"b"}"#,
            r#"{"event_id":"a\u0041"}"#,
            "{\"event_id\":\"a\u{1}\"}",
            r#"{"event_id":"a","event_id":"b"}"#,
            r#"{"event_id":null,"event_id":"b"}"#,
            r#"{"event_id":5}"#,
            r#"{"rating":"5"}"#,
            r#"{"rating":true}"#,
            r#"{"rating":1e999}"#,
            r#"{"rating":01}"#,
            r#"{"rating":1.}"#,
            r#"{"rating":.5}"#,
            r#"{"rating":+1}"#,
            r#"{"rating":NaN}"#,
            r#"{"x":{"y":1}}"#,
            r#"{"x":nul}"#,
            r#"{"event_id":"a",}"#,
            r#"{"event_id":"a"} x"#,
            r#"{"event_id":"a""#,
            r#"{"event_id" "a"}"#,
            r#"["event_id"]"#,
            "",
        ] {
            assert_eq!(fast(line), None, "{line}");
        }
    }

    #[test]
    fn numbers_round_trip_exactly() {
        for v in [40.747601, -73.978037, 0.1, 1e-7, 123456789.123, 5.0] {
            let line = format!(r#"{{"latitude":{}}}"#, serde_json::to_string(&v).unwrap());
            let mut w = Wire::default();
            assert_eq!(scan(&line, &mut w), Some(()), "{line}");
            assert_eq!(w.latitude, Some(v), "{line}");
        }
    }

    #[test]
    fn string_ends_are_found_at_any_offset() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                let mut b = vec![b'a'; len];
                b.push(stop);
                b.extend_from_slice(b"\"zz");
                assert_eq!(string_end(&b), Some(len), "{len} {stop}");
            }
            // Bytes that must not stop it: high bytes (UTF-8), space, 0x7f, 0xa2, 0xdc.
            let mut b: Vec<u8> = [0xc3, 0xa9, b' ', 0x7f, 0xa2, 0xdc, 0x21, 0x5d]
                .iter()
                .cycle()
                .take(len)
                .copied()
                .collect();
            b.push(b'"');
            assert_eq!(string_end(&b), Some(len), "{len}");
            assert_eq!(string_end(&b[..len]), None);
        }
    }

    proptest::proptest! {
        /// Whatever the line, when the scanner accepts it, it reads what `serde_json` reads.
        #[test]
        fn whenever_the_scanner_accepts_a_line_serde_json_reads_the_same(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "event_id", "event_type", "timestamp", "driver_id", "latitude",
                        "longitude", "rating", "geo_zone", "x", "é", "event_id_x",
                    ]),
                    proptest::prop_oneof![
                        "[ -~é\\\\\"\u{1}]{0,6}".prop_map(|s| format!("\"{s}\"")),
                        "-?[0-9]{1,4}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{1,3})?",
                        proptest::sample::select(vec![
                            "null", "true", "false", "nul", "[1]", "{}", "1e999", "-",
                        ]).prop_map(String::from),
                        proptest::num::f64::ANY.prop_map(|v| v.to_string()),
                    ],
                    proptest::sample::select(vec![",", " , ", ",,", ""]),
                ),
                0..6,
            ),
            tail in proptest::sample::select(vec!["}", " }\n", "} x", ""]),
        ) {
            let mut line = String::from("{");
            for (i, (k, v, sep)) in fields.iter().enumerate() {
                if i > 0 {
                    line.push_str(sep);
                }
                line.push_str(&format!("\"{k}\":{v}"));
            }
            line.push_str(tail);
            if let Some(f) = fast(&line) {
                proptest::prop_assert_eq!(Some(f), slow(&line), "{}", line);
            }
        }
    }
}
