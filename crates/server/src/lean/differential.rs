//! Differential property test: the lean path's head parser against hyper's
//! HTTP/1 server, on generated request heads that mix valid and invalid
//! pieces (methods, targets, versions, headers, line endings).
//!
//! The property: whenever the lean path takes a head (`Head::Lean`), hyper,
//! configured as the public listener configures it, given the same bytes
//! calls its service with the same method, target, version and headers.
//! When the lean path declines (`Head::Other`) the bytes go to hyper, which
//! answers them itself, so there is nothing to compare. Left out: heads of
//! the head limit or more, where both parsers' answers depend on how the
//! bytes arrive in reads (each stops at the limit only while the head is
//! still incomplete), and heads the lean path still waits on
//! (`Head::Partial`), which neither side answers before more bytes come.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use proptest::{prelude::*, sample::select};
use tokio::io::AsyncWriteExt as _;

use super::{Head, Lean, Routes, parse};
use crate::serve::MAX_HEAD;

/// What a parser made of a head.
type Seen = (Method, Uri, Version, HeaderMap);

/// The lean path of the public listener, for its parser only.
fn lean() -> Lean {
    let service = tower::service_fn(|_: Request<http_body_util::Empty<Bytes>>| async {
        Ok(Response::new(herald_http::empty()))
    });
    Lean {
        routes: Routes {
            service: tower::util::BoxCloneSyncService::new(service),
            held: crate::run::held,
        },
        max_head: MAX_HEAD,
        header_read_timeout: std::time::Duration::from_secs(30),
        send_timeout: std::time::Duration::from_secs(30),
        drain_spread: std::time::Duration::ZERO,
    }
}

/// What hyper's HTTP/1 server does with `head` followed by the end of the
/// client's writes: the request its service saw, or `None` when it refused
/// or closed without calling the service.
async fn hyper_sees(head: &[u8]) -> Option<Seen> {
    let (mut client, server) = tokio::io::duplex(4 * MAX_HEAD);
    let seen = Arc::new(Mutex::new(None));
    let capture = {
        let seen = Arc::clone(&seen);
        service_fn(move |req: Request<Incoming>| {
            let (parts, _) = req.into_parts();
            *seen.lock().unwrap() = Some((parts.method, parts.uri, parts.version, parts.headers));
            async { Ok::<_, std::convert::Infallible>(Response::new(herald_http::empty())) }
        })
    };
    client.write_all(head).await.unwrap();
    client.shutdown().await.unwrap();
    let _ = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(server), capture)
        .await;
    seen.lock().unwrap().take()
}

/// Mostly pieces the lean path takes, so that most heads are compared,
/// and sometimes one it must not.
fn piece(
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => select(good), 1 => select(bad)]
}

fn method() -> impl Strategy<Value = &'static str> {
    piece(
        &["GET", "HEAD"],
        &["POST", "OPTIONS", "get", "Get", "G\x01T", "GE T", ""],
    )
}

fn target() -> impl Strategy<Value = &'static str> {
    piece(
        &[
            "/sse/a",
            "/sse/a,b",
            "/longpoll/a",
            "/longpoll/a?since=x",
            "/longpoll/a?since=%41%zz",
            "/sse/%61",
            "/sse/a?since=1&since=2",
        ],
        &[
            "/sse/a b",
            "/sse/a\x01",
            "/sse/a\x7f",
            "/sse/\u{e9}",
            "/sse/a#frag",
            "//sse/a",
            "/sse",
            "/sse/",
            "/poll/a",
            "http://example.com/sse/a",
            "*",
            "",
        ],
    )
}

fn version() -> impl Strategy<Value = &'static str> {
    piece(
        &["HTTP/1.1"],
        &[
            "HTTP/1.0",
            "HTTP/2.0",
            "HTTP/1.2",
            "http/1.1",
            "HTTP/1.1 ",
            "HTTP/11",
            "",
        ],
    )
}

fn eol() -> impl Strategy<Value = &'static str> {
    piece(&["\r\n", "\n"], &["\r", "\n\r"])
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    let fixed = piece(
        &[
            "host: example.com",
            "accept: text/event-stream",
            "last-event-id: 5",
            "x-dup: 1",
            "x-dup: 2",
            "connection: close",
            "connection: keep-alive, Close",
            "connection: upgrade",
            "content-length: 0",
            "content-length:  0 ",
            "expect: 100-continue",
            "x-empty:",
            "x-tab: a\tb",
            "x-utf8: \u{e9}",
        ],
        &[
            "upgrade: websocket",
            "content-length: 5",
            "content-length: 0, 0",
            "transfer-encoding: chunked",
            "x-space :v",
            "x-nocolon v",
            " folded",
            "\tfolded",
            "x-ctl: a\x01b",
            "x-del: a\x7f",
            "x\u{e9}: v",
            ": v",
            "x(y): v",
        ],
    )
    .prop_map(|s| s.as_bytes().to_vec());
    let long = (0..=MAX_HEAD).prop_map(|n| {
        let mut h = b"x-long: ".to_vec();
        h.resize(h.len() + n, b'a');
        h
    });
    let latin1 = any::<u8>().prop_map(|b| [b"x-byte: a".as_slice(), &[b, b'z']].concat());
    prop_oneof![8 => fixed, 1 => long, 1 => latin1]
}

/// A head: request line, headers (a few, or sometimes many), blank line,
/// each line with its own ending.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let headers = prop_oneof![
        4 => prop::collection::vec((header(), eol()), 0..8),
        1 => (60usize..110, eol()).prop_map(|(n, e)| vec![(b"x-many: 1".to_vec(), e); n]),
    ];
    (method(), target(), version(), eol(), headers, eol()).prop_map(
        |(m, t, v, e, headers, last)| {
            let mut out = format!("{m} {t} {v}{e}").into_bytes();
            for (h, e) in headers {
                out.extend_from_slice(&h);
                out.extend_from_slice(e.as_bytes());
            }
            out.extend_from_slice(last.as_bytes());
            out
        },
    )
}

/// What the lean path's parser made of `head`, when it takes it.
fn lean_sees(head: &[u8]) -> Option<Seen> {
    let Head::Lean { req, .. } = parse(head, &lean()) else {
        return None;
    };
    let (parts, _) = req.into_parts();
    Some((parts.method, parts.uri, parts.version, parts.headers))
}

fn hyper_sees_now(head: &[u8]) -> Option<Seen> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(hyper_sees(head))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lean_takes_only_what_hyper_reads_the_same(head in head()) {
        prop_assume!(head.len() < MAX_HEAD);
        let Some(lean) = lean_sees(&head) else {
            return Ok(());
        };
        let hyper = hyper_sees_now(&head);
        prop_assert_eq!(Some(lean), hyper, "head: {:?}", String::from_utf8_lossy(&head));
    }
}

/// The first disagreement this test found: hyper keeps one of repeated
/// equal `content-length` headers.
#[test]
fn repeated_zero_lengths_are_kept_once() {
    let head = b"GET /sse/a HTTP/1.1\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n";
    let lean = lean_sees(head);
    assert_eq!(lean.as_ref().map(|(.., h)| h.len()), Some(1));
    assert_eq!(lean, hyper_sees_now(head));
}
