//! JWKS fetched by URL (R1, J4) and cached as HTTP caching allows, and picking the one key
//! a JWT names.
//!
//! Caching (J4: "SHALL NOT cache longer than its `Cache-Control` allows, and SHOULD cache
//! it for that long"): `max-age=N` keeps a set for N seconds (at most a day); `no-store`,
//! `no-cache` and `max-age=0` keep nothing, so every use fetches; without `Cache-Control` a
//! set is kept for [`DEFAULT_FRESHNESS`]. A JWT whose `kid` is not in a cached set makes
//! one refetch (the client may have rotated its key), but at most once per
//! `refetch_interval` per URL, so unknown kids cannot turn us into a fetch amplifier.
//!
//! Concurrency: the map sits behind a `std::sync::Mutex` held only to read or replace an
//! entry, never across a fetch. Two requests that miss at once both fetch; the later
//! answer wins, which is harmless and avoids a per-URL lock.

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a set without `Cache-Control` is kept.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);
/// The longest a set is kept, whatever `max-age` says.
const MAX_FRESHNESS: Duration = Duration::from_secs(24 * 3600);
/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A key set as we got it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The JWKS document.
    pub jwks: Arc<Value>,
    /// True if it came from the cache (so a refetch may find a newer key).
    pub from_cache: bool,
}

struct Entry {
    jwks: Arc<Value>,
    fetched_at: Instant,
    fresh_for: Duration,
}

/// Key sets by URL.
pub struct JwksCache {
    http: reqwest::Client,
    entries: Mutex<HashMap<String, Entry>>,
    refetch_interval: Duration,
}

impl JwksCache {
    /// A cache using `http` for fetches.
    pub fn new(http: reqwest::Client, refetch_interval: Duration) -> JwksCache {
        JwksCache {
            http,
            entries: Mutex::new(HashMap::new()),
            refetch_interval,
        }
    }

    /// The set at `url`: from the cache while fresh, else fetched.
    pub async fn get(&self, url: &str) -> Result<Fetched, String> {
        if let Some(jwks) = self.fresh(url) {
            return Ok(Fetched {
                jwks,
                from_cache: true,
            });
        }
        Ok(Fetched {
            jwks: self.fetch(url).await?,
            from_cache: false,
        })
    }

    /// After a `kid` was not found in `previous`: a newer set, if `previous` came from the
    /// cache and the last fetch is at least `refetch_interval` old; `None` otherwise.
    pub async fn refetch(
        &self,
        url: &str,
        previous: &Fetched,
    ) -> Result<Option<Arc<Value>>, String> {
        if !previous.from_cache {
            return Ok(None);
        }
        let recent = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries
                .get(url)
                .is_some_and(|e| e.fetched_at.elapsed() < self.refetch_interval)
        };
        if recent {
            return Ok(None);
        }
        self.fetch(url).await.map(Some)
    }

    fn fresh(&self, url: &str) -> Option<Arc<Value>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(url)
            .filter(|e| e.fetched_at.elapsed() < e.fresh_for)
            .map(|e| Arc::clone(&e.jwks))
    }

    async fn fetch(&self, url: &str) -> Result<Arc<Value>, String> {
        let fail = |why: String| format!("cannot fetch the JWKS at {url}: {why}");
        let mut resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let fresh_for = freshness(
            resp.headers()
                .get_all(reqwest::header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
        }
        let jwks: Value =
            serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON ({e})")))?;
        if !jwks.get("keys").is_some_and(Value::is_array) {
            return Err(fail("not a JWKS (no \"keys\" array)".into()));
        }
        let jwks = Arc::new(jwks);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Kept even when not fresh, to remember when it was fetched (refetch interval).
        entries.insert(
            url.to_string(),
            Entry {
                jwks: Arc::clone(&jwks),
                fetched_at: Instant::now(),
                fresh_for,
            },
        );
        tracing::debug!(url, fresh_for = fresh_for.as_secs(), "fetched a JWKS");
        Ok(jwks)
    }
}

/// How long a response may be reused, from its `Cache-Control` header values.
pub fn freshness<'a>(values: impl IntoIterator<Item = &'a str>) -> Duration {
    let mut max_age: Option<u64> = None;
    for directive in values.into_iter().flat_map(|v| v.split(',')) {
        let d = directive.trim();
        let (name, arg) = match d.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (d, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Duration::ZERO;
        }
        if name.eq_ignore_ascii_case("max-age") {
            // A malformed max-age is treated as stale (RFC 9111 §4.2.1).
            max_age = Some(arg.and_then(|a| a.parse().ok()).unwrap_or(0));
        }
    }
    match max_age {
        Some(secs) => Duration::from_secs(secs).min(MAX_FRESHNESS),
        None => DEFAULT_FRESHNESS,
    }
}

/// Why no key was picked.
#[derive(Debug, PartialEq, Eq)]
pub enum NoKey {
    /// No key has that `kid` and fits the algorithm (a refetch may help).
    Unknown,
    /// Several keys fit (J4 says fail).
    Ambiguous(usize),
    /// The one key that fits is malformed.
    Bad(String),
}

/// J4 step 3: the keys of `jwks` whose `kid` is `kid` (any kid when `None`) and whose `kty`
/// (and `crv`) fit `alg`; exactly one must remain.
pub fn select_key(jwks: &Value, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, NoKey> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let fits: Vec<&Value> = keys
        .iter()
        .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
        .filter(|k| key_fits(k, alg))
        .collect();
    match fits.as_slice() {
        [] => Err(NoKey::Unknown),
        [k] => decoding_key(k).map_err(NoKey::Bad),
        many => Err(NoKey::Ambiguous(many.len())),
    }
}

/// The `kty` (and `crv`) an algorithm needs; a key that states another `alg` or a `use`
/// other than `sig` does not fit.
fn key_fits(k: &Value, alg: Algorithm) -> bool {
    let s = |name: &str| k.get(name).and_then(Value::as_str);
    let kty_ok = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => s("kty") == Some("RSA"),
        Algorithm::ES256 => s("kty") == Some("EC") && s("crv") == Some("P-256"),
        Algorithm::ES384 => s("kty") == Some("EC") && s("crv") == Some("P-384"),
        _ => false,
    };
    let alg_ok = s("alg").is_none_or(|a| a == alg_name(alg));
    let use_ok = s("use").is_none_or(|u| u == "sig");
    kty_ok && alg_ok && use_ok
}

/// The JOSE name of an algorithm.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// A verification key from a public JWK (RSA `n`/`e`, EC `x`/`y`).
pub fn decoding_key(k: &Value) -> Result<DecodingKey, String> {
    let s = |name: &str| {
        k.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the key has no '{name}'"))
    };
    match s("kty")? {
        "RSA" => DecodingKey::from_rsa_components(s("n")?, s("e")?)
            .map_err(|e| format!("bad RSA key: {e}")),
        "EC" => DecodingKey::from_ec_components(s("x")?, s("y")?)
            .map_err(|e| format!("bad EC key: {e}")),
        other => Err(format!("key type '{other}' is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_control() {
        assert_eq!(freshness(["max-age=60"]), Duration::from_secs(60));
        assert_eq!(
            freshness(["public, max-age=120, must-revalidate"]),
            Duration::from_secs(120)
        );
        assert_eq!(freshness(["no-store"]), Duration::ZERO);
        assert_eq!(freshness(["max-age=600", "no-cache"]), Duration::ZERO);
        assert_eq!(freshness(["max-age=0"]), Duration::ZERO);
        assert_eq!(freshness(["max-age=abc"]), Duration::ZERO);
        assert_eq!(freshness(["max-age=99999999"]), MAX_FRESHNESS);
        assert_eq!(freshness([]), DEFAULT_FRESHNESS);
        assert_eq!(freshness(["public"]), DEFAULT_FRESHNESS);
    }

    #[test]
    fn key_selection_j4() {
        let ec = json!({"kty":"EC","kid":"a","crv":"P-384","x":"AA","y":"AA"});
        let rsa = json!({"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"});
        let set = json!({"keys":[ec, rsa]});
        // Same kid, different kty: the algorithm decides.
        assert!(select_key(&set, Some("a"), Algorithm::RS384).is_ok());
        assert_eq!(
            select_key(&set, Some("b"), Algorithm::RS384).err(),
            Some(NoKey::Unknown)
        );
        // A P-256 key does not fit ES384.
        let p256 = json!({"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"AA","y":"AA"}]});
        assert_eq!(
            select_key(&p256, Some("a"), Algorithm::ES384).err(),
            Some(NoKey::Unknown)
        );
        // Two fitting keys with one kid: fail.
        let twice = json!({"keys":[rsa_key("a"), rsa_key("a")]});
        assert_eq!(
            select_key(&twice, Some("a"), Algorithm::RS384).err(),
            Some(NoKey::Ambiguous(2))
        );
        // A key for another alg or for encryption does not fit.
        let enc = json!({"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB","use":"enc"}]});
        assert_eq!(
            select_key(&enc, Some("a"), Algorithm::RS384).err(),
            Some(NoKey::Unknown)
        );
        let other = json!({"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB","alg":"RS256"}]});
        assert_eq!(
            select_key(&other, Some("a"), Algorithm::RS384).err(),
            Some(NoKey::Unknown)
        );
        assert_eq!(
            select_key(&json!({}), Some("a"), Algorithm::RS384).err(),
            Some(NoKey::Unknown)
        );
    }

    fn rsa_key(kid: &str) -> Value {
        json!({"kty":"RSA","kid":kid,"n":"AQAB","e":"AQAB"})
    }
}
