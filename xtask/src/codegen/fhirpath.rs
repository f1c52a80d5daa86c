//! Reduces the FHIRPath `expression` of an R4 SearchParameter to plain element paths.
//!
//! The R4 expressions use a small subset of FHIRPath: unions (`a | b`), dotted paths, choice
//! casts (`(X.value as Quantity)`, `X.onset.as(dateTime)`, `ofType(T)`), reference target
//! filters (`where(resolve() is Patient)`) and equality filters (`where(system='email')`).
//! Everything else (indexers, `exists()`, boolean logic) is reported as irreducible, and the
//! parameter is then marked unsupported in the generated table.

/// One step of a reduced path; mirrors `Step` in `fhir-bulk-spec/src/generated/mod.rs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// A JSON property (choice elements already carry their type suffix, e.g. `valueQuantity`).
    Field(String),
    /// `where(key='value')`: keep elements whose property `key` equals `value`.
    Where(String, String),
    /// `where(resolve() is Type)`: keep references to resources of `Type`.
    ResolvesTo(String),
}

/// A path from the resource root, without the leading type name.
pub type Path = Vec<Step>;

/// The paths of `expr` that start at `base` (a resource type, `Resource` or `DomainResource`).
///
/// Parts of the union that start at other types are skipped; a part that starts at `base`
/// but uses FHIRPath we do not reduce is an error naming that part.
pub fn reduce(expr: &str, base: &str) -> Result<Vec<Path>, String> {
    let mut out: Vec<Path> = Vec::new();
    for part in split_top_level(expr, '|') {
        if let Some(path) = reduce_part(part.trim(), base)?
            && !out.contains(&path)
        {
            out.push(path);
        }
    }
    Ok(out)
}

fn reduce_part(part: &str, base: &str) -> Result<Option<Path>, String> {
    let segments = split_top_level(part, '.');
    let (first, rest) = segments
        .split_first()
        .ok_or_else(|| format!("empty part in '{part}'"))?;
    let first = first.trim();
    let mut path = if let Some(inner) = first.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
        let (of, ty) = inner
            .split_once(" as ")
            .ok_or_else(|| format!("'{first}': expected '(path as Type)'"))?;
        match reduce_part(of.trim(), base)? {
            Some(mut path) => {
                cast(&mut path, ty.trim(), part)?;
                path
            }
            None => return Ok(None),
        }
    } else if first == base {
        Vec::new()
    } else if is_identifier(first) && first.starts_with(|c: char| c.is_ascii_lowercase()) {
        vec![Step::Field(first.to_string())] // relative to the resource, e.g. InsurancePlan `name | alias`
    } else if is_identifier(first) && first.starts_with(|c: char| c.is_ascii_uppercase()) {
        return Ok(None); // another base type of a multi-base parameter
    } else {
        return Err(format!("'{part}': cannot reduce '{first}'"));
    };
    for segment in rest {
        let segment = segment.trim();
        if is_identifier(segment) {
            path.push(Step::Field(segment.to_string()));
        } else if let Some(ty) = call_arg(segment, "as").or_else(|| call_arg(segment, "ofType")) {
            cast(&mut path, ty, part)?;
        } else if let Some(cond) = call_arg(segment, "where") {
            path.push(
                condition(cond).ok_or_else(|| format!("'{part}': cannot reduce '{segment}'"))?,
            );
        } else {
            return Err(format!("'{part}': cannot reduce '{segment}'"));
        }
    }
    if path.is_empty() {
        return Err(format!("'{part}': empty path"));
    }
    Ok(Some(path))
}

/// `X.value as Quantity` → the JSON property `valueQuantity`.
fn cast(path: &mut Path, ty: &str, part: &str) -> Result<(), String> {
    if !is_identifier(ty) {
        return Err(format!("'{part}': bad type '{ty}'"));
    }
    match path.last_mut() {
        Some(Step::Field(name)) => {
            let mut chars = ty.chars();
            let head = chars.next().map(|c| c.to_ascii_uppercase());
            name.extend(head);
            name.push_str(chars.as_str());
            Ok(())
        }
        _ => Err(format!("'{part}': cast of a non-element")),
    }
}

/// `resolve() is Patient` or `system='email'`.
fn condition(cond: &str) -> Option<Step> {
    if let Some(ty) = cond.trim().strip_prefix("resolve() is ") {
        return is_identifier(ty.trim()).then(|| Step::ResolvesTo(ty.trim().to_string()));
    }
    let (key, value) = cond.split_once('=')?;
    let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    (is_identifier(key.trim()) && !value.contains('\''))
        .then(|| Step::Where(key.trim().to_string(), value.to_string()))
}

/// `name(arg)` → `arg`.
fn call_arg<'a>(segment: &'a str, name: &str) -> Option<&'a str> {
    segment
        .strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits at `sep` outside parentheses, brackets and quotes.
fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            c if c == sep && depth == 0 && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str) -> Step {
        Step::Field(s.to_string())
    }

    #[test]
    fn reduces_the_r4_shapes() {
        assert_eq!(
            reduce("Account.subject.where(resolve() is Patient)", "Account"),
            Ok(vec![vec![
                field("subject"),
                Step::ResolvesTo("Patient".into())
            ]])
        );
        assert_eq!(
            reduce(
                "(Observation.value as Quantity) | (Observation.component.value as Quantity)",
                "Observation"
            ),
            Ok(vec![
                vec![field("valueQuantity")],
                vec![field("component"), field("valueQuantity")]
            ])
        );
        assert_eq!(
            reduce(
                "Condition.onset.as(dateTime) | Condition.onset.as(Period)",
                "Condition"
            ),
            Ok(vec![
                vec![field("onsetDateTime")],
                vec![field("onsetPeriod")]
            ])
        );
        assert_eq!(
            reduce("(Observation.value as CodeableConcept).text", "Observation"),
            Ok(vec![vec![field("valueCodeableConcept"), field("text")]])
        );
        assert_eq!(
            reduce("X.item.ofType(Reference)", "X"),
            Ok(vec![vec![field("itemReference")]])
        );
        assert_eq!(
            reduce(
                "Patient.telecom.where(system='email') | Person.telecom",
                "Patient"
            ),
            Ok(vec![vec![
                field("telecom"),
                Step::Where("system".into(), "email".into())
            ]])
        );
        assert_eq!(reduce("Person.telecom", "Patient"), Ok(vec![]));
        assert_eq!(
            reduce("name | alias", "InsurancePlan"),
            Ok(vec![vec![field("name")], vec![field("alias")]])
        );
        assert!(reduce("Bundle.entry[0].resource", "Bundle").is_err());
        assert!(
            reduce(
                "Patient.deceased.exists() and Patient.deceased != false",
                "Patient"
            )
            .is_err()
        );
    }
}
