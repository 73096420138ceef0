//! Channel patterns: which channels a token, a hook answer or the public
//! list covers.
//!
//! A pattern is an exact channel name (`news`) or a prefix ending in `*`
//! (`user.42.*`, or `*` alone for every channel). The star is only allowed
//! last: there is no globbing in the middle and no regular expression, so
//! that what a pattern covers is obvious from reading it. `user.42.*`
//! covers `user.42.inbox` but not `user.42` itself, nor `user.420`; write
//! `user.42*` to cover all three.

use std::fmt;

use herald_bus::ChannelName;

/// An exact channel name or a `prefix*` pattern.
#[derive(Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Covers exactly this channel.
    Exact(ChannelName),
    /// Covers every channel whose name starts with this text (possibly
    /// empty: `*` covers every channel).
    Prefix(String),
}

impl Pattern {
    /// Parses `news` or `user.42.*`. Fails with a message naming the rule
    /// broken: a name outside the channel alphabet, or a `*` anywhere but
    /// last.
    pub fn new(text: &str) -> Result<Self, String> {
        match text.strip_suffix('*') {
            Some(prefix) => {
                if prefix.contains('*') {
                    return Err(format!(
                        "{text:?}: `*` is only allowed once, at the end of a pattern"
                    ));
                }
                // The prefix obeys the channel alphabet, so that a pattern
                // can never cover a name no channel could have.
                if !prefix.is_empty() {
                    ChannelName::new(prefix).map_err(|e| format!("{text:?}: {e}"))?;
                }
                Ok(Pattern::Prefix(prefix.to_owned()))
            }
            None if text.contains('*') => Err(format!(
                "{text:?}: `*` is only allowed once, at the end of a pattern"
            )),
            None => ChannelName::new(text)
                .map(Pattern::Exact)
                .map_err(|e| format!("{text:?}: {e}")),
        }
    }

    /// Whether this pattern covers `channel`.
    pub fn covers(&self, channel: &ChannelName) -> bool {
        match self {
            Pattern::Exact(name) => name == channel,
            Pattern::Prefix(prefix) => channel.as_str().starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(name) => f.write_str(name.as_str()),
            Pattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// A set of patterns: covers a channel when any of them does.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Patterns(Vec<Pattern>);

impl Patterns {
    /// No pattern: covers nothing.
    pub fn none() -> Self {
        Patterns(Vec::new())
    }

    /// Parses a comma-separated list (`news,user.42.*`); blanks around
    /// items and empty items are ignored, so `""` is the empty set.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(Pattern::new)
            .collect::<Result<Vec<_>, _>>()
            .map(Patterns)
    }

    /// Parses each item of a list (a token's `channels` claim).
    pub fn from_items<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        items
            .iter()
            .map(|item| Pattern::new(item.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Patterns)
    }

    /// Whether any pattern covers `channel`.
    pub fn covers(&self, channel: &ChannelName) -> bool {
        self.0.iter().any(|p| p.covers(channel))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patterns, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &Pattern> {
        self.0.iter()
    }
}

impl std::str::FromStr for Patterns {
    type Err = String;

    /// [`Patterns::parse_list`].
    fn from_str(list: &str) -> Result<Self, String> {
        Patterns::parse_list(list)
    }
}

impl fmt::Display for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(p, f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    fn covers(pattern: &str, channel: &str) -> bool {
        Pattern::new(pattern).unwrap().covers(&ch(channel))
    }

    #[test]
    fn exact_names_cover_only_themselves() {
        assert!(covers("news", "news"));
        assert!(!covers("news", "news2"));
        assert!(!covers("news", "new"));
        assert!(!covers("news", "NEWS"));
    }

    #[test]
    fn a_prefix_covers_what_starts_with_it_and_nothing_else() {
        assert!(covers("user.42.*", "user.42.inbox"));
        assert!(covers("user.42.*", "user.42.a.b"));
        assert!(
            !covers("user.42.*", "user.42"),
            "the dot is part of the prefix"
        );
        assert!(!covers("user.42.*", "user.420"));
        assert!(!covers("user.42.*", "xuser.42.inbox"));
        assert!(covers("user.42*", "user.42"));
        assert!(covers("user.42*", "user.420"));
    }

    #[test]
    fn a_lone_star_covers_every_channel() {
        assert!(covers("*", "a"));
        assert!(covers("*", "user.42.inbox"));
    }

    #[test]
    fn stars_anywhere_but_last_are_refused() {
        for bad in ["us*er", "**", "*.x", "a*b*", "user.*.inbox"] {
            assert!(Pattern::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_outside_the_channel_alphabet_are_refused() {
        for bad in ["", "a b", "a,b", "a/b*", "é", "a?*"] {
            assert!(Pattern::new(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(129);
        assert!(Pattern::new(&long).is_err());
    }

    #[test]
    fn lists_ignore_blanks_and_cover_by_any_item() {
        let p = Patterns::parse_list(" news , user.7.* ,,").unwrap();
        assert_eq!(p.to_string(), "news,user.7.*");
        assert!(p.covers(&ch("news")));
        assert!(p.covers(&ch("user.7.x")));
        assert!(!p.covers(&ch("user.8.x")));
        assert!(Patterns::parse_list("").unwrap().is_empty());
        assert!(Patterns::parse_list("a,b*c").is_err());
    }

    #[test]
    fn the_empty_set_covers_nothing() {
        assert!(!Patterns::none().covers(&ch("a")));
    }
}
