//! The scenarios `cipherlink chaos run` knows: the PORT experiment's
//! network conditions, each a netem string (both directions) and a message
//! sequence to exchange.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioDef {
    /// Short name (file names, `--scenario NAME`).
    pub name: String,
    /// What it shows.
    pub title: String,
    /// netem options applied to both directions (each with its own draws).
    pub netem: String,
    /// Messages the client sends and expects back, in order.
    pub messages: u32,
    /// The peer goes silent after this many messages (every packet either
    /// way is dropped from then on): the stale-peer scenario.
    pub stale_after: Option<u32>,
}

/// Bytes of message `seq`: varied sizes (64 to 1,463 bytes), so that
/// small messages share segments and large ones span two.
pub fn message_size(seq: u32) -> usize {
    64 + (seq as usize * 389) % 1400
}

fn def(
    name: &str,
    title: &str,
    netem: &str,
    messages: u32,
    stale_after: Option<u32>,
) -> ScenarioDef {
    ScenarioDef {
        name: name.into(),
        title: title.into(),
        netem: netem.into(),
        messages,
        stale_after,
    }
}

/// The scenarios of the PORT chaos notebook cipherlink started from, in its
/// order (`long` is its 96-message sequence).
pub fn standard_scenarios() -> Vec<ScenarioDef> {
    vec![
        def("ideal", "ideal network", "", 32, None),
        def(
            "stale",
            "stale peer: silent after 4 messages",
            "",
            5,
            Some(4),
        ),
        def("long", "a long run: 96 messages in a row", "", 96, None),
        def("jitter", "jitter 25-175 ms", "delay 100ms 75ms", 32, None),
        def("loss", "30% loss", "loss 30%", 32, None),
        def("duplicate", "30% duplication", "duplicate 30%", 32, None),
        def(
            "reorder",
            "reordering",
            "delay 125ms reorder 30% 50%",
            32,
            None,
        ),
        def("corrupt", "30% corruption", "corrupt 30%", 32, None),
    ]
}

/// The scenarios named in `names`: `all`, one name, or names separated
/// by commas (in the standard order, each once); `None` if a name is
/// unknown.
pub fn select(names: &str) -> Option<Vec<ScenarioDef>> {
    let all = standard_scenarios();
    if names == "all" {
        return Some(all);
    }
    let wanted: Vec<&str> = names.split(',').map(str::trim).collect();
    if wanted.iter().any(|w| !all.iter().any(|s| s.name == *w)) {
        return None;
    }
    Some(
        all.into_iter()
            .filter(|s| wanted.contains(&s.name.as_str()))
            .collect(),
    )
}

/// Time limits of a run; every wait of a scenario is bounded by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// A whole scenario (connect, exchange, close).
    #[serde(with = "millis")]
    pub scenario: Duration,
    /// For subjects without a keepalive: how long TCP may leave data
    /// unacknowledged before it declares the peer gone (`TCP_USER_TIMEOUT`,
    /// set on the client's socket in the stale scenario).
    #[serde(with = "millis")]
    pub tcp_user_timeout: Duration,
    /// Slack over the declared bound before the run itself gives up on the
    /// stale scenario (and fails it: the transport did not notice).
    #[serde(with = "millis")]
    pub stale_slack: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            scenario: Duration::from_secs(60),
            tcp_user_timeout: Duration::from_secs(3),
            stale_slack: Duration::from_secs(3),
        }
    }
}

/// Durations as whole milliseconds in JSON.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_list_parses_and_selects() {
        let all = standard_scenarios();
        assert_eq!(all.len(), 8);
        for s in &all {
            crate::netem::parse(&s.netem).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        }
        assert_eq!(
            select("loss").map(|v| v[0].netem.clone()),
            Some("loss 30%".into())
        );
        assert_eq!(select("all").map(|v| v.len()), Some(8));
        assert_eq!(select("nope"), None);
        assert_eq!(all.iter().filter(|s| s.stale_after.is_some()).count(), 1);
        assert!((0..200).all(|i| (64..1464).contains(&message_size(i))));
    }
}
