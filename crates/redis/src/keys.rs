//! The key layout, in one place. With the default prefix `herald:`:
//!
//! - `herald:epoch`: the store's epoch (string, no expiry);
//! - `herald:floor`: the highest id ever assigned on any channel (string, no
//!   expiry), so that a channel created again starts above it;
//! - `herald:order`: the engine-wide publish order, one count per message
//!   on every channel (string, no expiry);
//! - `herald:meta:<channel>`: hash `origin`, `last`, `bytes` (expires);
//! - `herald:log:<channel>`: list of stored messages, oldest first (expires);
//! - `herald:notify:<channel>`: the pub/sub channel of its notifications.
//!
//! The kind comes before the name, so that no channel name (which may hold
//! `:`) can make one key collide with another.

use herald_bus::ChannelName;

/// Builds key and pub/sub names from the configured prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    notify: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
            notify: format!("{prefix}notify:"),
        }
    }

    pub(crate) fn epoch(&self) -> String {
        self.join("epoch", "")
    }

    pub(crate) fn floor(&self) -> String {
        self.join("floor", "")
    }

    pub(crate) fn order(&self) -> String {
        self.join("order", "")
    }

    pub(crate) fn meta(&self, channel: &ChannelName) -> String {
        self.join("meta:", channel.as_str())
    }

    pub(crate) fn log(&self, channel: &ChannelName) -> String {
        self.join("log:", channel.as_str())
    }

    pub(crate) fn notify(&self, channel: &ChannelName) -> String {
        self.join("notify:", channel.as_str())
    }

    /// `prefix kind name`, without the formatting machinery: every publish
    /// builds a few of these.
    fn join(&self, kind: &str, name: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + name.len());
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push_str(name);
        key
    }

    /// The channel a pub/sub channel name belongs to.
    pub(crate) fn channel_of(&self, notify: &str) -> Option<ChannelName> {
        ChannelName::new(notify.strip_prefix(&self.notify)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_do_not_collide() {
        let k = Keys::new("herald:");
        let a = ChannelName::new("a:log").unwrap();
        let b = ChannelName::new("a").unwrap();
        assert_eq!(k.channel_of(&k.notify(&a)), Some(a.clone()));
        assert_ne!(k.meta(&a), k.log(&b));
        assert_ne!(k.log(&a), k.meta(&b));
        assert_eq!(k.channel_of("other:notify:a"), None);
    }
}
