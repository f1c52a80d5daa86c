//! A JSON syntax check that builds nothing: it walks one line's bytes once, accepts what the
//! serde check it replaces accepted (an object, RFC 8259 syntax, a top-level `resourceType`
//! that is a string or null and appears once) and reports that `resourceType`.
//!
//! It exists because the check runs on every downloaded byte: deserializing even a borrowed
//! struct through serde cost more than the transfer. The walk keeps its state in locals and
//! skips string contents (most of a FHIR line) 8 bytes at a time; only a rejected line is
//! handed to serde_json, for its error message.

use serde::Deserialize;
use std::borrow::Cow;

/// Deepest nesting accepted (serde_json's default limit for a parsed value).
const MAX_DEPTH: u32 = 128;

/// The top-level `resourceType` of the JSON object `line` (`None` when absent or `null`), or
/// why `line` is not one JSON object. `line` must start with `{`.
pub(super) fn resource_type(line: &[u8]) -> Result<Option<Cow<'_, str>>, String> {
    let Some(found) = scan(line) else {
        return Err(describe(line));
    };
    let Some(span) = found else {
        return Ok(None);
    };
    let raw = &line[span.start..span.end];
    if !span.escaped {
        return match std::str::from_utf8(raw) {
            Ok(s) => Ok(Some(Cow::Borrowed(s))),
            Err(_) => Err(describe(line)),
        };
    }
    // Rare (an escaped type): serde_json unescapes it, surrogates and all.
    serde_json::from_slice::<String>(&line[span.start - 1..=span.end])
        .map(|s| Some(Cow::Owned(s)))
        .map_err(|e| format!("invalid JSON: {e}"))
}

/// The serde check this replaces, kept for its error messages.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    _resource_type: Option<Cow<'a, str>>,
}

/// Why `scan` rejected `line`, in serde_json's words.
fn describe(line: &[u8]) -> String {
    match serde_json::from_slice::<Head<'_>>(line) {
        Err(e) => format!("invalid JSON: {e}"),
        Ok(_) => format!("invalid JSON: nested deeper than {MAX_DEPTH} levels"),
    }
}

/// A string's contents: where they are in the line, and whether they hold escapes.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is `"`, `\` or below 0x20. Only the lowest flagged
/// byte is exact (borrows can flag bytes above a match), which is all the caller uses.
#[inline(always)]
fn special(w: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) | control
}

/// Skips a string's contents from `i` (just after the opening quote); returns the index of
/// the closing quote.
#[inline(always)]
fn string_end(b: &[u8], mut i: usize, escaped: &mut bool) -> Option<usize> {
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let hit = special(u64::from_le_bytes(chunk.try_into().ok()?));
            if hit != 0 {
                i += (hit.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match *b.get(i)? {
            b'"' => return Some(i),
            b'\\' => {
                *escaped = true;
                i = escape_end(b, i)?;
            }
            c if c < 0x20 => return None,
            // Plain bytes of a tail shorter than 8.
            _ => i += 1,
        }
    }
}

/// The index after the escape sequence at `i`.
#[cold]
fn escape_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 2),
        b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => Some(i + 6),
        _ => None,
    }
}

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    // Compact JSON has no whitespace: one comparison decides the common case.
    if b.get(i).is_some_and(|&c| c > b' ') {
        return i;
    }
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> Option<usize> {
    let from = i;
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    (i > from).then_some(i)
}

/// The index after the number at `i`.
#[inline(always)]
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    // No leading zeros: a digit after this 0 fails as an unexpected character.
    i = match b.get(i)? {
        b'0' => i + 1,
        _ => digits(b, i)?,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Some(i)
}

/// Reads `"key":` at `i`; returns the index after the colon and whether the key is the
/// top-level `resourceType`.
#[inline(always)]
fn key(b: &[u8], i: usize, top: bool) -> Option<(usize, bool)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    let end = string_end(b, i + 1, &mut escaped)?;
    let is_type = top && top_key_is_type(&b[i..=end], escaped)?;
    if b.get(end + 1) == Some(&b':') {
        return Some((end + 2, is_type));
    }
    let colon = skip_ws(b, end + 1);
    (b.get(colon) == Some(&b':')).then_some((colon + 1, is_type))
}

/// Whether a top-level key (quotes included) is `resourceType`; `None` if it is not text,
/// which serde refused for top-level keys.
fn top_key_is_type(quoted: &[u8], escaped: bool) -> Option<bool> {
    let raw = &quoted[1..quoted.len() - 1];
    if !escaped {
        return if raw == b"resourceType" || raw.is_ascii() || std::str::from_utf8(raw).is_ok() {
            Some(raw == b"resourceType")
        } else {
            None
        };
    }
    serde_json::from_slice::<String>(quoted)
        .ok()
        .map(|k| k == "resourceType")
}

/// The walk: `None` if `b` is not accepted, else the top-level `resourceType` string if any.
fn scan(b: &[u8]) -> Option<Option<Span>> {
    if b.first() != Some(&b'{') {
        return None;
    }
    // The closing byte of the container at each depth (index depth - 1).
    let mut closers = [b'}'; MAX_DEPTH as usize];
    let mut depth: u32 = 1;
    // `Some(v)` once the top-level `resourceType` was read (`v` is `None` for null).
    let mut found: Option<Option<Span>> = None;
    // The value about to be read is the top-level `resourceType`.
    let mut wanted;
    let mut i = skip_ws(b, 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
        depth = 0;
    } else {
        (i, wanted) = key(b, i, true)?;
        'value: loop {
            i = skip_ws(b, i);
            let c = *b.get(i)?;
            if wanted {
                match c {
                    b'"' => {
                        let mut escaped = false;
                        let end = string_end(b, i + 1, &mut escaped)?;
                        found = Some(Some(Span {
                            start: i + 1,
                            end,
                            escaped,
                        }));
                        i = end + 1;
                    }
                    b'n' if b[i..].starts_with(b"null") => {
                        found = Some(None);
                        i += 4;
                    }
                    _ => return None,
                }
                wanted = false;
            } else {
                match c {
                    b'"' => {
                        let mut escaped = false;
                        i = string_end(b, i + 1, &mut escaped)? + 1;
                    }
                    b'{' | b'[' => {
                        if depth == MAX_DEPTH {
                            return None;
                        }
                        let is_object = c == b'{';
                        closers[depth as usize] = c + 2; // `}` and `]` follow `{` and `[` by two
                        depth += 1;
                        i = skip_ws(b, i + 1);
                        match b.get(i) {
                            Some(b'}') if is_object => {
                                i += 1;
                                depth -= 1;
                            }
                            Some(b']') if !is_object => {
                                i += 1;
                                depth -= 1;
                            }
                            _ if is_object => {
                                (i, _) = key(b, i, false)?;
                                continue 'value;
                            }
                            _ => continue 'value,
                        }
                    }
                    b'-' | b'0'..=b'9' => i = number_end(b, i)?,
                    b't' if b[i..].starts_with(b"true") => i += 4,
                    b'f' if b[i..].starts_with(b"false") => i += 5,
                    b'n' if b[i..].starts_with(b"null") => i += 4,
                    _ => return None,
                }
            }
            // After a value: close containers until one continues with `,`.
            while depth > 0 {
                i = skip_ws(b, i);
                let closer = closers[depth as usize - 1];
                match *b.get(i)? {
                    b',' if closer == b'}' => {
                        (i, wanted) = key(b, skip_ws(b, i + 1), depth == 1)?;
                        if wanted && found.is_some() {
                            return None; // a second resourceType
                        }
                        continue 'value;
                    }
                    b',' => {
                        i += 1;
                        continue 'value;
                    }
                    c if c == closer => {
                        i += 1;
                        depth -= 1;
                    }
                    _ => return None,
                }
            }
            break;
        }
    }
    debug_assert_eq!(depth, 0);
    (skip_ws(b, i) == b.len()).then(|| found.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// What the serde check this replaces accepted: an object whose top-level
    /// `resourceType`, if any, is a string or null and appears once.
    fn serde_accepts(line: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(rename = "resourceType", borrow, default)]
            _resource_type: Option<Cow<'a, str>>,
        }
        line.first() == Some(&b'{') && serde_json::from_slice::<Head<'_>>(line).is_ok()
    }

    #[test]
    fn special_bytes_are_found_exactly() {
        for pos in 0..8 {
            for c in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                let mut w = *b"abcdefgh";
                w[pos] = c;
                // A second match above the first must not move the answer.
                if pos < 7 {
                    w[7] = 0x01;
                }
                let hit = special(u64::from_le_bytes(w));
                assert_eq!(hit.trailing_zeros() / 8, pos as u32, "{w:?}");
            }
        }
        assert_eq!(special(u64::from_le_bytes(*b"\xff\x80 ~!#[]")), 0);
    }

    #[test]
    fn finds_the_top_level_type() {
        let rt = |s: &str| resource_type(s.as_bytes()).map(|t| t.map(Cow::into_owned));
        assert_eq!(
            rt(r#"{"id":"1","resourceType":"Patient"}"#),
            Ok(Some("Patient".into()))
        );
        assert_eq!(
            rt(r#"{"contained":[{"resourceType":"X"}],"a":{"resourceType":"Y"}}"#),
            Ok(None)
        );
        assert_eq!(rt(r#"{"resourceType":null}"#), Ok(None));
        assert_eq!(
            rt(r#"{"resource\u0054ype":"Pati\u0065nt"}"#),
            Ok(Some("Patient".into()))
        );
        assert_eq!(
            rt("{\r\n\t\"resourceType\" : \"Patient\" , \"x\" : [ 1 , -2.5e+3 ] } "),
            Ok(Some("Patient".into()))
        );
        assert!(rt(r#"{"resourceType":1}"#).is_err());
        assert!(rt(r#"{"resourceType":{"a":1}}"#).is_err());
        assert!(
            rt(r#"{"resourceType":"Patient","resourceType":"Group"}"#)
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(rt(r#"{"resourceType":"Patient"} {}"#).is_err());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(127), "]".repeat(127));
        assert!(rt(&deep).is_ok());
        let deeper = format!("{{\"a\":{}1{}}}", "[".repeat(128), "]".repeat(128));
        assert!(rt(&deeper).unwrap_err().contains("deeper than 128"));
    }

    #[test]
    fn agrees_with_serde_json_on_syntax() {
        let cases: &[&[u8]] = &[
            br#"{}"#,
            br#"{"a":[]}"#,
            br#"{"a":[1,2,]}"#,
            br#"{"a":1,}"#,
            br#"{"a" 1}"#,
            br#"{"a":01}"#,
            br#"{"a":-}"#,
            br#"{"a":1.}"#,
            br#"{"a":1e}"#,
            br#"{"a":.5}"#,
            br#"{"a":+1}"#,
            br#"{"a":tru}"#,
            br#"{"a":nulls}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12"}"#,
            br#"{"a":"\u12G4"}"#,
            b"{\"a\":\"tab\there\"}",
            br#"{"a":"x"]"#,
            br#"{"a":["x"}"#,
            br#"{1:2}"#,
            br#"{"a":"unterminated}"#,
            br#"{"a":"long string with \"escapes\" and \\ and \/ inside it"}"#,
            "{\"a\":\"ünïcödé ✓ 𝄞\"}".as_bytes(),
        ];
        for &c in cases {
            assert_eq!(
                resource_type(c).is_ok(),
                serde_accepts(c),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
        // Random damage to realistic lines: both must agree on every one.
        let line = br#"{"resourceType":"Observation","id":"o-1","meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00Z"},"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart \"rate\"\\n"},"valueQuantity":{"value":-72.5e-1,"unit":"/min"},"flags":[true,false,null,0,1.25E+2],"note":[]}"#;
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut accepted = 0;
        let alphabet = b"{}[]\",:\\ -+.eE0123456789tfnulx\t\r\x01\xc3";
        for _ in 0..20_000 {
            let mut l = line.to_vec();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..l.len());
                match rng.gen_range(0..3) {
                    0 => {
                        l.remove(at);
                    }
                    1 => l.insert(at, alphabet[rng.gen_range(0..alphabet.len())]),
                    _ => l[at] = alphabet[rng.gen_range(0..alphabet.len())],
                }
            }
            if l.first() != Some(&b'{') {
                continue;
            }
            let ok = resource_type(&l).is_ok();
            assert_eq!(ok, serde_accepts(&l), "{}", String::from_utf8_lossy(&l));
            accepted += usize::from(ok);
        }
        // Both verdicts must be well represented for the comparison to mean anything.
        assert!((2_000..18_000).contains(&accepted), "{accepted} accepted");
    }
}
