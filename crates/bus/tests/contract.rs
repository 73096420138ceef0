//! The engine contract ([`herald_bus::testing`]) on the memory engine, on
//! paused tokio time, and what only the memory engine promises: expired
//! channels nobody watches are dropped from memory, and looking at one does
//! not bring it back.

use std::{slice::from_ref, time::Duration};

use herald_bus::{
    Bus, ChannelName, Clock, Config, Draft, ManualClock, MemoryEngine, Payload, Start,
    testing::Memory,
};

herald_bus::contract_tests!(Some(Memory), paused);

#[tokio::test(start_paused = true)]
async fn the_sweeper_forgets_expired_unwatched_channels() {
    let clock = ManualClock::new();
    let engine = MemoryEngine::new(Config {
        max_age: Duration::from_secs(60),
        clock: Clock::Manual(clock.clone()),
        ..Config::default()
    });
    let bus = Bus::new(engine.clone());
    let (kept, dead) = (
        ChannelName::new("kept").unwrap(),
        ChannelName::new("dead").unwrap(),
    );
    for c in [&kept, &dead] {
        let draft = Draft {
            channel: c.clone(),
            event: None,
            payload: Payload::text("x").unwrap(),
        };
        bus.publish(vec![draft]).await.unwrap();
    }
    let sub = bus.subscribe(from_ref(&kept), &Start::Now).await.unwrap();
    assert_eq!(engine.channel_count(), 2);

    clock.advance(Duration::from_secs(61));
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(engine.channel_count(), 1, "a watched channel stays");
    drop(sub);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(engine.channel_count(), 0, "dead channels are forgotten");

    // Looking at a dead channel does not bring it back.
    assert!(bus.info(&dead).await.unwrap().last_id.is_some());
    let batch = bus
        .read(from_ref(&dead), &Start::Last(10), 10)
        .await
        .unwrap();
    assert!(batch.is_empty());
    assert_eq!(engine.channel_count(), 0);
}
