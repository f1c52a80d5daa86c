//! A byte screen run on a resource's JSON text before it is parsed: most lines an export
//! filters out (say Observations that are not `category=laboratory`) lack every value the
//! filter asks for, and finding that out with `memmem` costs a fraction of a parse.
//!
//! Sound, not complete: the screen may pass a line the filter then rejects, never the other
//! way. Each AND'ed criterion whose matches all hold one of its values verbatim
//! ([`Criterion::needles`]) becomes a clause; a line missing every needle of a clause cannot
//! match. JSON may spell a character as `\uXXXX` (and `/` as `\/`), so a line with either
//! escape always passes, as do needles holding characters JSON must escape.

use super::criterion::Criterion;
use memchr::memmem::Finder;

/// The clauses of one filter: AND'ed lists of OR'ed needles.
#[derive(Debug, Clone)]
pub(super) struct Screen {
    clauses: Vec<Vec<Finder<'static>>>,
}

impl Screen {
    pub(super) fn new(criteria: &[Criterion]) -> Screen {
        let clauses = criteria
            .iter()
            .filter_map(Criterion::needles)
            .filter(|needles| needles.iter().all(|n| literal_in_json(n)))
            .map(|needles| {
                needles
                    .into_iter()
                    .map(|n| Finder::new(n.as_bytes()).into_owned())
                    .collect()
            })
            .collect();
        Screen { clauses }
    }

    /// False only when no resource whose JSON text is `json` can match.
    pub(super) fn may_match(&self, json: &[u8]) -> bool {
        self.clauses.is_empty()
            || has_spelling_escape(json)
            || self
                .clauses
                .iter()
                .all(|needles| needles.iter().any(|f| f.find(json).is_some()))
    }
}

/// A non-empty string that JSON writes as is: no quote, backslash or control character.
fn literal_in_json(needle: &str) -> bool {
    !needle.is_empty() && !needle.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Whether `json` has a `\u` or `\/` escape, which may spell a needle's characters otherwise.
fn has_spelling_escape(json: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', json).any(|i| matches!(json.get(i + 1), Some(b'u' | b'/')))
}

#[cfg(test)]
mod tests {
    use crate::type_filter::TypeFilter;

    fn screen(filter: &str, json: &str) -> bool {
        TypeFilter::parse(filter)
            .unwrap()
            .may_match(json.as_bytes())
    }

    const LAB: &str = r#"{"resourceType":"Observation","category":[{"coding":[{"code":"laboratory"}]}],"subject":{"reference":"Patient/p1"}}"#;

    #[test]
    fn lines_without_any_needle_are_screened_out() {
        assert!(screen("Observation?category=laboratory", LAB));
        assert!(!screen("Observation?category=vital-signs", LAB));
        // OR within a criterion, AND across criteria.
        assert!(screen("Observation?category=vital-signs,laboratory", LAB));
        assert!(!screen(
            "Observation?category=laboratory&subject=Patient/p2",
            LAB
        ));
        assert!(screen(
            "Observation?category=laboratory&subject=Patient/p1",
            LAB
        ));
        // An absolute reference value matches by id: the id is the needle.
        assert!(screen(
            "Observation?subject=https://ehr.example/fhir/Patient/p1",
            LAB
        ));
    }

    #[test]
    fn criteria_without_needles_pass_everything() {
        for filter in [
            "Observation?category:not=laboratory",
            "Observation?category:missing=true",
            "Observation?date=ge2020",
            "Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|",
            "Observation?category:text=Vital",
        ] {
            assert!(
                screen(filter, r#"{"resourceType":"Observation"}"#),
                "{filter}"
            );
        }
        // Only the criterion with needles screens.
        assert!(!screen("Observation?date=ge2020&category=survey", LAB));
    }

    #[test]
    fn escapes_that_can_spell_a_needle_pass() {
        let escaped = r#"{"resourceType":"Observation","category":[{"coding":[{"code":"lab\u006fratory"}]}]}"#;
        let filter = TypeFilter::parse("Observation?category=laboratory").unwrap();
        assert!(filter.may_match(escaped.as_bytes()));
        // The screen passed it, and the match on the parsed resource decides.
        assert!(filter.matches(&serde_json::from_str(escaped).unwrap()));
        let slash = r#"{"resourceType":"Observation","subject":{"reference":"Patient\/p1"}}"#;
        assert!(screen("Observation?subject=Patient/p1", slash));
        // Other escapes cannot spell a needle without quotes or backslashes.
        let newline = r#"{"resourceType":"Observation","note":[{"text":"a\nb"}]}"#;
        assert!(!screen("Observation?category=laboratory", newline));
    }
}
