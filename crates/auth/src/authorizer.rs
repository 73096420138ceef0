//! The one question every transport asks: may these credentials read these
//! channels?
//!
//! Channels on the public list need nothing. For the others, a request
//! that carries a token is decided by the token when a verifier is
//! configured; otherwise the backend hook, when configured, decides; with
//! neither, the request is unauthorized. Checking is all-or-nothing per
//! source: a token is never combined with the hook for the channels it
//! does not cover, so that one request has one answer an operator can
//! explain.
//!
//! It knows nothing of status codes, frames or streams: transports map the
//! [`Decision`] to their answers and watch [`Grant::expires_at`].

use std::{sync::Arc, time::Duration};

use herald_bus::ChannelName;
use http::Request;

use crate::{
    Config, Credentials, Decision, Error, Grant, Patterns, Reason,
    hook::{Answer, Hook},
    token::Verifier,
};

/// Decides subscriptions. Cheap to clone; [`Authorizer::default`] lets
/// everyone read everything.
#[derive(Clone, Default)]
pub struct Authorizer {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    public: Patterns,
    verifier: Option<Verifier>,
    hook: Option<Hook>,
    cookie: Option<String>,
    refresh_grace: Duration,
}

impl Authorizer {
    /// Builds the checks `config` asks for. Fails, naming the field, when a
    /// secret is too short, a key unreadable, a hook URL unusable, or
    /// settings contradict each other (both a secret and a key; an issuer,
    /// audience or cookie with no verifier).
    pub fn new(config: Config) -> Result<Self, Error> {
        if !config.is_enabled() {
            if let Some(field) = needs_verifier(&config) {
                return Err(Error::new(
                    field,
                    "has no effect without jwt_secret or jwt_key",
                ));
            }
            return Ok(Authorizer::default());
        }
        let verifier = match (&config.jwt_secret, &config.jwt_key) {
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    "jwt_key",
                    "give either a secret or a key, not both",
                ));
            }
            (Some(secret), None) => {
                Some(Verifier::secret(secret.as_bytes()).map_err(|m| Error::new("jwt_secret", m))?)
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|e| Error::new("jwt_key", format!("cannot read {path}: {e}")))?;
                Some(Verifier::public_key(&pem).map_err(|m| Error::new("jwt_key", m))?)
            }
            (None, None) => {
                if let Some(field) = needs_verifier(&config) {
                    return Err(Error::new(
                        field,
                        "has no effect without jwt_secret or jwt_key",
                    ));
                }
                None
            }
        };
        let verifier = verifier.map(|v| {
            let v = match &config.issuer {
                Some(issuer) => v.issuer(issuer),
                None => v,
            };
            match &config.audience {
                Some(audience) => v.audience(audience),
                None => v,
            }
        });
        if config.hook_timeout.is_zero() {
            return Err(Error::new("hook_timeout", "must be more than zero"));
        }
        let hook = config
            .hook_url
            .as_deref()
            .map(|url| Hook::new(url, config.hook_timeout, config.hook_cache_entries))
            .transpose()
            .map_err(|m| Error::new("hook_url", m))?;
        if let Some(cookie) = &config.cookie {
            if cookie.is_empty() || !cookie.bytes().all(is_cookie_name_byte) {
                return Err(Error::new("cookie", "is not a valid cookie name"));
            }
        }
        Ok(Authorizer {
            inner: Some(Arc::new(Inner {
                public: config.public_channels,
                verifier,
                hook,
                cookie: config.cookie,
                refresh_grace: config.refresh_grace,
            })),
        })
    }

    /// Whether anything is checked; when not, every channel is public.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The credentials a request carries, reading the configured cookie.
    pub fn credentials<B>(&self, req: &Request<B>) -> Credentials {
        let cookie = self.inner.as_ref().and_then(|i| i.cookie.as_deref());
        Credentials::from_request(req, cookie)
    }

    /// How long a WebSocket whose token expired may take to send a fresh
    /// one.
    pub fn refresh_grace(&self) -> Duration {
        self.inner
            .as_ref()
            .map_or(Config::default().refresh_grace, |i| i.refresh_grace)
    }

    /// Whether `channel` may be read without credentials (on the public
    /// list, or authorization is off). When a decision refuses a
    /// subscription as a whole, its public channels are still readable.
    pub fn is_public(&self, channel: &ChannelName) -> bool {
        self.inner.as_ref().is_none_or(|i| i.public.covers(channel))
    }

    /// The algorithm tokens must be signed with, when tokens are accepted.
    pub fn algorithm(&self) -> Option<&'static str> {
        Some(self.inner.as_ref()?.verifier.as_ref()?.algorithm())
    }

    /// Whether `credentials` may read `channels` over `transport` (`poll`,
    /// `longpoll`, `sse` or `ws`, as the hook is told).
    pub async fn authorize(
        &self,
        credentials: &Credentials,
        channels: &[ChannelName],
        transport: &'static str,
    ) -> Decision {
        let Some(inner) = &self.inner else {
            return Decision::Allowed(Grant::default());
        };
        let private: Vec<ChannelName> = channels
            .iter()
            .filter(|c| !self.is_public(c))
            .cloned()
            .collect();
        if private.is_empty() {
            return Decision::Allowed(Grant::default());
        }
        if let (Some(verifier), Some(token)) = (&inner.verifier, credentials.token()) {
            return match verifier.verify(token) {
                Ok(v) => decide(
                    &private,
                    Some(&v.channels),
                    Grant {
                        sub: v.sub,
                        expires_at: Some(v.expires_at),
                    },
                ),
                Err(reason) => Decision::Unauthorized(reason),
            };
        }
        let Some(hook) = &inner.hook else {
            return Decision::Unauthorized(Reason::Missing);
        };
        if credentials.is_empty() {
            return Decision::Unauthorized(Reason::Missing);
        }
        match hook.ask(credentials, &private, transport).await {
            Answer::Allow { only, sub } => decide(
                &private,
                only.as_ref(),
                Grant {
                    sub,
                    expires_at: None,
                },
            ),
            Answer::Unauthorized => Decision::Unauthorized(Reason::Refused),
            Answer::Forbidden => Decision::Forbidden {
                refused: private,
                grant: Grant::default(),
            },
            Answer::Unavailable => Decision::Unavailable,
        }
    }
}

/// Allowed when `covered` (everything when `None`) covers every private
/// channel, forbidden for the rest otherwise.
fn decide(private: &[ChannelName], covered: Option<&Patterns>, grant: Grant) -> Decision {
    let refused: Vec<ChannelName> = match covered {
        None => Vec::new(),
        Some(patterns) => private
            .iter()
            .filter(|c| !patterns.covers(c))
            .cloned()
            .collect(),
    };
    if refused.is_empty() {
        Decision::Allowed(grant)
    } else {
        Decision::Forbidden { refused, grant }
    }
}

/// The first field set that only means something with a verifier.
fn needs_verifier(config: &Config) -> Option<&'static str> {
    if config.jwt_secret.is_some() || config.jwt_key.is_some() {
        return None;
    }
    [
        ("issuer", config.issuer.is_some()),
        ("audience", config.audience.is_some()),
        (
            "cookie",
            config.cookie.is_some() && config.hook_url.is_none(),
        ),
    ]
    .into_iter()
    .find_map(|(field, set)| set.then_some(field))
}

/// RFC 6265's cookie-name token characters.
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::token::tests::{SECRET, hs256, now};

    fn ch(names: &[&str]) -> Vec<ChannelName> {
        names.iter().map(|n| ChannelName::new(n).unwrap()).collect()
    }

    fn with_secret() -> Authorizer {
        Authorizer::new(Config {
            jwt_secret: Some(String::from_utf8(SECRET.to_vec()).unwrap()),
            public_channels: Patterns::parse_list("lobby,pub.*").unwrap(),
            ..Config::default()
        })
        .unwrap()
    }

    fn bearer(token: &str) -> Credentials {
        Credentials::token_only(token)
    }

    #[tokio::test]
    async fn with_nothing_configured_every_channel_is_public() {
        let open = Authorizer::new(Config::default()).unwrap();
        assert!(!open.is_enabled());
        let d = open
            .authorize(&Credentials::default(), &ch(&["any"]), "sse")
            .await;
        assert_eq!(d, Decision::Allowed(Grant::default()));
    }

    #[tokio::test]
    async fn public_channels_need_nothing_and_others_need_a_token() {
        let auth = with_secret();
        let none = Credentials::default();
        let d = auth
            .authorize(&none, &ch(&["lobby", "pub.x"]), "poll")
            .await;
        assert_eq!(d, Decision::Allowed(Grant::default()));
        let d = auth
            .authorize(&none, &ch(&["lobby", "secret"]), "poll")
            .await;
        assert_eq!(d, Decision::Unauthorized(Reason::Missing));
    }

    #[tokio::test]
    async fn a_token_grants_its_channels_and_forbids_the_rest() {
        let auth = with_secret();
        let exp = now() + 60;
        let token = hs256(&json!({"exp": exp, "sub": "u1", "channels": ["user.1.*"]}));
        let d = auth
            .authorize(&bearer(&token), &ch(&["lobby", "user.1.inbox"]), "sse")
            .await;
        let grant = d.allowed().expect("allowed").clone();
        assert_eq!(grant.sub.as_deref(), Some("u1"));
        assert!(grant.expires_at.is_some());

        let d = auth
            .authorize(
                &bearer(&token),
                &ch(&["user.1.inbox", "user.2.inbox", "lobby"]),
                "ws",
            )
            .await;
        let Decision::Forbidden { refused, grant } = d else {
            panic!("{d:?}")
        };
        assert_eq!(refused, ch(&["user.2.inbox"]));
        assert_eq!(grant.sub.as_deref(), Some("u1"));
    }

    #[tokio::test]
    async fn a_bad_token_is_unauthorized_even_next_to_public_channels() {
        let auth = with_secret();
        let expired = hs256(&json!({"exp": now() - 5, "channels": ["*"]}));
        let d = auth
            .authorize(&bearer(&expired), &ch(&["lobby", "x"]), "poll")
            .await;
        assert_eq!(d, Decision::Unauthorized(Reason::Expired));
        let d = auth.authorize(&bearer("junk"), &ch(&["x"]), "poll").await;
        assert_eq!(d, Decision::Unauthorized(Reason::Malformed));
    }

    #[test]
    fn contradictory_or_useless_settings_are_refused_naming_the_field() {
        let secret = Some("s".repeat(32));
        let both = Config {
            jwt_secret: secret.clone(),
            jwt_key: Some("key.pem".into()),
            ..Config::default()
        };
        assert_eq!(Authorizer::new(both).err().unwrap().field, "jwt_key");
        let short = Config {
            jwt_secret: Some("short".into()),
            ..Config::default()
        };
        assert_eq!(Authorizer::new(short).err().unwrap().field, "jwt_secret");
        let lonely_issuer = Config {
            issuer: Some("me".into()),
            ..Config::default()
        };
        assert_eq!(
            Authorizer::new(lonely_issuer).err().unwrap().field,
            "issuer"
        );
        let lonely_cookie = Config {
            cookie: Some("t".into()),
            public_channels: Patterns::parse_list("a").unwrap(),
            ..Config::default()
        };
        assert_eq!(
            Authorizer::new(lonely_cookie).err().unwrap().field,
            "cookie"
        );
        let bad_cookie = Config {
            jwt_secret: secret.clone(),
            cookie: Some("a b".into()),
            ..Config::default()
        };
        assert_eq!(Authorizer::new(bad_cookie).err().unwrap().field, "cookie");
        let zero = Config {
            jwt_secret: secret,
            hook_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(Authorizer::new(zero).err().unwrap().field, "hook_timeout");
        let https = Config {
            hook_url: Some("https://app.example/auth".into()),
            ..Config::default()
        };
        assert_eq!(Authorizer::new(https).err().unwrap().field, "hook_url");
    }

    #[test]
    fn a_key_file_is_read_and_an_unreadable_one_named() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let rsa = Config {
            jwt_key: Some(format!("{dir}/testdata/rsa-public.pem")),
            ..Config::default()
        };
        assert_eq!(Authorizer::new(rsa).unwrap().algorithm(), Some("RS256"));
        let ec = Config {
            jwt_key: Some(format!("{dir}/testdata/ec-public.pem")),
            ..Config::default()
        };
        assert_eq!(Authorizer::new(ec).unwrap().algorithm(), Some("ES256"));
        for path in ["/nonexistent/key.pem", &format!("{dir}/testdata/README.md")] {
            let bad = Config {
                jwt_key: Some(path.into()),
                ..Config::default()
            };
            assert_eq!(Authorizer::new(bad).err().unwrap().field, "jwt_key");
        }
    }

    #[test]
    fn only_public_channels_turns_checking_on_and_refuses_the_rest() {
        let auth = Authorizer::new(Config {
            public_channels: Patterns::parse_list("lobby").unwrap(),
            ..Config::default()
        })
        .unwrap();
        assert!(auth.is_enabled());
        assert_eq!(auth.algorithm(), None);
    }
}
