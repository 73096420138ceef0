//! Subscriber authorization at the HTTP edge: asking the context's
//! [`Authorizer`](herald_auth::Authorizer) about a request, and what a
//! refusal looks like.
//!
//! Over HTTP a subscription is all-or-nothing: any channel refused refuses
//! the request. Where credentials come from and how they are judged is
//! herald-auth's business; which code and challenge a refusal gets is
//! decided here, once, for HTTP answers and WebSocket `error` frames alike.

use herald_auth::{Decision, Grant, Reason};
use herald_bus::ChannelName;
use http::Request;

use crate::{Code, Context, Error};

/// Whether the request's credentials may read `channels` over `transport`
/// (`poll`, `longpoll`, `sse`, `ws`): the grant, or the error to answer
/// (401 `unauthorized`, 403 `forbidden`, 503 `auth_unavailable`).
pub async fn authorize<B>(
    ctx: &Context,
    req: &Request<B>,
    channels: &[ChannelName],
    transport: &'static str,
) -> Result<Grant, Error> {
    if !ctx.auth.is_enabled() {
        return Ok(Grant::default());
    }
    let credentials = ctx.auth.credentials(req);
    match ctx.auth.authorize(&credentials, channels, transport).await {
        Decision::Allowed(grant) => {
            if let Some(sub) = grant.sub.as_deref() {
                tracing::Span::current().record("sub", tracing::field::display(sub));
            }
            tracing::debug!(
                sub = grant.sub.as_deref(),
                transport,
                "subscription authorized"
            );
            Ok(grant)
        }
        refused => Err(refusal(&refused)),
    }
}

/// The error a refused decision is answered with. An allowed decision is
/// not a refusal: asking is a caller's mistake and answers `internal`.
pub fn refusal(decision: &Decision) -> Error {
    match decision {
        // Nothing was sent, or the application's hook said no: a plain
        // challenge. A token was sent and is unusable: `invalid_token`.
        Decision::Unauthorized(reason @ (Reason::Missing | Reason::Refused)) => {
            Error::new(Code::Unauthorized, reason.to_string())
        }
        Decision::Unauthorized(reason) => Error::invalid_token(reason.to_string()),
        Decision::Forbidden { refused, .. } => {
            let names: Vec<&str> = refused.iter().map(ChannelName::as_str).collect();
            Error::new(
                Code::Forbidden,
                format!("not allowed to read {}", names.join(", ")),
            )
        }
        Decision::Unavailable => Error::from(Code::AuthUnavailable),
        Decision::Allowed(_) => Error::new(Code::Internal, "an allowed decision was refused"),
    }
}

#[cfg(test)]
mod tests {
    use http::{StatusCode, header};

    use super::*;

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[test]
    fn refusals_map_to_401_403_and_503_with_the_right_challenge() {
        let res = refusal(&Decision::Unauthorized(Reason::Missing)).into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
        for reason in [Reason::Expired, Reason::BadSignature, Reason::Malformed] {
            let res = refusal(&Decision::Unauthorized(reason)).into_response();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                res.headers()[header::WWW_AUTHENTICATE],
                r#"Bearer error="invalid_token""#
            );
        }
        let forbidden = refusal(&Decision::Forbidden {
            refused: vec![ch("a"), ch("b")],
            grant: Grant::default(),
        });
        assert_eq!(forbidden.code(), Code::Forbidden);
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            refusal(&Decision::Unavailable).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn an_open_context_allows_everything_without_looking() {
        let ctx = Context {
            bus: herald_bus::Bus::memory(herald_bus::Config::default()),
            limits: crate::Limits::default(),
            shutdown: Default::default(),
            stats: Default::default(),
            auth: Default::default(),
        };
        let req = Request::get("/poll/a").body(()).unwrap();
        assert_eq!(
            authorize(&ctx, &req, &[ch("a")], "poll").await,
            Ok(Grant::default())
        );
    }
}
