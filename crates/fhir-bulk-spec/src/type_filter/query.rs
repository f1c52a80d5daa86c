//! Parsing one filter, `Type?param[:modifier]=value[,value]&…`, into criteria.
//!
//! The text arrives decoded once (it was a query parameter value), so `?`, `&` and `=` are
//! literal. We split it at `&`, then each value at unescaped commas (the OR list), and only
//! then percent-decode each value: an encoded comma (`%2C`) stays inside its value. FHIR's
//! escapes `\,` `\|` `\$` `\\` are honoured.

use super::criterion::{
    Criterion, DateValue, NumberValue, QuantityValue, ReferenceTarget, ReferenceValue, StringMode,
    Test, Token, TokenSystem, UriMode,
};
use super::date_range::{self, Prefix};
use super::screen::Screen;
use super::text_fold::fold;
use super::{TypeFilter, TypeFilterError, search_param};
use crate::compartment::reference_target;
use crate::generated::ParamKind;
use crate::id::is_valid_id;
use crate::resource_type::RESOURCE_TYPES;
use percent_encoding::percent_decode_str;

/// Result parameters, which a filter SHALL NOT hold (P8c).
const RESULT_PARAMS: &[&str] = &[
    "_include",
    "_revinclude",
    "_sort",
    "_elements",
    "_count",
    "_summary",
    "_total",
    "_contained",
    "_containedType",
    "_graph",
];

/// Parses one filter (already split from a comma list, P8e).
pub(super) fn parse_filter(text: &str) -> Result<TypeFilter, TypeFilterError> {
    let malformed = |reason: String| TypeFilterError::Malformed {
        filter: text.to_string(),
        reason,
    };
    let Some((ty, query)) = text.split_once('?') else {
        return Err(malformed("expected 'Type?param=value&…'".to_string()));
    };
    if ty.is_empty() {
        return Err(malformed(
            "no resource type before '?'; a filter targets one type (P8c)".to_string(),
        ));
    }
    let Ok(i) = RESOURCE_TYPES.binary_search(&ty) else {
        return Err(TypeFilterError::UnknownType {
            filter: text.to_string(),
            resource_type: ty.to_string(),
        });
    };
    let resource_type = RESOURCE_TYPES[i];
    let mut criteria = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((name, values)) = pair.split_once('=') else {
            return Err(malformed(format!("parameter '{pair}' has no '=value'")));
        };
        let name = decode(name).ok_or_else(|| {
            malformed(format!(
                "parameter name '{name}' is not valid percent-encoded UTF-8"
            ))
        })?;
        criteria.push(
            Parser {
                filter: text,
                resource_type,
                name: &name,
            }
            .criterion(values)?,
        );
    }
    Ok(TypeFilter {
        text: text.to_string(),
        resource_type,
        screen: Screen::new(&criteria),
        criteria,
    })
}

/// Context for the errors of one parameter.
struct Parser<'a> {
    filter: &'a str,
    resource_type: &'static str,
    /// As written, modifier included (`code:text`).
    name: &'a str,
}

impl Parser<'_> {
    fn criterion(&self, raw_values: &str) -> Result<Criterion, TypeFilterError> {
        let (code, modifier) = match self.name.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (self.name, None),
        };
        if RESULT_PARAMS.contains(&code) {
            return Err(TypeFilterError::ResultParam {
                filter: self.filter.to_string(),
                param: code.to_string(),
            });
        }
        let unsupported = |reason| TypeFilterError::UnsupportedParam {
            filter: self.filter.to_string(),
            param: self.name.to_string(),
            reason,
        };
        match code {
            "_has" => return Err(unsupported("reverse chaining is not supported")),
            "_list" | "_filter" => return Err(unsupported("it is not supported in filters")),
            _ if code.contains('.') => {
                return Err(unsupported("chained parameters are not supported"));
            }
            _ => {}
        }
        let param = search_param(self.resource_type, code).ok_or_else(|| {
            TypeFilterError::UnknownParam {
                filter: self.filter.to_string(),
                resource_type: self.resource_type.to_string(),
                param: code.to_string(),
            }
        })?;
        match param.kind {
            ParamKind::Composite => {
                return Err(unsupported("composite parameters are not supported"));
            }
            ParamKind::Special => return Err(unsupported("special parameters are not supported")),
            _ if !param.is_supported() => {
                return Err(unsupported(
                    "its definition does not reduce to element paths",
                ));
            }
            _ => {}
        }
        let values = split_unescaped(raw_values, b',')
            .map(|v| match decode(v) {
                Some(d) if !d.is_empty() => Ok(d),
                Some(_) => Err(self.invalid(raw_values, "empty value")),
                None => Err(self.invalid(v, "not valid percent-encoded UTF-8")),
            })
            .collect::<Result<Vec<String>, _>>()?;
        let unsupported_modifier = |modifier: &str| TypeFilterError::UnsupportedModifier {
            filter: self.filter.to_string(),
            param: code.to_string(),
            modifier: modifier.to_string(),
            kind: param.kind,
        };
        let test = match (param.kind, modifier) {
            (_, Some("missing")) => match values.as_slice() {
                [v] if v == "true" => Test::Missing(true),
                [v] if v == "false" => Test::Missing(false),
                _ => return Err(self.invalid(raw_values, ":missing takes 'true' or 'false'")),
            },
            (ParamKind::Token, None | Some("not")) => Test::Token {
                values: values
                    .iter()
                    .map(|v| self.token(v))
                    .collect::<Result<_, _>>()?,
                not: modifier.is_some(),
            },
            (ParamKind::Token, Some("text")) => {
                Test::TokenText(values.iter().map(|v| fold(&unescape(v))).collect())
            }
            (ParamKind::Reference, None) => Test::Reference(
                values
                    .iter()
                    .map(|v| self.reference(v, None))
                    .collect::<Result<_, _>>()?,
            ),
            (ParamKind::Reference, Some(ty)) => match RESOURCE_TYPES.binary_search(&ty) {
                Ok(i) => Test::Reference(
                    values
                        .iter()
                        .map(|v| self.reference(v, Some(RESOURCE_TYPES[i])))
                        .collect::<Result<_, _>>()?,
                ),
                Err(_) => return Err(unsupported_modifier(ty)),
            },
            (ParamKind::Date, None) => Test::Date(
                values
                    .iter()
                    .map(|v| self.date(v))
                    .collect::<Result<_, _>>()?,
            ),
            (ParamKind::String, None | Some("exact") | Some("contains")) => {
                let mode = match modifier {
                    None => StringMode::StartsWith,
                    Some("exact") => StringMode::Exact,
                    _ => StringMode::Contains,
                };
                let values = values
                    .iter()
                    .map(|v| {
                        if mode == StringMode::Exact {
                            unescape(v)
                        } else {
                            fold(&unescape(v))
                        }
                    })
                    .collect();
                Test::String { mode, values }
            }
            (ParamKind::Number, None) => Test::Number(
                values
                    .iter()
                    .map(|v| self.number(v, v))
                    .collect::<Result<_, _>>()?,
            ),
            (ParamKind::Quantity, None) => Test::Quantity(
                values
                    .iter()
                    .map(|v| self.quantity(v))
                    .collect::<Result<_, _>>()?,
            ),
            (ParamKind::Uri, None | Some("below") | Some("above")) => {
                let mode = match modifier {
                    None => UriMode::Exact,
                    Some("below") => UriMode::Below,
                    _ => UriMode::Above,
                };
                Test::Uri {
                    mode,
                    values: values.iter().map(|v| unescape(v)).collect(),
                }
            }
            (_, Some(m)) => return Err(unsupported_modifier(m)),
            (kind, None) => unreachable!("{kind} parameters were rejected above"),
        };
        Ok(Criterion { param, test })
    }

    fn invalid(&self, value: &str, reason: &'static str) -> TypeFilterError {
        TypeFilterError::InvalidValue {
            filter: self.filter.to_string(),
            param: self.name.to_string(),
            value: value.to_string(),
            reason,
        }
    }

    fn token(&self, value: &str) -> Result<Token, TypeFilterError> {
        let mut parts = split_unescaped(value, b'|');
        let first = parts.next().unwrap_or_default();
        let token = match parts.next() {
            None => Token {
                system: TokenSystem::Any,
                code: Some(unescape(first)),
            },
            Some("") if first.is_empty() => {
                return Err(self.invalid(value, "'|' alone names no system and no code"));
            }
            Some(code) => Token {
                system: if first.is_empty() {
                    TokenSystem::Absent
                } else {
                    TokenSystem::Is(unescape(first))
                },
                code: (!code.is_empty()).then(|| unescape(code)),
            },
        };
        if parts.next().is_some() {
            return Err(self.invalid(value, "a token is '[system|]code'"));
        }
        Ok(token)
    }

    fn reference(
        &self,
        value: &str,
        modifier_type: Option<&'static str>,
    ) -> Result<ReferenceValue, TypeFilterError> {
        let raw = unescape(value);
        let target = match reference_target(&raw) {
            Some((ty, _)) if modifier_type.is_some_and(|m| m != ty) => {
                return Err(self.invalid(
                    value,
                    "the reference's type differs from the :Type modifier",
                ));
            }
            Some((ty, id)) => ReferenceTarget::Resource {
                resource_type: ty.to_string(),
                id: id.to_string(),
            },
            None if is_valid_id(&raw) => ReferenceTarget::Id {
                resource_type: modifier_type,
                id: raw.clone(),
            },
            None => ReferenceTarget::Other,
        };
        Ok(ReferenceValue { raw, target })
    }

    fn date(&self, value: &str) -> Result<DateValue, TypeFilterError> {
        let (prefix, date) = Prefix::split(value);
        let mut range = date_range::parse_range(date).ok_or_else(|| {
            self.invalid(
                value,
                "expected [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|±hh:mm]]]]",
            )
        })?;
        if prefix == Prefix::Ap {
            // "approximately": 10% of the distance between now and the date, either side.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
            let slack = (now.saturating_sub(range.0)).saturating_abs() / 10;
            range = (range.0.saturating_sub(slack), range.1.saturating_add(slack));
        }
        Ok(DateValue { prefix, range })
    }

    /// `[prefix]number`; `whole` is the value to name in errors.
    fn number(&self, value: &str, whole: &str) -> Result<NumberValue, TypeFilterError> {
        let (prefix, number) = Prefix::split(value);
        let bad = || self.invalid(whole, "expected [prefix]number, e.g. 'gt5.4'");
        let (mantissa, exponent) = match number.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i32>().map_err(|_| bad())?),
            None => (number, 0),
        };
        let unsigned = mantissa.strip_prefix(['+', '-']).unwrap_or(mantissa);
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if int.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            || unsigned.ends_with('.')
        {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        let decimals = i32::try_from(frac.len()).map_err(|_| bad())?;
        Ok(NumberValue {
            prefix,
            value,
            half_width: 0.5 * 10_f64.powi(exponent - decimals),
        })
    }

    fn quantity(&self, value: &str) -> Result<QuantityValue, TypeFilterError> {
        let parts: Vec<&str> = split_unescaped(value, b'|').collect();
        let (number, system, code) = match parts.as_slice() {
            [n] => (*n, "", ""),
            [n, s, c] => (*n, *s, *c),
            _ => return Err(self.invalid(value, "expected [prefix]number[|system|code]")),
        };
        let text = |s: &str| (!s.is_empty()).then(|| unescape(s));
        Ok(QuantityValue {
            number: self.number(number, value)?,
            system: text(system),
            code: text(code),
        })
    }
}

fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Splits at `sep` bytes not escaped by a backslash.
fn split_unescaped(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut escaped = false;
    let mut pieces = Vec::new();
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == sep {
            pieces.push(&s[start..i]);
            start = i + 1;
        }
    }
    pieces.push(&s[start..]);
    pieces.into_iter()
}

/// Removes FHIR's search escapes: `\,` `\|` `\$` `\\`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}
