//! End-to-end: the Redis engine as operators run it. Over TLS
//! (`rediss://`) with a certificate authority the test makes and herald
//! trusts through `--redis-tls-ca` (and refuses to start without it); and
//! behind Sentinel (`redis+sentinel://`), where a failover in the middle of
//! a stream leaves an SSE subscriber receiving again, at most after a gap,
//! never silent.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use herald_testkit::{Binary, Server, client, data, need, redis::RedisServer, sse::Sse};
use tokio::time::{Instant, sleep};

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes `ca.pem` and a `cert.pem`/`key.pem` it signs for 127.0.0.1 in
/// `dir` with the openssl command.
fn certificates(openssl: &Path, dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new(openssl)
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &["req", "-x509", "-nodes", "-days", "2"],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=herald test CA",
        ],
    ]
    .concat());
    run(&[
        &["req", "-nodes"],
        &ec[..],
        &[
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
}

#[tokio::test]
async fn rediss_with_the_authority_given_works_and_without_it_is_refused() {
    let (Some(redis_server), Some(openssl)) = (need("redis-server"), need("openssl")) else {
        return;
    };
    let dir = scratch("redis-tls");
    certificates(&openssl, &dir);
    let redis = RedisServer::start_tls(
        &redis_server,
        &dir.join("cert.pem"),
        &dir.join("key.pem"),
        &dir.join("ca.pem"),
    );
    let url = redis.tls_url();
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let s = Server::start(&[
        "--engine",
        "redis",
        "--redis-url",
        &url,
        "--redis-tls-ca",
        ca,
    ])
    .await;
    let start = s.cursor_now("secure").await;
    s.publish("secure", "over tls").await;
    assert_eq!(data(&s.poll("secure", Some(&start)).await), ["over tls"]);
    assert!(!redis.keys("herald:*").is_empty());

    // The system's authorities do not know the test's: no start.
    let out = Binary::output(&["--engine", "redis", "--redis-url", &url], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot use Redis at rediss://127.0.0.1"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_sentinel_failover_mid_stream_leaves_subscribers_receiving() {
    failover_mid_stream(Failover::Asked).await;
}

#[tokio::test]
async fn a_killed_primary_mid_stream_is_replaced_and_subscribers_keep_receiving() {
    failover_mid_stream(Failover::PrimaryKilled).await;
}

/// How the primary goes away.
#[derive(PartialEq)]
enum Failover {
    /// `SENTINEL FAILOVER`: the old primary is demoted to a replica.
    Asked,
    /// The primary crashes; the sentinel notices it down (1 s) and promotes
    /// the replica.
    PrimaryKilled,
}

/// A primary, a replica and a sentinel; herald through the sentinel with an
/// SSE subscriber; then the failover: publishes answer 503 until herald
/// follows the new primary, and the first one accepted there must reach the
/// subscriber.
async fn failover_mid_stream(how: Failover) {
    let Some(program) = need("redis-server") else {
        return;
    };
    let mut primary = RedisServer::start(&program);
    let replica = RedisServer::start_with(
        &program,
        None,
        vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ],
    );
    // One directory per test: the sentinel rewrites its config file.
    let dir = scratch(match how {
        Failover::Asked => "sentinel-asked",
        Failover::PrimaryKilled => "sentinel-killed",
    });
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "sentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            primary.port
        ),
    )
    .unwrap();
    let sentinel = RedisServer::start_with(&program, Some(conf), vec!["--sentinel".into()]);
    // The sentinel learns of the replica from the primary's INFO.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = sentinel.command(&["SENTINEL", "REPLICAS", "mymaster"]);
        let linked = replica.command(&["INFO", "replication"]);
        if !seen.is_empty() && linked.concat().contains("master_link_status:up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sentinel never saw the replica"
        );
        sleep(Duration::from_millis(100)).await;
    }

    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port);
    let s = Server::start(&[
        "--engine",
        "redis",
        "--redis-url",
        &url,
        "--sse-heartbeat",
        "1",
    ])
    .await;
    let c = client();
    let mut sse = Sse::open(&c, &s.url("/sse/news"), None).await;
    s.wait_subscribers("news", 1, Duration::from_secs(5)).await;
    s.publish("news", "before").await;
    assert_eq!(sse.event().await.data(), "before");

    // Until the sentinel has looked at the replica, it has none to promote.
    let deadline = Instant::now() + Duration::from_secs(20);
    while how == Failover::Asked
        && sentinel
            .try_command(&["SENTINEL", "FAILOVER", "mymaster"])
            .is_err()
    {
        assert!(Instant::now() < deadline, "the sentinel never failed over");
        sleep(Duration::from_millis(200)).await;
    }
    if how == Failover::PrimaryKilled {
        primary.kill();
    }
    let role = |r: &RedisServer| {
        let info = r.command(&["INFO", "replication"]).concat();
        info.contains("role:master")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while (how == Failover::Asked && role(&primary)) || !role(&replica) {
        assert!(Instant::now() < deadline, "the failover never finished");
        sleep(Duration::from_millis(100)).await;
    }
    // The old primary is gone or a replica: a publish is accepted only once
    // herald follows the new one (503s until then), and it must reach the
    // subscriber.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "herald never followed the failover"
        );
        let res = c
            .post(s.internal_url("/publish/news"))
            .body("after")
            .send()
            .await
            .unwrap();
        if res.status() == 202 {
            break;
        }
        assert_eq!(res.status(), 503);
        sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "the subscriber went silent");
        let ev = sse.event().await;
        if ev.data() == "after" {
            break;
        }
    }
    drop(primary);
    let _ = std::fs::remove_dir_all(&dir);
}
