//! Verifying signed tokens (JWT): which channels a token grants, to whom,
//! until when.
//!
//! One algorithm is accepted, the one the configured key implies: HS256 for
//! a shared secret, RS256 for an RSA public key, ES256 for a P-256 public
//! key. A token whose header names any other algorithm — `none` included,
//! or HS256 against an RSA key (the classic key-confusion forgery) — is
//! refused before its signature is looked at. `exp` is required and has no
//! leeway: a token is good until the second its `exp` names. `nbf`, when
//! present, is checked; `iss` and `aud` are checked when configured (and a
//! token carrying an `aud` is refused when no audience is configured, as
//! RFC 7519 asks).
//!
//! Signing is left out: backends mint tokens with their own JWT library
//! (see docs/security.md). Key rotation and JWKS discovery are left out too:
//! one key, loaded at start-up.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::{Patterns, Reason};

/// Shortest accepted HS256 secret, in bytes: RFC 7518 asks for a key at
/// least as long as the hash output.
pub const MIN_SECRET_LEN: usize = 32;

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The channels and patterns of the `channels` claim (none when absent).
    pub channels: Patterns,
    /// The `sub` claim.
    pub sub: Option<Arc<str>>,
    /// The `exp` claim.
    pub expires_at: SystemTime,
}

/// Checks tokens against one key and one algorithm.
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

/// The claims herald reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    /// Optional here so that a missing `exp` is reported as such by the
    /// validation rather than as a shape error.
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    sub: Option<String>,
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret`. Fails when the
    /// secret is shorter than [`MIN_SECRET_LEN`].
    pub(crate) fn secret(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "an HS256 secret must be at least {MIN_SECRET_LEN} bytes (it is {})",
                secret.len()
            ));
        }
        Ok(Verifier::with(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// A verifier for RS256 (RSA key) or ES256 (P-256 key) tokens, from a
    /// PEM public key. Fails when the PEM holds neither kind of key.
    pub(crate) fn public_key(pem: &[u8]) -> Result<Self, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Verifier::with(key, Algorithm::RS256));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Verifier::with(key, Algorithm::ES256));
        }
        Err("not an RSA or EC (P-256) public key in PEM format".into())
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.validate_nbf = true;
        Verifier { key, validation }
    }

    /// Accepts only tokens whose `iss` is `issuer`.
    pub(crate) fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Accepts only tokens whose `aud` names `audience`.
    pub(crate) fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// The algorithm tokens must be signed with.
    pub(crate) fn algorithm(&self) -> &'static str {
        match self.validation.algorithms.first() {
            Some(Algorithm::RS256) => "RS256",
            Some(Algorithm::ES256) => "ES256",
            _ => "HS256",
        }
    }

    /// Checks `token`; fails with the reason it is unusable.
    pub(crate) fn verify(&self, token: &str) -> Result<Verified, Reason> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| reason(e.kind()))?;
        let claims = data.claims;
        let exp = claims.exp.ok_or(Reason::NoExpiry)?;
        let channels = Patterns::from_items(&claims.channels).map_err(|_| Reason::Malformed)?;
        Ok(Verified {
            channels,
            sub: claims.sub.map(Arc::from),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }
}

fn reason(kind: &ErrorKind) -> Reason {
    match kind {
        ErrorKind::InvalidSignature => Reason::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Reason::WrongAlgorithm,
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => Reason::NoExpiry,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidIssuer
        | ErrorKind::InvalidAudience
        | ErrorKind::InvalidSubject
        | ErrorKind::ImmatureSignature => Reason::Invalid,
        _ => Reason::Malformed,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    use super::*;

    pub(crate) const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
    const RSA_PRIVATE: &[u8] = include_bytes!("../testdata/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../testdata/rsa-public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("../testdata/ec-private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../testdata/ec-public.pem");

    pub(crate) fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// An HS256 token with these claims, signed with [`SECRET`].
    pub(crate) fn hs256(claims: &Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
    }

    fn rs256(claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        sign(Algorithm::RS256, &key, claims)
    }

    fn es256(claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        sign(Algorithm::ES256, &key, claims)
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        encode(&Header::new(alg), claims, key).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn good() -> Value {
        json!({"exp": now() + 60, "sub": "user-42", "channels": ["news", "user.42.*"]})
    }

    fn hs() -> Verifier {
        Verifier::secret(SECRET).unwrap()
    }

    #[test]
    fn a_good_hs256_token_grants_its_channels_to_its_subject() {
        let v = hs().verify(&hs256(&good())).unwrap();
        assert_eq!(v.sub.as_deref(), Some("user-42"));
        assert_eq!(v.channels.to_string(), "news,user.42.*");
        let exp = v.expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(exp > now());
    }

    #[test]
    fn good_rs256_and_es256_tokens_are_accepted() {
        let rsa = Verifier::public_key(RSA_PUBLIC).unwrap();
        assert_eq!(rsa.algorithm(), "RS256");
        assert!(rsa.verify(&rs256(&good())).is_ok());
        let ec = Verifier::public_key(EC_PUBLIC).unwrap();
        assert_eq!(ec.algorithm(), "ES256");
        assert!(ec.verify(&es256(&good())).is_ok());
    }

    #[test]
    fn a_forged_signature_is_refused() {
        let other = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!");
        let forged = sign(Algorithm::HS256, &other, &good());
        assert_eq!(hs().verify(&forged), Err(Reason::BadSignature));

        // Claims changed after signing: the signature no longer matches.
        let token = hs256(&good());
        let mut parts: Vec<&str> = token.split('.').collect();
        let wider = b64(json!({"exp": now() + 60, "channels": ["*"]})
            .to_string()
            .as_bytes());
        parts[1] = &wider;
        assert_eq!(hs().verify(&parts.join(".")), Err(Reason::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64(good().to_string().as_bytes());
        for token in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
            let err = hs().verify(&token).unwrap_err();
            assert!(
                matches!(err, Reason::Malformed | Reason::WrongAlgorithm),
                "{err:?}"
            );
        }
        let rsa = Verifier::public_key(RSA_PUBLIC).unwrap();
        assert!(rsa.verify(&format!("{header}.{claims}.")).is_err());
    }

    #[test]
    fn an_hs256_token_is_refused_by_an_rsa_key_even_signed_with_the_public_key() {
        let rsa = Verifier::public_key(RSA_PUBLIC).unwrap();
        // The key-confusion forgery: the public key used as an HMAC secret.
        let confused = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC),
            &good(),
        );
        assert_eq!(rsa.verify(&confused), Err(Reason::WrongAlgorithm));
        assert_eq!(rsa.verify(&hs256(&good())), Err(Reason::WrongAlgorithm));
        assert_eq!(rsa.verify(&es256(&good())), Err(Reason::WrongAlgorithm));
    }

    #[test]
    fn an_rs256_token_is_refused_by_a_secret() {
        assert_eq!(hs().verify(&rs256(&good())), Err(Reason::WrongAlgorithm));
        let ec = Verifier::public_key(EC_PUBLIC).unwrap();
        assert_eq!(ec.verify(&rs256(&good())), Err(Reason::WrongAlgorithm));
    }

    #[test]
    fn expired_tokens_are_refused_without_leeway() {
        let claims = json!({"exp": now() - 2, "channels": ["news"]});
        assert_eq!(hs().verify(&hs256(&claims)), Err(Reason::Expired));
    }

    #[test]
    fn tokens_without_exp_are_refused() {
        let claims = json!({"channels": ["news"]});
        assert_eq!(hs().verify(&hs256(&claims)), Err(Reason::NoExpiry));
        let claims = json!({"exp": "tomorrow", "channels": ["news"]});
        assert!(hs().verify(&hs256(&claims)).is_err());
    }

    #[test]
    fn tokens_not_yet_valid_are_refused() {
        let claims = json!({"exp": now() + 60, "nbf": now() + 30});
        assert_eq!(hs().verify(&hs256(&claims)), Err(Reason::Invalid));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let v = hs().issuer("https://app.example").audience("herald");
        let claims = |iss: &str, aud: &str| json!({"exp": now() + 60, "iss": iss, "aud": aud});
        assert!(
            v.verify(&hs256(&claims("https://app.example", "herald")))
                .is_ok()
        );
        assert_eq!(
            v.verify(&hs256(&claims("https://evil.example", "herald"))),
            Err(Reason::Invalid)
        );
        assert_eq!(
            v.verify(&hs256(&claims("https://app.example", "other"))),
            Err(Reason::Invalid)
        );
        let missing = json!({"exp": now() + 60, "aud": "herald"});
        assert_eq!(v.verify(&hs256(&missing)), Err(Reason::Invalid));
    }

    #[test]
    fn malformed_tokens_and_claims_are_refused() {
        for token in ["", "abc", "a.b.c", "a.b", "...."] {
            assert_eq!(hs().verify(token), Err(Reason::Malformed), "{token:?}");
        }
        let bad_pattern = json!({"exp": now() + 60, "channels": ["a*b"]});
        assert_eq!(hs().verify(&hs256(&bad_pattern)), Err(Reason::Malformed));
        let not_a_list = json!({"exp": now() + 60, "channels": "news"});
        assert_eq!(hs().verify(&hs256(&not_a_list)), Err(Reason::Malformed));
    }

    #[test]
    fn a_token_without_channels_grants_none() {
        let v = hs().verify(&hs256(&json!({"exp": now() + 60}))).unwrap();
        assert!(v.channels.is_empty());
        assert_eq!(v.sub, None);
    }

    #[test]
    fn short_secrets_and_unknown_keys_are_refused() {
        assert!(Verifier::secret(b"short").is_err());
        assert!(Verifier::public_key(b"not a pem").is_err());
        assert!(Verifier::public_key(SECRET).is_err());
    }
}
