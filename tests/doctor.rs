//! End-to-end: `herald doctor` (the real binary) against herald behind a
//! real nginx. Behind the shipped deploy/nginx/herald.conf it reports
//! healthy and exits 0; behind an nginx that buffers SSE (buffering on,
//! herald's `X-Accel-Buffering: no` ignored, and gzip on
//! text/event-stream, which holds events back: with buffering alone this
//! nginx still passed each event on at once) and cuts held requests after
//! 3 s, it names both problems, measures the cut, and exits 1.
//!
//! To keep the test short the doctor holds its long poll 5 s (`--hold 5`)
//! and the broken nginx cuts at 3 s:
//! the same shape as a 60 s proxy in front of a 55 s hold. Each case takes
//! about 7 s.

use herald_testkit::{
    Binary, Server,
    nginx::{Nginx, SHIPPED},
};

/// Runs `herald doctor` against `nginx` with herald's internal URL;
/// answers its exit code and what it printed.
async fn doctor(nginx: &Nginx, herald: &Server) -> (i32, String) {
    let public = format!("http://127.0.0.1:{}", nginx.port);
    let internal = herald.internal_url("");
    let out = tokio::task::spawn_blocking(move || {
        let args = [
            "doctor",
            &public,
            "--internal-url",
            &internal,
            "--hold",
            "5",
        ];
        Binary::output(&args, &[])
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn line<'a>(text: &'a str, check: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_the_shipped_nginx_config_it_reports_healthy() {
    let s = Server::start(&[]).await;
    let Some(nginx) = Nginx::start(s.public, SHIPPED) else {
        return;
    };
    let (code, text) = doctor(&nginx, &s).await;
    assert_eq!(code, 0, "{text}");
    for check in ["reach", "clock", "sse", "long", "websocket"] {
        assert!(line(&text, check).starts_with("ok"), "{check}: {text}");
    }
    assert!(line(&text, "long").contains("was not cut"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_buffering_nginx_with_a_short_read_timeout_it_names_both() {
    let s = Server::start(&[]).await;
    assert!(
        SHIPPED.contains("proxy_buffering off;") && SHIPPED.contains("proxy_read_timeout 70s;")
    );
    assert!(SHIPPED.contains("gzip off;"));
    let broken = SHIPPED
        .replace(
            "proxy_buffering off;",
            "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;",
        )
        .replace(
            "gzip off;",
            "gzip on;\n        gzip_types text/event-stream;",
        )
        .replace("proxy_read_timeout 70s;", "proxy_read_timeout 3s;");
    let Some(nginx) = Nginx::start(s.public, &broken) else {
        return;
    };
    let (code, text) = doctor(&nginx, &s).await;
    assert_eq!(code, 1, "{text}");
    let sse = line(&text, "sse");
    assert!(
        sse.starts_with("PROBLEM") && sse.contains("proxy_buffering off"),
        "{sse}"
    );
    let held = line(&text, "long");
    assert!(
        held.starts_with("PROBLEM") && held.contains("about 3 s"),
        "{held}"
    );
    assert!(line(&text, "websocket").starts_with("ok"), "{text}");
}
