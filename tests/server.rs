//! End-to-end: the binary itself — configuration sources and their
//! precedence, refusals at start-up, health, HTTP/2 and graceful shutdown.

use std::time::Duration;

use herald_testkit::{Binary, Server, client, data, sse::Sse, ws};
use serde_json::Value;

#[test]
fn help_documents_every_option_with_its_default() {
    let out = Binary::output(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--public-addr",
        "--internal-addr",
        "--publish-token",
        "--history-messages",
        "--max-body",
        "--config",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("[default: 127.0.0.1:8080]"));
    assert!(help.contains("HERALD_MAX_BODY"));
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_option() {
    let out = Binary::output(&["--history-bytes", "10"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("history-bytes"));
    for zero in [
        "--header-read-timeout",
        "--request-timeout",
        "--drain-timeout",
    ] {
        let out = Binary::output(&[zero, "0"], &[]);
        assert_eq!(out.status.code(), Some(2), "{zero} 0");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&zero[2..]));
    }
    let out = Binary::output(&["--max-body", "lots"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-body"));
    let dir = std::env::temp_dir().join(format!("herald-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "no-such-option = 1\n").unwrap();
    let out = Binary::output(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-option"));
}

#[test]
fn a_taken_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Binary::output(
        &["--public-addr", &addr, "--internal-addr", "127.0.0.1:0"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}

#[tokio::test]
async fn flags_beat_environment_beats_file() {
    let dir = std::env::temp_dir().join(format!("herald-prec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "history-messages = 3\nmax-channels = 2\nmax-batch = 5\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    // history-messages from the file (3), max-channels from env (4) over the
    // file, max-batch from the flag (1) over the file.
    let s = Binary::start_with_env(
        &["--config", path, "--max-batch", "1"],
        &[("HERALD_MAX_CHANNELS", "4")],
    );
    let c = client();
    for i in 0..5 {
        s.publish("p", &i.to_string()).await;
    }
    let v: Value = c
        .get(s.url("/poll/p?last=10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["messages"].as_array().unwrap().len(),
        3,
        "history-messages from the file"
    );
    assert_eq!(
        c.get(s.url("/poll/a,b,c,d")).send().await.unwrap().status(),
        200,
        "env beats file"
    );
    assert_eq!(
        c.get(s.url("/poll/a,b,c,d,e"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let two = r#"{"messages":[{"channel":"p","data":"1"},{"channel":"p","data":"2"}]}"#;
    let res = c
        .post(s.internal_url("/publish"))
        .header("content-type", "application/json")
        .body(two)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "flag beats file");
}

#[tokio::test]
async fn health_on_both_listeners() {
    let s = Server::start(&[]).await;
    let c = client();
    let v: Value = c
        .get(s.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let v: Value = c
        .get(s.internal_url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["engine"], "up");
}

#[tokio::test]
async fn http2_cleartext_is_served() {
    let s = Server::start(&[]).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = c.get(s.url("/poll/h2")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_promptly() {
    let mut s = Binary::start(&["--drain-timeout", "5"]);
    s.publish("x", "y").await;
    let started = std::time::Instant::now();
    assert!(
        s.terminate(Duration::from_secs(8)),
        "exit status 0 after SIGTERM"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Pinned to one core, the binary runs everything on one thread (no
/// worker thread beside it): every transport must still be served, and
/// the publishing side's one pass must still reach the sockets.
#[tokio::test]
async fn on_one_core_every_transport_is_served_from_one_thread() {
    let Some(s) = Binary::start_on_one_core(&[]) else {
        return;
    };
    assert!(
        s.startup
            .iter()
            .any(|l| l.contains("one thread (one core available)")),
        "{:#?}",
        s.startup
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    assert!(
        status.lines().any(|l| l == "Threads:\t1"),
        "a single thread: {status}"
    );
    let c = client();
    let since = s.cursor_now("one").await;
    let mut sse = Sse::open(&c, &s.url("/sse/one"), None).await;
    let mut ws = ws::connect(&s, "/ws/one").await;
    assert_eq!(ws::next(&mut ws).await["type"], "subscribed");
    let held = {
        let s = s.url(&format!("/longpoll/one?since={since}&timeout=10"));
        tokio::spawn(async move { herald_testkit::get_json(&s).await })
    };
    s.wait_subscribers("one", 3, Duration::from_secs(5)).await;
    s.publish("one", "hello").await;
    assert_eq!(sse.event().await.data(), "hello");
    assert_eq!(ws::next(&mut ws).await["data"], "hello");
    assert_eq!(data(&held.await.unwrap()), ["hello"]);
    assert_eq!(data(&s.poll("one", Some(&since)).await), ["hello"]);
}

#[tokio::test]
async fn the_example_configuration_file_runs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/herald.toml");
    // Flags override the file's addresses so the test binds free ports.
    let s = Binary::start(&["--config", path]);
    let res = client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[test]
fn every_option_is_documented_in_configuration_md() {
    let help = String::from_utf8(Binary::output(&["--help"], &[]).stdout).unwrap();
    let doc = include_str!("../docs/configuration.md");
    let mut seen = 0;
    for word in help.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '=') {
        let is_flag = word.starts_with("--")
            && word.len() > 2
            && !["--help", "--version", "--config"].contains(&word);
        let is_env = word.starts_with("HERALD_") && word != "HERALD_CONFIG";
        if is_flag || is_env {
            seen += 1;
            assert!(
                doc.contains(&format!("`{word}`")),
                "{word} is not documented in docs/configuration.md"
            );
        }
    }
    assert!(seen > 40, "parsed only {seen} options from --help");
}

#[test]
fn help_never_prints_a_secret_from_the_environment() {
    let token = "t0ken-from-env";
    let password = "pa55word-from-env";
    let url = format!("redis://user:{password}@127.0.0.1:6379");
    let out = Binary::output(
        &["--help"],
        &[("HERALD_PUBLISH_TOKEN", token), ("HERALD_REDIS_URL", &url)],
    );
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("HERALD_PUBLISH_TOKEN"), "{help}");
    assert!(!help.contains(token), "{help}");
    assert!(!help.contains(password), "{help}");
    // A value that is not secret is still shown.
    let out = Binary::output(&["--help"], &[("HERALD_MAX_BODY", "4096")]);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("HERALD_MAX_BODY=4096")
    );
}
