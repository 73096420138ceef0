//! The many-channels fan-out against a real herald (in-process): several
//! publishers, each on its own share of the channels, must deliver every
//! message of every channel once and in order, at a fixed rate and as fast
//! as delivery keeps up, and the report must pair up with runs of the same
//! shape only.
//!
//! Figures are not checked (a debug build on a shared machine says nothing
//! about speed); what is checked is the delivery check, the count of
//! deliveries against what was published, and the figures being present.

use std::time::Duration;

use herald_bench::{
    Mem, Probe, System, Target, Transport,
    scenario::{Common, fanout},
};
use herald_testkit::Server;

fn config(s: &Server, transport: Transport, publishers: usize, rate: f64) -> fanout::Config {
    let target = Target::new(System::Herald, s.public, s.internal).unwrap();
    let mut c = Common::new(target, transport);
    c.subscribers = 120;
    c.channels = 30;
    c.ready_timeout = Duration::from_secs(20);
    c.probe = Probe::new(vec![std::process::id()], Mem::Rss);
    let mut cfg = fanout::Config::new(c);
    cfg.publishers = publishers;
    cfg.rate = rate;
    cfg.window = 16;
    cfg.duration = Duration::from_millis(1500);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_share_the_channels_and_lose_nothing() {
    let s = Server::start(&[]).await;
    for (transport, publishers, rate) in [
        (Transport::Ws, 4, 0.0),
        (Transport::Sse, 4, 200.0),
        (Transport::Ws, 1, 200.0),
        // More publishers than channels: one per channel.
        (Transport::Sse, 50, 0.0),
    ] {
        let cfg = config(&s, transport, publishers, rate);
        let r = fanout::run(&cfg).await.unwrap();
        eprintln!("{}", r.json());
        assert!(r.ok && r.counts.clean() && r.errors == 0, "{}", r.json());
        // Every channel has 4 subscribers: each message reaches 4.
        assert!(r.published > 0, "{}", r.json());
        assert_eq!(r.counts.received, r.published * 4, "{}", r.json());
        assert_eq!(r.channels, 30);
        assert_eq!(r.variant, cfg.variant());
        assert!(r.cpu_s_per_million.is_some() && r.client_cpu_pct.is_some());
    }
    let cfg = config(&s, Transport::Ws, 50, 0.0);
    assert_eq!(cfg.publishers(), 30);
    assert_eq!(cfg.variant(), "max, 30 publishers");
    assert_eq!(config(&s, Transport::Ws, 1, 10.0).variant(), "10 msg/s");
}
