//! The event bus every herald transport stands on.
//!
//! It owns the delivery guarantees: per-channel order, no duplicates, no
//! silent loss (a position older than the retained history is reported as a
//! gap), and memory that stays bounded whatever subscribers do. A subscriber
//! holds a [`Cursor`], never a private queue: it reads the channel's shared,
//! bounded [`history`](Config) from its position, so a slow reader costs
//! nothing but its position.
//!
//! Storage and ordering sit behind the [`Engine`] trait. [`MemoryEngine`] is
//! the default; a remote engine (Redis) implements the same trait so that
//! several gateway instances share ids, history and cursors.
//!
//! The bus knows nothing of HTTP, sockets or encodings: transports turn
//! [`Batch`]es into bytes, and may cache one encoding per message with
//! [`Message::encoded`].
//!
//! Message times and ages come from the [`Clock`] in the engine's
//! [`Config`]: the system clock in production, a [`ManualClock`] in tests.
//! With the `testing` feature, `herald_bus::testing` holds the contract
//! every engine is tested against.

mod bus;
mod channel;
mod clock;
mod cursor;
mod engine;
mod error;
mod memory;
mod message;
mod subscription;
mod tap;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::{Bus, Published};
pub use channel::{ChannelName, EventName, RESERVED_EVENT_PREFIX};
pub use clock::{Clock, ManualClock};
pub use cursor::Cursor;
pub use engine::{ChannelInfo, Engine, Health, Page, Signal, Watch};
pub use error::Error;
pub use memory::{Config, MemoryEngine};
pub use message::{Draft, Encoding, Message, Payload};
pub use subscription::{Batch, Start, Subscription};
pub use tap::{Outlet, Run, Sent, Tap, Taps};
