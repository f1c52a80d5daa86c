//! Case- and accent-insensitive text comparison for string search (`name=smi`) and `:text`.
//!
//! Folding lowercases (Unicode) and strips the accents of the Latin-1 and Latin Extended-A
//! letters (`É` → `e`, `ł` → `l`); that covers the names FHIR servers usually hold without a
//! normalisation table. The needle is folded once when the filter is parsed; the resource text
//! is folded lazily, char by char, so a comparison allocates nothing.

/// `s` folded, for the needle side.
pub(super) fn fold(s: &str) -> String {
    folded(s).collect()
}

/// Whether `haystack` folded starts with `needle` (already folded).
pub(super) fn starts_with_folded(haystack: &str, needle: &str) -> bool {
    let mut h = folded(haystack);
    needle.chars().all(|n| h.next() == Some(n))
}

/// Whether `haystack` folded contains `needle` (already folded).
pub(super) fn contains_folded(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .char_indices()
            .any(|(i, _)| starts_with_folded(&haystack[i..], needle))
}

fn folded(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase).map(strip_accent)
}

/// The base letter of a lowercase accented Latin letter.
fn strip_accent(c: char) -> char {
    match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => 'c',
        'ď' | 'đ' => 'd',
        'è'..='ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => 'e',
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => 'g',
        'ĥ' | 'ħ' => 'h',
        'ì'..='ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => 'i',
        'ĵ' => 'j',
        'ķ' => 'k',
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => 'l',
        'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
        'ò'..='ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => 'o',
        'ŕ' | 'ŗ' | 'ř' => 'r',
        'ś' | 'ŝ' | 'ş' | 'š' => 's',
        'ţ' | 'ť' | 'ŧ' => 't',
        'ù'..='ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => 'u',
        'ŵ' => 'w',
        'ý' | 'ÿ' | 'ŷ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_accents() {
        assert_eq!(fold("Zoë ÉLODIE Łukasz"), "zoe elodie lukasz");
        assert!(starts_with_folded("Müller-Lüdenscheidt", &fold("mull")));
        assert!(!starts_with_folded("Mu", "mull"));
        assert!(contains_folded("Blood Pressure", &fold("PRESS")));
        assert!(!contains_folded("Blood", "pressure"));
        assert!(contains_folded("x", ""));
    }
}
