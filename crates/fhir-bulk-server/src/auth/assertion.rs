//! Client assertion checks (`private_key_jwt`, §14): the header (J1), the claims (J2, J3)
//! and the signature. Key selection (J4) is in [`super::jwks`]; the flow, with the store
//! lookups and the replay cache, is in [`super::token`].
//!
//! Every failure is a plain sentence for `error_description`. None of them quotes the
//! assertion or its signature: descriptions are logged and sent back, and an assertion is a
//! credential for as long as it has not expired.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// `client_assertion_type` of a JWT assertion (TK1, RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on `exp` and `nbf`.
pub const CLOCK_SKEW_SECONDS: i64 = 60;
/// The longest an assertion may live: `exp` at most this far ahead (J2).
pub const MAX_LIFETIME_SECONDS: i64 = 300;
/// Longest `jti` accepted (it is stored).
const MAX_JTI_LEN: usize = 255;

/// An assertion whose header and claims were read but whose signature is not checked yet:
/// nothing in it is to be trusted except to find the client and its key.
#[derive(Debug)]
pub struct Unverified {
    /// `alg` (RS384 or ES384; anything else was refused).
    pub alg: Algorithm,
    /// `kid` (required, J1).
    pub kid: String,
    /// `jku`, if sent.
    pub jku: Option<String>,
    /// The claims.
    pub claims: Map<String, Value>,
}

fn segment(part: &str, what: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| format!("the client_assertion {what} is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(format!("the client_assertion {what} is not a JSON object")),
    }
}

/// Reads the header and claims, and checks the header (J1, R3).
pub fn parse(assertion: &str) -> Result<Unverified, String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, _signature] = parts.as_slice() else {
        return Err("the client_assertion is not a signed JWT (expected three base64url parts separated by '.')".into());
    };
    let header = segment(header, "header")?;
    let claims = segment(claims, "payload")?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("RS384") => Algorithm::RS384,
        Some("ES384") => Algorithm::ES384,
        Some("none") => {
            return Err(
                "alg 'none' is never accepted; sign the assertion with RS384 or ES384 (R3)".into(),
            );
        }
        Some(a) if a.starts_with("HS") => {
            return Err(format!(
                "alg '{a}' is symmetric and not accepted for client assertions; sign with RS384 or ES384 (R3)"
            ));
        }
        Some(a) => {
            return Err(format!(
                "alg '{a}' is not supported; sign the assertion with RS384 or ES384"
            ));
        }
        None => return Err("the client_assertion header has no alg".into()),
    };
    if let Some(typ) = header.get("typ")
        && !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        return Err(format!(
            "the client_assertion header typ is {typ}; it must be \"JWT\" (J1)"
        ));
    }
    let kid = match header.get("kid").and_then(Value::as_str) {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => {
            return Err(
                "the client_assertion header has no kid; it must name the signing key (J1)".into(),
            );
        }
    };
    let jku = match header.get("jku") {
        None => None,
        Some(Value::String(u)) => Some(u.clone()),
        Some(_) => return Err("the client_assertion header jku is not a string".into()),
    };
    Ok(Unverified {
        alg,
        kid,
        jku,
        claims,
    })
}

/// The client id the assertion claims to be from: `iss`, which must equal `sub` (J2).
pub fn issuer(a: &Unverified) -> Result<&str, String> {
    let iss = a
        .claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let sub = a.claims.get("sub").and_then(Value::as_str);
    match (iss, sub) {
        (None, _) => Err(
            "the client_assertion has no iss; iss and sub must both be the client_id (J2)".into(),
        ),
        (Some(i), Some(s)) if i == s => Ok(i),
        (Some(_), _) => {
            Err("the client_assertion sub differs from iss; both must be the client_id (J2)".into())
        }
    }
}

/// Checks the signature with `key`.
pub fn verify_signature(assertion: &str, key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    let mut v = Validation::new(alg);
    // Claims are checked by `check_claims`, with messages that say what to fix.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(assertion, key, &v)
        .map(|_| ())
        .map_err(|_| {
            "the client_assertion signature does not verify with the registered key of that kid"
                .into()
        })
}

/// What the replay cache needs from verified claims.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    /// `jti`.
    pub jti: String,
    /// `exp`, Unix seconds.
    pub exp: i64,
}

/// Checks `aud` (exactly our token URL), `exp` (present, not passed, at most five minutes
/// ahead), `nbf` if present, and that there is a `jti` (J2, J3). `now` is Unix seconds.
pub fn check_claims(
    claims: &Map<String, Value>,
    token_url: &str,
    now: i64,
) -> Result<Checked, String> {
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == token_url,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(token_url)),
        _ => {
            return Err(format!(
                "the client_assertion has no aud; it must be the token endpoint URL {token_url} (J2)"
            ));
        }
    };
    if !aud_ok {
        return Err(format!(
            "the client_assertion aud {} is not this token endpoint; it must be exactly {token_url} (J2)",
            claims["aud"]
        ));
    }
    let exp = match claims.get("exp") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
    .ok_or("the client_assertion has no numeric exp (J2)")?;
    if exp + CLOCK_SKEW_SECONDS < now {
        return Err(format!(
            "the client_assertion expired {} seconds ago; sign a new one",
            now - exp
        ));
    }
    if exp > now + MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS {
        return Err(format!(
            "the client_assertion exp is {} seconds ahead; it may be at most {MAX_LIFETIME_SECONDS} (J2)",
            exp - now
        ));
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf
            .as_i64()
            .ok_or("the client_assertion nbf is not a number")?;
        if nbf > now + CLOCK_SKEW_SECONDS {
            return Err("the client_assertion is not valid yet (nbf is in the future)".into());
        }
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= MAX_JTI_LEN => j.to_string(),
        Some(j) if !j.is_empty() => {
            return Err(format!(
                "the client_assertion jti is longer than {MAX_JTI_LEN} characters"
            ));
        }
        _ => {
            return Err(
                "the client_assertion has no jti; each assertion needs a unique one (J2)".into(),
            );
        }
    };
    Ok(Checked { jti, exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwt(header: Value, claims: Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn header_rules_j1_r3() {
        let c = json!({"iss":"a","sub":"a"});
        let ok = parse(&jwt(
            json!({"alg":"ES384","kid":"k","typ":"JWT"}),
            c.clone(),
        ))
        .unwrap();
        assert_eq!(
            (ok.alg, ok.kid.as_str(), ok.jku),
            (Algorithm::ES384, "k", None)
        );
        assert!(
            parse(&jwt(json!({"alg":"RS384","kid":"k"}), c.clone())).is_ok(),
            "typ is optional"
        );
        for (h, needle) in [
            (json!({"alg":"none","kid":"k"}), "none"),
            (json!({"alg":"HS256","kid":"k"}), "symmetric"),
            (json!({"alg":"RS256","kid":"k"}), "not supported"),
            (json!({"kid":"k"}), "no alg"),
            (json!({"alg":"RS384"}), "no kid"),
            (json!({"alg":"RS384","kid":"k","typ":"JWE"}), "typ"),
        ] {
            let e = parse(&jwt(h.clone(), c.clone())).unwrap_err();
            assert!(e.contains(needle), "{h}: {e}");
        }
        assert!(parse("abc").unwrap_err().contains("three"));
        assert!(parse("!!.!!.!!").unwrap_err().contains("base64url"));
    }

    #[test]
    fn iss_equals_sub_j2() {
        let h = json!({"alg":"ES384","kid":"k"});
        assert_eq!(
            issuer(&parse(&jwt(h.clone(), json!({"iss":"a","sub":"a"}))).unwrap()).unwrap(),
            "a"
        );
        assert!(issuer(&parse(&jwt(h.clone(), json!({"iss":"a","sub":"b"}))).unwrap()).is_err());
        assert!(issuer(&parse(&jwt(h.clone(), json!({"sub":"b"}))).unwrap()).is_err());
        assert!(issuer(&parse(&jwt(h, json!({"iss":"a"}))).unwrap()).is_err());
    }

    #[test]
    fn claims_j2_j3() {
        let url = "http://h/fhir/auth/token";
        let now = 1_000_000;
        let check = |c: Value| check_claims(c.as_object().unwrap(), url, now);
        let good = json!({"aud": url, "exp": now + 240, "jti": "j"});
        assert_eq!(
            check(good).unwrap(),
            Checked {
                jti: "j".into(),
                exp: now + 240
            }
        );
        assert!(check(json!({"aud": [url, "x"], "exp": now + 10, "jti": "j"})).is_ok());
        // Clock skew both ways.
        assert!(check(json!({"aud": url, "exp": now - 30, "jti": "j"})).is_ok());
        assert!(check(json!({"aud": url, "exp": now + 330, "jti": "j"})).is_ok());
        for (c, needle) in [
            (
                json!({"aud": "http://h/fhir", "exp": now + 10, "jti": "j"}),
                "aud",
            ),
            (
                json!({"aud": format!("{url}/"), "exp": now + 10, "jti": "j"}),
                "aud",
            ),
            (json!({"exp": now + 10, "jti": "j"}), "no aud"),
            (json!({"aud": url, "jti": "j"}), "exp"),
            (json!({"aud": url, "exp": "soon", "jti": "j"}), "exp"),
            (json!({"aud": url, "exp": now - 61, "jti": "j"}), "expired"),
            (json!({"aud": url, "exp": now + 400, "jti": "j"}), "ahead"),
            (json!({"aud": url, "exp": now + 10}), "jti"),
            (json!({"aud": url, "exp": now + 10, "jti": ""}), "jti"),
            (
                json!({"aud": url, "exp": now + 10, "jti": "j", "nbf": now + 100}),
                "not valid yet",
            ),
        ] {
            let e = check(c.clone()).unwrap_err();
            assert!(e.contains(needle), "{c}: {e}");
        }
    }
}
