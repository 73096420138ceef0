//! End-to-end smoke of the benchmark tool: every herald-bench scenario
//! against the real herald binary, 100 subscribers for about 2 s, asserting
//! zero loss, so that the tool never rots between real comparisons.
//!
//! Figures are not checked (a debug build on a shared machine says nothing
//! about speed); docs/benchmarks.md holds the real runs. Each transport
//! herald serves is one line in `TRANSPORTS`; the transports of one test
//! run side by side against one server, on channels of their own.

use std::time::Duration;

use futures::future::join_all;
use herald_bench::{
    Mem, Probe, Report, System, Target, Transport,
    scenario::{Common, churn, fanout, herd, idle, publish},
};
use herald_testkit::Binary;

/// The subscriber transports herald serves.
const TRANSPORTS: &[Transport] = &[
    Transport::Poll,
    Transport::Longpoll,
    Transport::Sse,
    Transport::Ws,
];

fn common(s: &Binary, transport: Transport) -> Common {
    let target = Target::new(System::Herald, s.public, s.internal).unwrap();
    let mut c = Common::new(target, transport);
    c.subscribers = 100;
    // A held long poll gives no sign that the server holds it; on a busy
    // machine a debug build needs a moment before the first publish.
    c.settle = Duration::from_secs(1);
    c.poll_interval = Duration::from_millis(20);
    c.ready_timeout = Duration::from_secs(10);
    c.probe = Probe::new(vec![s.pid()], Mem::Rss);
    c
}

fn assert_clean(r: &Report) {
    eprintln!("{}", r.json());
    assert!(r.na.is_none(), "{}", r.json());
    assert_eq!(r.errors, 0, "{}", r.json());
    assert!(r.counts.clean(), "{}", r.json());
    assert!(r.counts.received > 0, "{}", r.json());
    assert!(r.ok, "{}", r.json());
}

#[tokio::test]
async fn fanout_loses_nothing() {
    let s = Binary::start(&[]);
    let runs = TRANSPORTS.iter().map(|&t| {
        let mut cfg = fanout::Config::new(common(&s, t));
        cfg.common.channels = 2;
        cfg.rate = 50.0;
        cfg.duration = Duration::from_secs(2);
        async move { fanout::run(&cfg).await.unwrap() }
    });
    for r in join_all(runs).await {
        assert_clean(&r);
        assert_eq!(r.counts.received, r.published * 50, "{}", r.json());
        assert!(r.latency_us.is_some() && r.cpu_s.is_some() && r.peak_kib.is_some());
    }
}

#[tokio::test]
async fn idle_connections_all_receive_the_last_message() {
    let s = Binary::start(&[]);
    let runs = TRANSPORTS.iter().map(|&t| {
        let mut cfg = idle::Config::new(common(&s, t));
        cfg.timeout = Duration::from_secs(5);
        async move { idle::run(&cfg).await.unwrap() }
    });
    for r in join_all(runs).await {
        assert_clean(&r);
        assert_eq!(r.counts.received, 100, "{}", r.json());
        assert!(r.bytes_per_conn.is_some(), "{}", r.json());
    }
}

#[tokio::test]
async fn herd_of_long_polls_all_answer() {
    if !TRANSPORTS.contains(&Transport::Longpoll) {
        eprintln!("herd needs long polling, which this herald does not serve yet");
        return;
    }
    let s = Binary::start(&[]);
    let mut cfg = herd::Config::new(common(&s, Transport::Longpoll));
    cfg.timeout = Duration::from_secs(5);
    let r = herd::run(&cfg).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.counts.received, 100);
    assert!(r.herd_ms.is_some());
}

#[tokio::test]
async fn publish_single_and_batch_with_and_without_subscribers() {
    // Pollers asking every 20 ms fall far behind a publisher at full
    // speed; a deep history lets them catch up instead of seeing a gap.
    let s = Binary::start(&[
        "--history-messages",
        "100000",
        "--history-bytes",
        "67108864",
    ]);
    let run = |subscribers: usize, batch: usize| {
        let mut cfg = publish::Config::new(common(&s, TRANSPORTS[0]));
        cfg.common.subscribers = subscribers;
        cfg.batch = batch;
        cfg.concurrency = 2;
        cfg.duration = Duration::from_millis(1500);
        async move { publish::run(&cfg).await.unwrap() }
    };
    let runs = [run(0, 1), run(0, 50), run(100, 1), run(100, 20)];
    for r in join_all(runs).await {
        eprintln!("{}", r.json());
        assert!(
            r.ok && r.published > 0 && r.requests_per_s.is_some(),
            "{}",
            r.json()
        );
        if r.subscribers > 0 {
            assert_clean(&r);
            assert_eq!(r.counts.received, r.published * 50, "{}", r.json());
        }
    }
}

#[tokio::test]
async fn churn_sessions_lose_nothing() {
    let s = Binary::start(&[]);
    let runs = TRANSPORTS.iter().map(|&t| {
        let mut cfg = churn::Config::new(common(&s, t));
        cfg.common.subscribers = 50;
        cfg.rate = 50.0;
        cfg.per_session = 3;
        cfg.warmup = Duration::from_millis(500);
        cfg.duration = Duration::from_millis(1500);
        // Memory is the real comparison's business; a debug build on a
        // shared machine is too noisy for a 5 % bound.
        cfg.max_growth_pct = f64::INFINITY;
        async move { churn::run(&cfg).await.unwrap() }
    });
    for r in join_all(runs).await {
        assert_clean(&r);
        assert!(r.growth_pct.is_some(), "{}", r.json());
    }
}
