//! Subscribers indexed by channel pattern: exact names in one map, prefixes in
//! another. An event on channel `c` looks up `c` and each prefix of `c` that
//! some subscriber uses: the cost depends on the channel's length, not on the
//! number of subscribers.

use std::collections::{HashMap, HashSet};

use super::SubscriberId;
use crate::domain::ChannelPattern;

#[derive(Default)]
pub(super) struct ChannelIndex {
    exact: HashMap<String, HashSet<SubscriberId>>,
    prefix: HashMap<String, HashSet<SubscriberId>>,
    /// Lengths of the prefixes in use, so lookups skip the others.
    prefix_lengths: HashMap<usize, usize>,
}

impl ChannelIndex {
    pub(super) fn insert(&mut self, id: SubscriberId, patterns: &[ChannelPattern]) {
        for pattern in patterns {
            match pattern {
                ChannelPattern::Exact(name) => {
                    self.exact.entry(name.clone()).or_default().insert(id);
                }
                ChannelPattern::Prefix(prefix) => {
                    let set = self.prefix.entry(prefix.clone()).or_default();
                    if set.insert(id) && set.len() == 1 {
                        *self.prefix_lengths.entry(prefix.len()).or_default() += 1;
                    }
                }
            }
        }
    }

    /// Gives back the room of streams that have closed.
    pub(super) fn shrink_to_fit(&mut self) {
        self.exact.shrink_to_fit();
        self.prefix.shrink_to_fit();
        for set in self.exact.values_mut().chain(self.prefix.values_mut()) {
            set.shrink_to_fit();
        }
    }

    pub(super) fn remove(&mut self, id: SubscriberId, patterns: &[ChannelPattern]) {
        for pattern in patterns {
            match pattern {
                ChannelPattern::Exact(name) => {
                    if let Some(set) = self.exact.get_mut(name) {
                        set.remove(&id);
                        if set.is_empty() {
                            self.exact.remove(name);
                        }
                    }
                }
                ChannelPattern::Prefix(prefix) => {
                    if let Some(set) = self.prefix.get_mut(prefix) {
                        if set.remove(&id) && set.is_empty() {
                            self.prefix.remove(prefix);
                            if let Some(n) = self.prefix_lengths.get_mut(&prefix.len()) {
                                *n -= 1;
                                if *n == 0 {
                                    self.prefix_lengths.remove(&prefix.len());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Appends the subscribers whose patterns match `channel`. A subscriber
    /// with overlapping patterns may appear more than once; the hub skips
    /// repeats by id.
    pub(super) fn collect(&self, channel: &str, out: &mut Vec<SubscriberId>) {
        if let Some(set) = self.exact.get(channel) {
            out.extend(set.iter().copied());
        }
        for &len in self.prefix_lengths.keys() {
            if len <= channel.len() {
                if let Some(set) = channel.get(..len).and_then(|p| self.prefix.get(p)) {
                    out.extend(set.iter().copied());
                }
            }
        }
    }

    /// Streams per pattern, for stats.
    pub(super) fn counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = self
            .exact
            .iter()
            .map(|(name, set)| (name.clone(), set.len()))
            .chain(
                self.prefix
                    .iter()
                    .map(|(p, set)| (format!("{p}*"), set.len())),
            )
            .collect();
        counts.sort();
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &str) -> Vec<ChannelPattern> {
        ChannelPattern::parse_list("channels", Some(list)).unwrap()
    }

    fn matching(index: &ChannelIndex, channel: &str) -> Vec<SubscriberId> {
        let mut out = Vec::new();
        index.collect(channel, &mut out);
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn exact_and_prefix_patterns_find_their_subscribers_only() {
        let mut index = ChannelIndex::default();
        index.insert(1, &patterns("features"));
        index.insert(2, &patterns("conversation:*"));
        index.insert(3, &patterns("*"));
        index.insert(4, &patterns("files,conversation:42"));
        assert_eq!(matching(&index, "features"), vec![1, 3]);
        assert_eq!(matching(&index, "conversation:42"), vec![2, 3, 4]);
        assert_eq!(matching(&index, "conversation:7"), vec![2, 3]);
        assert_eq!(matching(&index, "conversations"), vec![3]);
        index.remove(3, &patterns("*"));
        index.remove(2, &patterns("conversation:*"));
        assert_eq!(matching(&index, "conversation:7"), Vec::<u64>::new());
        assert!(index.prefix_lengths.is_empty());
    }
}
