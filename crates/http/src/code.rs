//! The error vocabulary: every code herald can answer, each with its HTTP
//! status, its stable string, the message a client is told when there is
//! nothing more specific to say, and the level it is logged at.
//!
//! This table is the only place where a status or a code string is decided;
//! HTTP error responses and WebSocket `error` frames are both rendered from
//! it (see [`Error`](crate::Error)). Adding a code is one line in
//! [`codes!`] below, and a row in docs/protocol.md's table, which a test
//! compares with this one. It does not say when a code is used: the code
//! that refuses a request picks it.

use http::StatusCode;
use tracing::Level;

/// Declares [`Code`] and its table from one list of rows.
macro_rules! codes {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $status:ident, $code:literal, $level:ident, $message:literal;
    )*) => {
        /// A stable error code: what a client matches on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The HTTP status of an answer with this code.
            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status,)* }
            }

            /// The stable code string (`invalid_channel`).
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// What a client is told when the error has no detail of its
            /// own, and always for server errors.
            pub fn message(self) -> &'static str {
                match self { $(Code::$variant => $message,)* }
            }

            /// The level an error with this code is logged at.
            pub fn level(self) -> Level {
                match self { $(Code::$variant => Level::$level,)* }
            }
        }
    };
}

codes! {
    /// A channel name broke the naming rule.
    InvalidChannel = BAD_REQUEST, "invalid_channel", DEBUG, "invalid channel name";
    /// An event name broke the naming rule.
    InvalidEvent = BAD_REQUEST, "invalid_event", DEBUG, "invalid event name";
    /// A cursor (`since`, `Last-Event-ID`) this server could not have issued.
    InvalidCursor = BAD_REQUEST, "invalid_cursor", DEBUG, "invalid cursor";
    /// A query parameter out of range, or `since` and `last` together.
    InvalidQuery = BAD_REQUEST, "invalid_query", DEBUG, "invalid query parameter";
    /// More channels than `max-channels` in one subscription.
    TooManyChannels = BAD_REQUEST, "too_many_channels", DEBUG, "too many channels";
    /// A batch publish of the wrong shape or size.
    InvalidBatch = BAD_REQUEST, "invalid_batch", DEBUG, "invalid batch";
    /// The request body could not be read.
    BodyUnreadable = BAD_REQUEST, "body_unreadable", DEBUG, "request body could not be read";
    /// A request refused by a layer for a reason herald has no code for.
    BadRequest = BAD_REQUEST, "bad_request", DEBUG, "bad request";
    /// A WebSocket endpoint reached without a WebSocket handshake.
    WebsocketUpgradeRequired = BAD_REQUEST, "websocket_upgrade_required", DEBUG, "a WebSocket handshake is required";
    /// `Sec-WebSocket-Version` is not 13.
    UnsupportedWebsocketVersion = BAD_REQUEST, "unsupported_websocket_version", DEBUG, "Sec-WebSocket-Version must be 13";
    /// `Sec-WebSocket-Key` missing or malformed.
    InvalidWebsocketKey = BAD_REQUEST, "invalid_websocket_key", DEBUG, "invalid Sec-WebSocket-Key";
    /// More channels on one WebSocket than `ws-max-subscriptions`.
    TooManySubscriptions = BAD_REQUEST, "too_many_subscriptions", DEBUG, "too many subscriptions";
    /// A WebSocket frame of the wrong shape (frames only).
    InvalidFrame = BAD_REQUEST, "invalid_frame", DEBUG, "invalid frame";
    /// A WebSocket frame of an unknown `type` (frames only).
    UnknownType = BAD_REQUEST, "unknown_type", DEBUG, "unknown frame type";
    /// A binary WebSocket frame (frames only).
    BinaryNotSupported = BAD_REQUEST, "binary_not_supported", DEBUG, "frames must be text frames with a JSON object";
    /// No valid bearer token (sent with `WWW-Authenticate: Bearer`).
    Unauthorized = UNAUTHORIZED, "unauthorized", DEBUG, "a valid bearer token is required";
    /// Good subscriber credentials that do not cover a channel asked for.
    Forbidden = FORBIDDEN, "forbidden", DEBUG, "not allowed to read this channel";
    /// A WebSocket from a browser origin outside `ws-origins`, or any
    /// request with an `Origin` to the internal listener.
    OriginNotAllowed = FORBIDDEN, "origin_not_allowed", DEBUG, "origin not allowed";
    /// A request to the internal listener for a host name outside
    /// `internal-hosts` (the DNS-rebinding defence).
    HostNotAllowed = FORBIDDEN, "host_not_allowed", DEBUG, "host not allowed";
    /// No such endpoint.
    NotFound = NOT_FOUND, "not_found", DEBUG, "no such endpoint";
    /// The endpoint exists but not with this method (sent with `Allow`).
    MethodNotAllowed = METHOD_NOT_ALLOWED, "method_not_allowed", DEBUG, "method not allowed on this endpoint";
    /// WebSocket `subscribe`/`unsubscribe` frames faster than
    /// `ws-frame-rate` (frames only).
    RateLimited = TOO_MANY_REQUESTS, "rate_limited", DEBUG, "too many frames; slow down";
    /// A request over `request-timeout`.
    Timeout = REQUEST_TIMEOUT, "timeout", DEBUG, "the request took longer than request-timeout";
    /// A request body over `max-body`.
    BodyTooLarge = PAYLOAD_TOO_LARGE, "body_too_large", DEBUG, "request body exceeds max-body";
    /// Text data that is not UTF-8.
    InvalidUtf8 = UNSUPPORTED_MEDIA_TYPE, "invalid_utf8", DEBUG, "data is not valid UTF-8";
    /// Data declared as JSON that does not parse.
    InvalidJson = UNSUPPORTED_MEDIA_TYPE, "invalid_json", DEBUG, "data is not valid JSON";
    /// A failure of herald itself.
    Internal = INTERNAL_SERVER_ERROR, "internal", ERROR, "internal error";
    /// A connection over `max-connections` or `max-connections-per-ip`,
    /// answered and closed at once.
    Overloaded = SERVICE_UNAVAILABLE, "overloaded", WARN, "too many connections; retry later";
    /// The engine cannot store or read now; retrying later may succeed.
    EngineUnavailable = SERVICE_UNAVAILABLE, "engine_unavailable", WARN, "the engine is unavailable; retry later";
    /// `/readyz` once the server has begun to drain.
    Draining = SERVICE_UNAVAILABLE, "draining", WARN, "the server is shutting down";
    /// The authorization hook failed or did not answer in time; retrying
    /// later may succeed.
    AuthUnavailable = SERVICE_UNAVAILABLE, "auth_unavailable", WARN, "authorization is unavailable; retry later";
}

impl Code {
    /// Whether the error is the server's, not the client's: its detail is
    /// logged and never shown.
    pub fn is_server_error(self) -> bool {
        self.status().is_server_error()
    }

    /// The code for an error response that did not come from herald (a
    /// tower-http layer's 408 or 413): the one code with that status among
    /// those a layer can produce, else `bad_request` or `internal`.
    pub fn for_status(status: StatusCode) -> Code {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Code::BodyTooLarge,
            StatusCode::REQUEST_TIMEOUT => Code::Timeout,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
            StatusCode::UNAUTHORIZED => Code::Unauthorized,
            s if s.is_server_error() => Code::Internal,
            _ => Code::BadRequest,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&herald_bus::Error> for Code {
    fn from(e: &herald_bus::Error) -> Self {
        use herald_bus::Error as E;
        match e {
            E::InvalidChannel(_) => Code::InvalidChannel,
            E::InvalidEvent(_) => Code::InvalidEvent,
            E::InvalidCursor(_) => Code::InvalidCursor,
            E::TooManyChannels { .. } => Code::TooManyChannels,
            E::InvalidUtf8 => Code::InvalidUtf8,
            E::InvalidJson(_) => Code::InvalidJson,
            E::Unavailable(_) => Code::EngineUnavailable,
            _ => Code::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_strings_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
            assert!(c.status().is_client_error() || c.status().is_server_error());
        }
    }

    #[test]
    fn server_errors_log_louder_than_client_errors() {
        for c in Code::ALL {
            assert_eq!(
                c.is_server_error(),
                c.level() <= Level::WARN,
                "{c}: server errors are logged at warn or error, client errors below"
            );
        }
    }
}
