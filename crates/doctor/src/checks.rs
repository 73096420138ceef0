//! The checks, each one question about the path between a browser and
//! herald, answered by trying it: a short poll (reachable, clock, CORS), an
//! SSE stream (buffering), a held long poll (read timeouts) and a WebSocket
//! upgrade. The slow ones run at the same time. Each answers an [`Outcome`]
//! whose text says what was seen and, for a problem, what usually causes
//! it and where to change it.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use reqwest::{Client, StatusCode, header};
use tokio::time::{Instant, timeout};

use crate::Args;

/// Later than this after its publish, an SSE event counts as buffered.
const LATE: Duration = Duration::from_secs(1);
/// More difference than this between the server's Date and ours is skew.
const SKEW: Duration = Duration::from_secs(3);
/// Messages published to time SSE delivery, and the pause between them.
const PROBES: usize = 3;
const PAUSE: Duration = Duration::from_millis(400);
/// Time a plain request may take.
const PROMPT: Duration = Duration::from_secs(10);

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The check's name (`sse`, `long poll`…).
    pub check: &'static str,
    /// Whether it found a problem.
    pub problem: bool,
    /// What was seen, and for a problem what to change.
    pub text: String,
}

impl Outcome {
    fn ok(check: &'static str, text: impl Into<String>) -> Outcome {
        Outcome {
            check,
            problem: false,
            text: text.into(),
        }
    }

    fn problem(check: &'static str, text: impl Into<String>) -> Outcome {
        Outcome {
            check,
            problem: true,
            text: text.into(),
        }
    }

    /// Whether the check found something wrong.
    pub fn is_problem(&self) -> bool {
        self.problem
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.problem { "PROBLEM" } else { "ok" };
        write!(f, "{mark:<7} {:<10} {}", self.check, self.text)
    }
}

/// Runs every check against `args.public_url`.
pub(crate) async fn run(args: &Args) -> Vec<Outcome> {
    let base = args.public_url.trim_end_matches('/').to_string();
    let client = Client::new();
    let poll = format!("{base}/poll/{}", args.channel);
    let mut req = client.get(&poll).timeout(PROMPT);
    if let Some(origin) = &args.origin {
        req = req.header(header::ORIGIN, origin);
    }
    let res = match req.send().await {
        Ok(res) if res.status() == StatusCode::OK => res,
        Ok(res) => {
            let status = res.status();
            return vec![Outcome::problem(
                "reach",
                format!("GET {poll} answered {status}; is this herald's public URL?"),
            )];
        }
        Err(e) => {
            return vec![Outcome::problem("reach", format!("GET {poll} failed: {e}"))];
        }
    };
    let mut out = vec![Outcome::ok("reach", format!("GET {poll} answered 200"))];
    out.push(clock(res.headers()));
    out.push(cors(args, res.headers()));
    // The long poll watches a channel of its own, which the SSE check's
    // messages do not end early.
    let cursor = match client
        .get(format!("{poll}-hold"))
        .timeout(PROMPT)
        .send()
        .await
    {
        Ok(res) => res.json::<serde_json::Value>().await.ok(),
        Err(_) => None,
    }
    .and_then(|v| v["cursor"].as_str().map(str::to_string))
    .unwrap_or_default();
    let (sse, held, ws) = tokio::join!(
        sse(&client, args, &base),
        held(&client, args, &base, &cursor),
        websocket(&base),
    );
    out.extend([sse, held, ws]);
    out
}

fn clock(headers: &header::HeaderMap) -> Outcome {
    let Some(date) = headers
        .get(header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        return Outcome::ok("clock", "no Date header to compare; not checked");
    };
    let now = SystemTime::now();
    let skew = date
        .duration_since(now)
        .or_else(|_| now.duration_since(date))
        .unwrap_or_default();
    if skew > SKEW {
        Outcome::problem(
            "clock",
            format!(
                "the server's clock differs from this machine's by {} s; run NTP on both \
                 (message times and history age depend on it)",
                skew.as_secs()
            ),
        )
    } else {
        Outcome::ok(
            "clock",
            "the server's Date agrees with this machine's clock",
        )
    }
}

fn cors(args: &Args, headers: &header::HeaderMap) -> Outcome {
    let Some(origin) = &args.origin else {
        return Outcome::ok("cors", "not checked (give --origin to check one)");
    };
    match headers
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        Some(allowed) if allowed == origin || allowed == "*" => Outcome::ok(
            "cors",
            format!("pages from {origin} may read herald (Access-Control-Allow-Origin: {allowed})"),
        ),
        other => Outcome::problem(
            "cors",
            format!(
                "no Access-Control-Allow-Origin for {origin} (got {other:?}): browsers will \
                 refuse the reply; add it to herald's --cors-origins, or check that the proxy \
                 passes the Origin header and the answer's CORS headers"
            ),
        ),
    }
}

/// Opens an SSE stream and times what arrives: the messages it publishes
/// through the internal URL, or herald's opening comment without one.
async fn sse(client: &Client, args: &Args, base: &str) -> Outcome {
    const NAME: &str = "sse";
    let url = format!("{base}/sse/{}", args.channel);
    // As a browser asks: compression on the way is one way a stream ends
    // up buffered.
    let req = client
        .get(&url)
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br");
    let res = match timeout(PROMPT, req.send()).await {
        Ok(Ok(res)) if res.status() == StatusCode::OK => res,
        Ok(Ok(res)) => {
            return Outcome::problem(NAME, format!("GET {url} answered {}", res.status()));
        }
        Ok(Err(e)) => return Outcome::problem(NAME, format!("GET {url} failed: {e}")),
        Err(_) => {
            return Outcome::problem(
                NAME,
                buffered(&format!(
                    "the response to GET {url} did not begin within {PROMPT:?}"
                )),
            );
        }
    };
    if let Some(encoding) = res.headers().get(header::CONTENT_ENCODING) {
        let encoding = String::from_utf8_lossy(encoding.as_bytes()).into_owned();
        return Outcome::problem(
            NAME,
            buffered(&format!(
                "the stream came compressed (Content-Encoding: {encoding}), and a compressor \
                 holds events back until its buffer fills; exclude text/event-stream from \
                 compression (nginx `gzip_types`, Caddy `encode`, the CDN's settings)"
            )),
        );
    }
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let opened = Instant::now();
    let Some(internal) = &args.internal_url else {
        // herald writes `: ok` as soon as the stream opens.
        while !text.contains(": ok") {
            match timeout(PROMPT, body.next()).await {
                Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => {
                    return Outcome::problem(
                        NAME,
                        buffered("herald's opening comment never arrived"),
                    );
                }
            }
        }
        let after = opened.elapsed();
        return if after > LATE {
            Outcome::problem(
                NAME,
                buffered(&format!("herald's opening comment arrived after {after:?}")),
            )
        } else {
            Outcome::ok(
                NAME,
                "the stream opens at once (give --internal-url to time messages too)",
            )
        };
    };
    let publish = format!(
        "{}/publish/{}",
        internal.trim_end_matches('/'),
        args.channel
    );
    let mut worst = Duration::ZERO;
    for i in 0..PROBES {
        let probe = format!("doctor-probe-{i}-{}", std::process::id());
        let mut req = client.post(&publish).body(probe.clone()).timeout(PROMPT);
        if let Some(token) = &args.publish_token {
            req = req.bearer_auth(token);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                return Outcome::problem(
                    NAME,
                    format!("publishing to {publish} answered {}", r.status()),
                );
            }
            Err(e) => {
                return Outcome::problem(NAME, format!("publishing to {publish} failed: {e}"));
            }
        }
        let sent = Instant::now();
        while !text.contains(&probe) {
            match timeout(PROMPT, body.next()).await {
                Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => {
                    return Outcome::problem(
                        NAME,
                        buffered(&format!(
                            "a published message did not arrive within {PROMPT:?}"
                        )),
                    );
                }
            }
        }
        worst = worst.max(sent.elapsed());
        tokio::time::sleep(PAUSE).await;
    }
    if worst > LATE {
        Outcome::problem(
            NAME,
            buffered(&format!(
                "messages arrived up to {} ms after their publish",
                worst.as_millis()
            )),
        )
    } else {
        Outcome::ok(
            NAME,
            format!(
                "{PROBES} messages arrived one by one, the slowest {} ms after its publish",
                worst.as_millis()
            ),
        )
    }
}

fn buffered(seen: &str) -> String {
    format!(
        "{seen}: something between the browser and herald buffers the stream. nginx: \
         `proxy_buffering off` in the SSE location, no `proxy_ignore_headers X-Accel-Buffering` \
         and no `gzip` for text/event-stream; \
         Caddy: `flush_interval -1`; HAProxy: no compression or response buffering on the SSE \
         backend; a CDN: bypass caching and buffering for /sse/"
    )
}

/// Holds a long poll for `args.hold` and sees whether something answers
/// for herald first.
async fn held(client: &Client, args: &Args, base: &str, cursor: &str) -> Outcome {
    const NAME: &str = "long poll";
    let hold = args.hold();
    let url = format!(
        "{base}/longpoll/{}-hold?since={cursor}&timeout={}",
        args.channel, args.hold
    );
    let started = Instant::now();
    let res = client.get(&url).timeout(hold + PROMPT).send().await;
    let after = started.elapsed();
    let secs = after.as_secs_f64();
    let hint = "raise the proxy's read timeout above herald's --longpoll-max-timeout \
                (nginx `proxy_read_timeout`, Caddy `read_timeout` in `transport http`, \
                HAProxy `timeout server`, a load balancer's idle timeout)";
    match res {
        Ok(res) if res.status() == StatusCode::OK => {
            if after + Duration::from_secs(2) < hold {
                Outcome::ok(
                    NAME,
                    format!(
                        "herald answered a {} s hold after {secs:.1} s (its --longpoll-max-timeout is shorter); nothing cut it",
                        args.hold
                    ),
                )
            } else {
                Outcome::ok(NAME, format!("a request held {secs:.1} s was not cut"))
            }
        }
        Ok(res) => Outcome::problem(
            NAME,
            format!(
                "a held request was cut after {secs:.1} s with {} before herald answered: \
                 a proxy's read timeout is about {} s; {hint}",
                res.status(),
                after.as_secs_f64().round()
            ),
        ),
        Err(e) => Outcome::problem(
            NAME,
            format!(
                "a held request was cut after {secs:.1} s ({e}): a proxy's read timeout is \
                 about {} s; {hint}",
                after.as_secs_f64().round()
            ),
        ),
    }
}

/// Tries a WebSocket upgrade on `/ws`.
async fn websocket(base: &str) -> Outcome {
    const NAME: &str = "websocket";
    let url = format!("{}/ws", base.replacen("http", "ws", 1));
    match timeout(PROMPT, tokio_tungstenite::connect_async(&url)).await {
        Ok(Ok(_)) => Outcome::ok(NAME, format!("{url} upgrades")),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(res))) => Outcome::problem(
            NAME,
            format!(
                "{url} refused the upgrade with {}: the proxy must pass `Upgrade` and \
                 `Connection: upgrade` on (nginx: `proxy_http_version 1.1` and both \
                 `proxy_set_header` lines in the /ws location)",
                res.status()
            ),
        ),
        Ok(Err(e)) => Outcome::problem(NAME, format!("{url} failed: {e}")),
        Err(_) => Outcome::problem(NAME, format!("{url}: no answer in {PROMPT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> header::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_date_far_from_ours_is_skew() {
        let now = httpdate::fmt_http_date(SystemTime::now());
        assert!(!clock(&headers(&[(header::DATE, &now)])).is_problem());
        let late = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let o = clock(&headers(&[(header::DATE, &late)]));
        assert!(o.is_problem() && o.text.contains("NTP"), "{o}");
        assert!(!clock(&headers(&[])).is_problem());
    }

    #[test]
    fn cors_is_checked_only_for_a_given_origin() {
        let args = |origin: Option<&str>| {
            let mut a = Args::parse_from(["herald doctor", "http://x"]);
            a.origin = origin.map(str::to_string);
            a
        };
        let acao = header::ACCESS_CONTROL_ALLOW_ORIGIN;
        assert!(!cors(&args(None), &headers(&[])).is_problem());
        let site = Some("https://app.example");
        assert!(cors(&args(site), &headers(&[])).is_problem());
        assert!(!cors(&args(site), &headers(&[(acao.clone(), "*")])).is_problem());
        assert!(
            !cors(
                &args(site),
                &headers(&[(acao.clone(), "https://app.example")])
            )
            .is_problem()
        );
        assert!(cors(&args(site), &headers(&[(acao, "https://other.example")])).is_problem());
    }

    #[test]
    fn one_line_per_check_marked_ok_or_problem() {
        assert_eq!(
            Outcome::ok("sse", "fine").to_string(),
            "ok      sse        fine"
        );
        assert!(
            Outcome::problem("sse", "late")
                .to_string()
                .starts_with("PROBLEM sse")
        );
    }
}
