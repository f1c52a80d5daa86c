//! Private keys for SMART Backend Services: loading, signing the client assertion, generating.
//!
//! A client SHALL be able to sign with RS384 and ES384 (R3), so a [`SigningKey`] is either an
//! RSA key (≥ 2048 bits) or a P-384 key. Keys come as PEM (PKCS#8, or the older PKCS#1 and SEC1
//! forms OpenSSL still writes) or as a private JWK / JWKS. Whatever the input, the public half
//! is kept as a JWK so the `kid` can default to its RFC 7638 thumbprint, which is also the
//! `kid` that [`generate`] (behind `fhir-bulk keygen`) writes into the public JWKS: a PEM from
//! keygen and the JWKS registered with the server then agree without extra flags.

use crate::error::{Error, Result};
use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p384::elliptic_curve::sec1::ToEncodedPoint;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;

/// The two signing algorithms SMART Backend Services requires clients to support (R3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// ECDSA on P-384 with SHA-384.
    Es384,
}

impl KeyAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Rs384 => "RS384",
            KeyAlg::Es384 => "ES384",
        }
    }

    /// Parses `RS384` or `ES384` (case-insensitive).
    pub fn parse(s: &str) -> Option<KeyAlg> {
        match s.to_ascii_uppercase().as_str() {
            "RS384" => Some(KeyAlg::Rs384),
            "ES384" => Some(KeyAlg::Es384),
            _ => None,
        }
    }
}

/// The private key material itself.
enum Material {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ec(p384::SecretKey),
}

/// A private key ready to sign client assertions (J1, J2). `Debug` shows only alg and kid.
#[derive(Clone)]
pub struct SigningKey {
    alg: KeyAlg,
    kid: String,
    encoding: EncodingKey,
    public_jwk: Value,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("private", &"***")
            .finish()
    }
}

/// The claims of the authentication JWT (J2).
#[derive(serde::Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
}

/// How far ahead the assertion expires. J2 allows at most 5 minutes; 4 leaves a minute for a
/// server clock that runs behind ours.
const ASSERTION_LIFETIME_SECS: i64 = 240;

impl SigningKey {
    /// Loads a key file: PEM (PKCS#8, PKCS#1, SEC1), a private JWK, or a JWKS holding one.
    /// `kid` overrides the JWK's `kid` (and picks the key out of a JWKS with several).
    pub fn from_file(path: &Path, kid: Option<&str>) -> Result<SigningKey> {
        let err = |reason: String| Error::Key {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        SigningKey::from_text(&text, kid).map_err(err)
    }

    /// Like [`SigningKey::from_file`], from the file's text.
    pub fn from_text(text: &str, kid: Option<&str>) -> Result<SigningKey, String> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            let v: Value =
                serde_json::from_str(trimmed).map_err(|e| format!("not valid JSON: {e}"))?;
            let (material, jwk_kid) = material_from_jwk_or_jwks(&v, kid)?;
            SigningKey::from_material(material, kid.map(str::to_string).or(jwk_kid))
        } else if trimmed.contains("-----BEGIN") {
            SigningKey::from_material(material_from_pem(text)?, kid.map(str::to_string))
        } else {
            Err("neither PEM nor JSON (JWK/JWKS)".into())
        }
    }

    fn from_material(material: Material, kid: Option<String>) -> Result<SigningKey, String> {
        let public_jwk = public_jwk(&material);
        let kid = kid.unwrap_or_else(|| thumbprint(&public_jwk));
        let (alg, encoding) = match &material {
            Material::Rsa(key) => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                if key.size() * 8 < 2048 {
                    return Err(format!(
                        "RSA keys need at least 2048 bits, this one has {}",
                        key.size() * 8
                    ));
                }
                let der = key.to_pkcs1_der().map_err(|e| e.to_string())?;
                (KeyAlg::Rs384, EncodingKey::from_rsa_der(der.as_bytes()))
            }
            Material::Ec(key) => {
                use p384::pkcs8::EncodePrivateKey;
                let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
                (KeyAlg::Es384, EncodingKey::from_ec_der(der.as_bytes()))
            }
        };
        let mut public_jwk = public_jwk;
        public_jwk["kid"] = json!(kid);
        public_jwk["alg"] = json!(alg.as_str());
        public_jwk["use"] = json!("sig");
        let key = SigningKey {
            alg,
            kid,
            encoding,
            public_jwk,
        };
        // Sign once now, so a key the signer refuses is reported as a key error, not a token error.
        key.client_assertion("probe", "https://probe.invalid/token", None)
            .map_err(|e| format!("cannot sign with it: {e}"))?;
        Ok(key)
    }

    /// RS384 or ES384.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// The `kid` sent in the JWT header (J1).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (with `kid`, `alg`, `use`), as the server registers it (R2).
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// Signs a fresh client assertion: header `alg`, `kid`, `typ: JWT`, optional `jku` (J1);
    /// claims `iss` = `sub` = `client_id`, `aud` = the token URL, `exp` 4 minutes ahead, a
    /// random `jti` (J2). Each call gives a new `jti`, since each JWT is used once.
    pub fn client_assertion(
        &self,
        client_id: &str,
        token_url: &str,
        jku: Option<&str>,
    ) -> Result<String, String> {
        let mut header = Header::new(match self.alg {
            KeyAlg::Rs384 => Algorithm::RS384,
            KeyAlg::Es384 => Algorithm::ES384,
        });
        header.typ = Some("JWT".into());
        header.kid = Some(self.kid.clone());
        header.jku = jku.map(str::to_string);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AssertionClaims {
            iss: client_id,
            sub: client_id,
            aud: token_url,
            exp: now + ASSERTION_LIFETIME_SECS,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())
    }
}

fn b64_field(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the JWK has no '{name}'"))?;
    B64.decode(s.trim_end_matches('='))
        .map_err(|_| format!("the JWK's '{name}' is not base64url"))
}

/// The private key of a JWK, or of the one JWK in a JWKS that holds a private key (or whose
/// `kid` matches), with that JWK's `kid`.
fn material_from_jwk_or_jwks(
    v: &Value,
    kid: Option<&str>,
) -> Result<(Material, Option<String>), String> {
    let jwk = if let Some(keys) = v.get("keys").and_then(Value::as_array) {
        let private: Vec<&Value> = keys
            .iter()
            .filter(|k| k.get("d").is_some())
            .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
            .collect();
        match private.as_slice() {
            [one] => *one,
            [] if keys.is_empty() => return Err("the JWKS holds no keys".into()),
            [] => {
                return Err(match kid {
                    Some(kid) => format!("the JWKS holds no private key with kid '{kid}'"),
                    None => {
                        "the JWKS holds only public keys (no 'd'); use the private key file".into()
                    }
                });
            }
            many => {
                return Err(format!(
                    "the JWKS holds {} private keys; pick one with --kid",
                    many.len()
                ));
            }
        }
    } else {
        v
    };
    if jwk.get("d").is_none() {
        return Err("the JWK is a public key (no 'd'); use the private key".into());
    }
    let jwk_kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
    let material = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            let int = |name: &str| b64_field(jwk, name).map(|b| rsa::BigUint::from_bytes_be(&b));
            let primes = match (int("p"), int("q")) {
                (Ok(p), Ok(q)) => vec![p, q],
                _ => Vec::new(),
            };
            let mut key =
                rsa::RsaPrivateKey::from_components(int("n")?, int("e")?, int("d")?, primes)
                    .map_err(|e| format!("not a valid RSA JWK: {e}"))?;
            key.precompute()
                .map_err(|e| format!("not a valid RSA JWK: {e}"))?;
            key.validate()
                .map_err(|e| format!("not a valid RSA JWK: {e}"))?;
            Material::Rsa(Box::new(key))
        }
        Some("EC") => {
            let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
            if crv != "P-384" {
                return Err(format!("ES384 needs curve P-384, the JWK has '{crv}'"));
            }
            let key = p384::SecretKey::from_slice(&b64_field(jwk, "d")?)
                .map_err(|_| "the JWK's 'd' is not a P-384 private key".to_string())?;
            // A JWK whose x/y do not belong to d would sign JWTs no server can verify.
            let point = key.public_key().to_encoded_point(false);
            if let (Ok(x), Ok(y)) = (b64_field(jwk, "x"), b64_field(jwk, "y"))
                && (point.x().map(|a| a.as_slice()) != Some(&x[..])
                    || point.y().map(|a| a.as_slice()) != Some(&y[..]))
            {
                return Err("the JWK's x/y do not match its private key".into());
            }
            Material::Ec(key)
        }
        other => {
            return Err(format!(
                "unsupported key type {other:?}; RS384 needs RSA, ES384 needs EC P-384"
            ));
        }
    };
    Ok((material, jwk_kid))
}

/// The PEM block labelled `label`, from `-----BEGIN` to `-----END` (files from `openssl
/// ecparam -genkey` hold an `EC PARAMETERS` block before the key).
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

fn material_from_pem(text: &str) -> Result<Material, String> {
    use p384::pkcs8::DecodePrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    if pem_block(text, "ENCRYPTED PRIVATE KEY").is_some() {
        return Err("encrypted keys are not supported; decrypt it with `openssl pkcs8 -in KEY -out PLAIN.pem`".into());
    }
    if let Some(block) = pem_block(text, "PRIVATE KEY") {
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(block) {
            return Ok(Material::Rsa(Box::new(key)));
        }
        return p384::SecretKey::from_pkcs8_pem(block)
            .map(Material::Ec)
            .map_err(|_| "the PKCS#8 key is neither RSA nor EC P-384 (ES384 needs P-384)".into());
    }
    if let Some(block) = pem_block(text, "RSA PRIVATE KEY") {
        return rsa::RsaPrivateKey::from_pkcs1_pem(block)
            .map(|k| Material::Rsa(Box::new(k)))
            .map_err(|e| format!("not a valid PKCS#1 RSA key: {e}"));
    }
    if let Some(block) = pem_block(text, "EC PRIVATE KEY") {
        return p384::SecretKey::from_sec1_pem(block)
            .map(Material::Ec)
            .map_err(|_| "not a P-384 EC key (ES384 needs P-384)".into());
    }
    if text.contains("PUBLIC KEY-----") || text.contains("CERTIFICATE-----") {
        return Err("the file holds a public key or certificate, not the private key".into());
    }
    Err("no PRIVATE KEY block found".into())
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn public_jwk(material: &Material) -> Value {
    match material {
        Material::Rsa(key) => json!({
            "kty": "RSA",
            "n": b64(&key.n().to_bytes_be()),
            "e": b64(&key.e().to_bytes_be()),
        }),
        Material::Ec(key) => {
            let point = key.public_key().to_encoded_point(false);
            json!({
                "kty": "EC",
                "crv": "P-384",
                "x": b64(point.x().map(|a| a.as_slice()).unwrap_or_default()),
                "y": b64(point.y().map(|a| a.as_slice()).unwrap_or_default()),
            })
        }
    }
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url): the required members in lexical order.
pub fn thumbprint(jwk: &Value) -> String {
    let s = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // Written by hand: the canonical form has no whitespace and a fixed member order.
    let canonical = match s("kty").as_str() {
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
        _ => format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            s("crv"),
            s("kty"),
            s("x"),
            s("y")
        ),
    };
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// A new key pair from [`generate`].
pub struct GeneratedKey {
    /// The `kid` of the key (the thumbprint unless one was given).
    pub kid: String,
    /// The private key, PEM PKCS#8.
    pub private_pem: Secret,
    /// The private key as a JWKS with one JWK.
    pub private_jwks: Secret,
    /// The public JWKS the server registers (R1, R2): `kty`, `kid`, `alg`, `use`, `n`/`e` or `crv`/`x`/`y`.
    pub public_jwks: Value,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .field("public_jwks", &self.public_jwks)
            .finish_non_exhaustive()
    }
}

/// Generates a key pair: RSA 2048 for RS384, P-384 for ES384.
pub fn generate(alg: KeyAlg, kid: Option<&str>) -> Result<GeneratedKey, String> {
    use p384::pkcs8::{EncodePrivateKey, LineEnding};
    let mut rng = rand::rngs::OsRng;
    let (material, pem) = match alg {
        KeyAlg::Rs384 => {
            let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?;
            let pem = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF)
                .map_err(|e| e.to_string())?;
            (Material::Rsa(Box::new(key)), pem.to_string())
        }
        KeyAlg::Es384 => {
            let key = p384::SecretKey::random(&mut rng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?;
            (Material::Ec(key), pem.to_string())
        }
    };
    let mut public = public_jwk(&material);
    let kid = kid
        .map(str::to_string)
        .unwrap_or_else(|| thumbprint(&public));
    public["kid"] = json!(kid);
    public["alg"] = json!(alg.as_str());
    public["use"] = json!("sig");
    let mut private = public.clone();
    match &material {
        Material::Rsa(key) => {
            let primes = key.primes();
            private["d"] = json!(b64(&key.d().to_bytes_be()));
            private["p"] = json!(b64(&primes[0].to_bytes_be()));
            private["q"] = json!(b64(&primes[1].to_bytes_be()));
            if let (Some(dp), Some(dq), Some(qi)) = (key.dp(), key.dq(), key.crt_coefficient()) {
                private["dp"] = json!(b64(&dp.to_bytes_be()));
                private["dq"] = json!(b64(&dq.to_bytes_be()));
                private["qi"] = json!(b64(&qi.to_bytes_be()));
            }
        }
        Material::Ec(key) => private["d"] = json!(b64(&key.to_bytes())),
    }
    let private_jwks =
        serde_json::to_string_pretty(&json!({ "keys": [private] })).map_err(|e| e.to_string())?;
    Ok(GeneratedKey {
        kid,
        private_pem: Secret::new(pem),
        private_jwks: Secret::new(private_jwks),
        public_jwks: json!({ "keys": [public] }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let jwk = json!({"kty":"RSA","e":"AQAB","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// R3: both algorithms; PEM and JWKS forms of one key load to the same public key and kid.
    #[test]
    fn es384_round_trips_through_pem_and_jwks() {
        let g = generate(KeyAlg::Es384, None).unwrap();
        let from_pem = SigningKey::from_text(g.private_pem.expose(), None).unwrap();
        let from_jwks = SigningKey::from_text(g.private_jwks.expose(), None).unwrap();
        assert_eq!(from_pem.alg(), KeyAlg::Es384);
        assert_eq!(from_pem.kid(), g.kid);
        assert_eq!(from_jwks.kid(), g.kid);
        assert_eq!(from_pem.public_jwk(), &g.public_jwks["keys"][0]);
        assert_eq!(from_jwks.public_jwk(), &g.public_jwks["keys"][0]);
        let single_jwk =
            serde_json::from_str::<Value>(g.private_jwks.expose()).unwrap()["keys"][0].to_string();
        assert_eq!(
            SigningKey::from_text(&single_jwk, Some("other"))
                .unwrap()
                .kid(),
            "other"
        );
    }

    /// R3: RS384 keys load from PKCS#8, PKCS#1 and JWKS; EC keys also from SEC1.
    #[test]
    fn loads_every_key_format() {
        use p384::pkcs8::LineEnding;
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let g = generate(KeyAlg::Rs384, None).unwrap();
        let pkcs8 = SigningKey::from_text(g.private_pem.expose(), None).unwrap();
        assert_eq!(pkcs8.alg(), KeyAlg::Rs384);
        assert_eq!(pkcs8.kid(), g.kid);
        let from_jwks = SigningKey::from_text(g.private_jwks.expose(), None).unwrap();
        assert_eq!(from_jwks.public_jwk(), pkcs8.public_jwk());
        let rsa_key = {
            use rsa::pkcs8::DecodePrivateKey;
            rsa::RsaPrivateKey::from_pkcs8_pem(g.private_pem.expose()).unwrap()
        };
        let pkcs1 = rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert_eq!(SigningKey::from_text(&pkcs1, None).unwrap().kid(), g.kid);

        let ec = p384::SecretKey::random(&mut rand::rngs::OsRng);
        let sec1 = format!(
            "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n{}",
            ec.to_sec1_pem(LineEnding::LF).unwrap().as_str()
        );
        assert_eq!(
            SigningKey::from_text(&sec1, Some("mine")).unwrap().kid(),
            "mine"
        );
        assert!(
            SigningKey::from_text(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA\n-----END ENCRYPTED PRIVATE KEY-----",
                None
            )
            .unwrap_err()
            .contains("encrypted")
        );
    }

    #[test]
    fn rejects_public_keys_wrong_curves_and_garbage() {
        let g = generate(KeyAlg::Es384, Some("k1")).unwrap();
        let err = SigningKey::from_text(&g.public_jwks.to_string(), None).unwrap_err();
        assert!(err.contains("only public keys"), "{err}");
        let p256 = json!({"kty":"EC","crv":"P-256","d":"AA","x":"AA","y":"AA"}).to_string();
        assert!(
            SigningKey::from_text(&p256, None)
                .unwrap_err()
                .contains("P-384")
        );
        assert!(SigningKey::from_text("hello", None).is_err());
        assert!(
            SigningKey::from_text(
                "-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----",
                None
            )
            .unwrap_err()
            .contains("public key")
        );
        let dbg = format!(
            "{:?} {:?}",
            SigningKey::from_text(g.private_pem.expose(), None).unwrap(),
            g
        );
        assert!(
            !dbg.contains(g.private_pem.expose().lines().nth(1).unwrap()),
            "{dbg}"
        );
    }
}
