//! Parser for netem's option syntax (`tc qdisc ... netem OPTIONS`).
//!
//! Scenarios are written for kernel netem (`"delay 100ms 75ms"`,
//! `"loss 30%"`); accepting the same strings lets them run unchanged on the
//! user-space model, where `tc` is not available. No crate parses netem
//! options, so this is hand-written, following iproute2's `tc/q_netem.c`
//! (`netem_parse_opt`): options in any order, and abbreviated as `tc`'s
//! `matches()` allows (`del` is `delay`; the first option in tc's order
//! that starts with the word wins); optional trailing numbers are
//! recognised by a leading digit (`NEXT_IS_NUMBER`); numbers and units as
//! iproute2's helpers read them (`netem_units`: a time without a unit is
//! in nanoseconds, units in any case). As tc, `gap` without a reorder
//! probability and `distribution` without a delay and a jitter are refused;
//! `reorder 0%` reorders nothing.
//!
//! Stricter than tc: each option may be given once (tc keeps the last of
//! most), and options the model does not implement (`slot`, `ecn`, a rate
//! in percent of a device's speed) are refused rather than ignored.

use std::fmt;
use std::time::Duration;

use crate::netem_units;

/// netem's default queue limit, in packets.
pub const DEFAULT_LIMIT: u32 = 1000;
/// The largest `limit` accepted: the model keeps one entry per queued packet.
pub const MAX_LIMIT: u32 = 1_000_000;
/// The longest time accepted for a delay or jitter.
pub const MAX_TIME: Duration = Duration::from_secs(3600);

/// A refused netem string: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("netem options, at byte {position}: expected {expected}, found {found}")]
pub struct NetemError {
    /// Byte offset into the string of the token at fault (its length if the
    /// string ended too early).
    pub position: usize,
    /// What the parser wanted at that position.
    pub expected: String,
    /// What it found (quoted), or `end of input`.
    pub found: String,
}

/// A probability in `0.0..=1.0`, written as a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percent(f64);

impl Percent {
    /// Zero percent.
    pub const ZERO: Percent = Percent(0.0);
    /// One hundred percent.
    pub const ONE: Percent = Percent(1.0);

    /// From a fraction in `0.0..=1.0`; `None` outside it (or NaN).
    pub fn from_fraction(fraction: f64) -> Option<Self> {
        (0.0..=1.0).contains(&fraction).then_some(Percent(fraction))
    }

    /// As a fraction in `0.0..=1.0`.
    pub fn fraction(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0 * 100.0)
    }
}

/// A probability with netem's correlation to the previous draw.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Chance {
    /// How often the event happens.
    pub probability: Percent,
    /// How much each draw leans on the previous one.
    pub correlation: Percent,
}

/// Shape of the delay's variation around its mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distribution {
    /// Uniform in `[delay - jitter, delay + jitter]`: what the kernel does
    /// when no table is loaded (netem's default).
    #[default]
    Uniform,
    /// Normal, with the jitter as standard deviation.
    Normal,
    /// Pareto (heavy right tail), standardised to mean 0 and deviation 1, then scaled by the jitter.
    Pareto,
    /// A quarter normal and three quarters Pareto, as iproute2's table mixes them.
    ParetoNormal,
}

impl Distribution {
    fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Normal => "normal",
            Distribution::Pareto => "pareto",
            Distribution::ParetoNormal => "paretonormal",
        }
    }
}

/// `delay TIME [JITTER [CORRELATION]] [distribution NAME]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Delay {
    /// Mean added delay.
    pub latency: Duration,
    /// Variation around it (half-width for uniform, deviation otherwise).
    pub jitter: Duration,
    /// Correlation of each random draw with the previous one.
    pub correlation: Percent,
    /// Shape of the variation.
    pub distribution: Distribution,
}

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// `loss [random] PERCENT [CORRELATION]`: independent (or correlated) losses.
    Random(Chance),
    /// `loss state p13 [p31 [p32 [p23 [p14]]]]`: the 4-state Markov model
    /// (1 good reception, 2 good within a burst, 3 burst, 4 isolated loss).
    State {
        /// Good reception to burst.
        p13: Percent,
        /// Burst to good reception.
        p31: Percent,
        /// Burst to good-within-burst.
        p32: Percent,
        /// Good-within-burst to burst.
        p23: Percent,
        /// Good reception to isolated loss.
        p14: Percent,
    },
    /// `loss gemodel p [r [1-h [1-k]]]`: Gilbert-Elliott.
    GilbertElliott {
        /// Good to bad.
        p: Percent,
        /// Bad to good.
        r: Percent,
        /// Loss probability in the bad state (`1-h`).
        bad_loss: Percent,
        /// Loss probability in the good state (`1-k`).
        good_loss: Percent,
    },
}

/// `reorder PERCENT [CORRELATION] [gap DISTANCE]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reorder {
    /// Chance that an eligible packet skips the delay.
    pub chance: Chance,
    /// Every `gap`-th packet is eligible (1: all of them).
    pub gap: u32,
}

/// `rate RATE [PACKETOVERHEAD [CELLSIZE [CELLOVERHEAD]]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Link speed.
    pub bits_per_second: u64,
    /// Bytes added to (or, negative, taken from) each packet's length.
    pub packet_overhead: i32,
    /// Link-layer cell size in bytes (0: no cells), e.g. 53 for ATM.
    pub cell_size: u32,
    /// Bytes added to each cell.
    pub cell_overhead: i32,
}

/// A parsed netem configuration. `Default` is "no impairment".
#[derive(Debug, Clone, PartialEq)]
pub struct Netem {
    /// Most packets held at once; more are dropped.
    pub limit: u32,
    /// Added delay, if any.
    pub delay: Option<Delay>,
    /// Loss model, if any.
    pub loss: Option<Loss>,
    /// Single-bit corruption.
    pub corrupt: Option<Chance>,
    /// Duplication.
    pub duplicate: Option<Chance>,
    /// Reordering (needs a delay).
    pub reorder: Option<Reorder>,
    /// Bandwidth limit.
    pub rate: Option<Rate>,
    /// Seed given in the string (`seed VALUE`), which a caller's seed may override.
    pub seed: Option<u64>,
}

impl Default for Netem {
    fn default() -> Self {
        Netem {
            limit: DEFAULT_LIMIT,
            delay: None,
            loss: None,
            corrupt: None,
            duplicate: None,
            reorder: None,
            rate: None,
            seed: None,
        }
    }
}

impl std::str::FromStr for Netem {
    type Err = NetemError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses netem options, e.g. `"delay 100ms 75ms 25% loss 1% rate 1mbit"`.
pub fn parse(input: &str) -> Result<Netem, NetemError> {
    Parser::new(input).options()
}

/// Parses one netem time (`100ms`, `1.5s`, `250us`; a bare number is in
/// nanoseconds, as in `tc`'s `get_time64`).
pub fn parse_time(text: &str) -> Result<Duration, NetemError> {
    let mut p = Parser::new(text);
    let time = p.time("a time")?;
    p.end()?;
    Ok(time)
}

/// Parses one netem rate (`1mbit`, `56kbit`, `100kbps`; a bare number is
/// in bit/s) into bits per second.
pub fn parse_rate(text: &str) -> Result<u64, NetemError> {
    let mut p = Parser::new(text);
    // Only the rate: `tc`'s optional overheads make no sense for one flag.
    if let Some(extra) = p.tokens.get(1).copied() {
        return Err(p.error(Some(extra), "nothing more"));
    }
    let rate = p.rate()?;
    Ok(rate.bits_per_second)
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    at: usize,
    text: &'a str,
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token<'a>>,
    next: usize,
}

const OPTIONS: &str =
    "an option (limit, delay, distribution, loss, corrupt, duplicate, reorder, gap, rate, seed)";

/// `netem_parse_opt`'s options in its order, each with the name it is
/// stored under: a word is the first option it is a prefix of (`matches()`).
const OPTION_ORDER: [(&str, &str); 14] = [
    ("limit", "limit"),
    ("latency", "delay"),
    ("delay", "delay"),
    ("loss", "loss"),
    ("drop", "loss"),
    ("seed", "seed"),
    ("ecn", "ecn"),
    ("reorder", "reorder"),
    ("corrupt", "corrupt"),
    ("gap", "gap"),
    ("duplicate", "duplicate"),
    ("distribution", "distribution"),
    ("rate", "rate"),
    ("slot", "slot"),
];

fn option_name(word: &str) -> Option<&'static str> {
    OPTION_ORDER
        .iter()
        .find(|(full, _)| !word.is_empty() && full.starts_with(word))
        .map(|(_, name)| *name)
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        let mut tokens = Vec::new();
        let mut start = None;
        for (i, c) in input.char_indices() {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    tokens.push(Token {
                        at: s,
                        text: &input[s..i],
                    });
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            tokens.push(Token {
                at: s,
                text: &input[s..],
            });
        }
        Parser {
            input,
            tokens,
            next: 0,
        }
    }

    fn error(&self, token: Option<Token<'_>>, expected: impl Into<String>) -> NetemError {
        NetemError {
            position: token.map_or(self.input.len(), |t| t.at),
            expected: expected.into(),
            found: token.map_or_else(|| "end of input".into(), |t| format!("`{}`", t.text)),
        }
    }

    fn take(&mut self) -> Option<Token<'a>> {
        let token = self.tokens.get(self.next).copied();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.next).copied()
    }

    /// iproute2's NEXT_IS_NUMBER: an optional argument is present when the
    /// next word starts with a digit.
    fn next_is_number(&self, signed: bool) -> bool {
        self.peek().is_some_and(|t| {
            let first = t.text.as_bytes().first().copied().unwrap_or(b' ');
            first.is_ascii_digit() || (signed && first == b'-')
        })
    }

    fn end(&mut self) -> Result<(), NetemError> {
        match self.take() {
            None => Ok(()),
            extra => Err(self.error(extra, "nothing more")),
        }
    }

    fn options(mut self) -> Result<Netem, NetemError> {
        let mut netem = Netem::default();
        let mut seen: Vec<&str> = Vec::new();
        let mut distribution: Option<(Token<'a>, Distribution)> = None;
        let mut gap: Option<(Token<'a>, u32)> = None;
        let mut reorder_at = None;
        while let Some(token) = self.take() {
            let Some(name) = option_name(token.text) else {
                return Err(self.error(Some(token), OPTIONS));
            };
            if seen.contains(&name) {
                return Err(self.error(
                    Some(token),
                    format!("{OPTIONS}; `{name}` was already given"),
                ));
            }
            match name {
                "limit" => {
                    let at = self.take();
                    let limit = at.and_then(|t| netem_units::size(t.text));
                    match limit.and_then(|l| u32::try_from(l).ok()) {
                        Some(l) if (1..=MAX_LIMIT).contains(&l) => netem.limit = l,
                        Some(_) | None => {
                            return Err(self.error(
                                at,
                                format!("a packet count after `limit`, from 1 to {MAX_LIMIT}"),
                            ))
                        }
                    }
                }
                "delay" => {
                    let latency = self.time("a time after `delay` (e.g. 100ms)")?;
                    let mut delay = Delay {
                        latency,
                        ..Delay::default()
                    };
                    if self.next_is_number(false) {
                        delay.jitter = self.time("a jitter time (e.g. 10ms)")?;
                        if self.next_is_number(false) {
                            delay.correlation = self.percent("a correlation percentage")?;
                        }
                    }
                    netem.delay = Some(delay);
                }
                "distribution" => {
                    let next = self.take();
                    let dist = match next.map(|t| t.text) {
                        Some("uniform") => Distribution::Uniform,
                        Some("normal") => Distribution::Normal,
                        Some("pareto") => Distribution::Pareto,
                        Some("paretonormal") => Distribution::ParetoNormal,
                        _ => {
                            return Err(self.error(
                                next,
                                "a distribution (uniform, normal, pareto, paretonormal)",
                            ))
                        }
                    };
                    distribution = Some((token, dist));
                }
                "loss" => netem.loss = Some(self.loss()?),
                "corrupt" => netem.corrupt = Some(self.chance("a percentage after `corrupt`")?),
                "duplicate" => {
                    netem.duplicate = Some(self.chance("a percentage after `duplicate`")?)
                }
                "reorder" => {
                    let chance = self.chance("a percentage after `reorder`")?;
                    // As the kernel: no probability, no reordering (gap 0).
                    if chance.probability != Percent::ZERO {
                        reorder_at = Some(token);
                        netem.reorder = Some(Reorder { chance, gap: 1 });
                    }
                }
                "gap" => {
                    let at = self.take();
                    let distance = at
                        .and_then(|t| netem_units::c_integer(t.text, false))
                        .and_then(|v| u32::try_from(v).ok());
                    let Some(distance) = distance else {
                        return Err(self.error(at, "a packet count after `gap`"));
                    };
                    gap = Some((token, distance));
                }
                "rate" => netem.rate = Some(self.rate()?),
                "seed" => netem.seed = Some(self.integer::<u64>("a number after `seed`")?.1),
                "slot" | "ecn" => {
                    return Err(self.error(
                        Some(token),
                        format!("{OPTIONS} (`{name}` is not implemented by the model)"),
                    ))
                }
                _ => return Err(self.error(Some(token), OPTIONS)),
            }
            seen.push(name);
        }
        self.check_combinations(&mut netem, distribution, reorder_at, gap)?;
        Ok(netem)
    }

    /// What `netem_parse_opt` checks once every option is read.
    fn check_combinations(
        &self,
        netem: &mut Netem,
        distribution: Option<(Token<'_>, Distribution)>,
        reorder_at: Option<Token<'_>>,
        gap: Option<(Token<'_>, u32)>,
    ) -> Result<(), NetemError> {
        // "distribution specified but no latency and jitter values"
        if let Some((at, dist)) = distribution {
            match netem.delay.as_mut() {
                Some(d) if !d.latency.is_zero() && !d.jitter.is_zero() => d.distribution = dist,
                _ => {
                    return Err(self.error(
                        Some(at),
                        "`delay TIME JITTER`, both non-zero, for a distribution",
                    ))
                }
            }
        }
        // "reordering not possible without specifying some delay"
        if let Some(at) = reorder_at {
            if netem.delay.is_none_or(|d| d.latency.is_zero()) {
                return Err(self.error(
                    Some(at),
                    "a non-zero `delay` for `reorder` (reordering sends some packets without it)",
                ));
            }
        }
        match (netem.reorder.as_mut(), gap) {
            // tc makes `gap 0` with a reorder probability gap 1.
            (Some(reorder), Some((_, distance))) => reorder.gap = distance.max(1),
            // "gap specified without reorder probability"
            (None, Some((at, distance))) if distance > 0 => {
                return Err(self.error(
                    Some(at),
                    "`reorder PERCENT` (non-zero) for `gap` (gap spaces reordered packets)",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn loss(&mut self) -> Result<Loss, NetemError> {
        let expected = "`random`, `state`, `gemodel` or a percentage after `loss`";
        let next = self.peek();
        match next.map(|t| t.text) {
            Some("random") => {
                self.take();
                Ok(Loss::Random(
                    self.chance("a percentage after `loss random`")?,
                ))
            }
            Some("state") => {
                self.take();
                let p13 = self.percent("p13, a percentage after `loss state`")?;
                let mut values = [
                    Percent::from_fraction(1.0 - p13.0).unwrap_or(Percent::ZERO),
                    Percent::ZERO,
                    Percent::ONE,
                    Percent::ZERO,
                ];
                for (slot, name) in values.iter_mut().zip(["p31", "p32", "p23", "p14"]) {
                    if !self.next_is_number(false) {
                        break;
                    }
                    *slot = self.percent(&format!("{name}, a percentage"))?;
                }
                let [p31, p32, p23, p14] = values;
                Ok(Loss::State {
                    p13,
                    p31,
                    p32,
                    p23,
                    p14,
                })
            }
            Some("gemodel") => {
                self.take();
                let p = self.percent("p, a percentage after `loss gemodel`")?;
                // iproute2's defaults: the simple Gilbert model r = 1-p,
                // everything lost in the bad state, nothing in the good one.
                let mut values = [
                    Percent::from_fraction(1.0 - p.0).unwrap_or(Percent::ZERO),
                    Percent::ONE,
                    Percent::ZERO,
                ];
                for (slot, name) in values.iter_mut().zip(["r", "1-h", "1-k"]) {
                    if !self.next_is_number(false) {
                        break;
                    }
                    *slot = self.percent(&format!("{name}, a percentage"))?;
                }
                let [r, bad_loss, good_loss] = values;
                Ok(Loss::GilbertElliott {
                    p,
                    r,
                    bad_loss,
                    good_loss,
                })
            }
            _ if self.next_is_number(false) => Ok(Loss::Random(self.chance(expected)?)),
            _ => Err(self.error(next, expected)),
        }
    }

    fn chance(&mut self, expected: &str) -> Result<Chance, NetemError> {
        let probability = self.percent(expected)?;
        let correlation = if self.next_is_number(false) {
            self.percent("a correlation percentage")?
        } else {
            Percent::ZERO
        };
        Ok(Chance {
            probability,
            correlation,
        })
    }

    fn percent(&mut self, expected: &str) -> Result<Percent, NetemError> {
        let token = self.take();
        token
            .and_then(|t| netem_units::percent(t.text))
            .and_then(Percent::from_fraction)
            .ok_or_else(|| self.error(token, format!("{expected} (0 to 100, e.g. 30%)")))
    }

    fn integer<T: std::str::FromStr>(
        &mut self,
        expected: &str,
    ) -> Result<(Token<'a>, T), NetemError> {
        let token = self.take();
        match token {
            Some(t) if t.text.bytes().all(|b| b.is_ascii_digit()) => t
                .text
                .parse::<T>()
                .map(|v| (t, v))
                .map_err(|_| self.error(token, format!("{expected} (too large)"))),
            _ => Err(self.error(token, expected)),
        }
    }

    fn time(&mut self, expected: &str) -> Result<Duration, NetemError> {
        let token = self.take();
        token
            .and_then(|t| netem_units::time(t.text))
            .ok_or_else(|| {
                self.error(
                    token,
                    format!(
                        "{expected}: a number with s, ms, us or ns (any case; none: \
                         nanoseconds, as in tc), at most 3600s"
                    ),
                )
            })
    }

    fn rate(&mut self) -> Result<Rate, NetemError> {
        let token = self.take();
        let expected = "a rate after `rate` (e.g. 1mbit; units bit, kbit, mbit, gbit, tbit, \
                        kibit, ..., bps, kbps, ..., kibps, ... in any case; not a percentage, \
                        which needs a device)";
        let bits = token
            .and_then(|t| netem_units::rate_bits(t.text))
            .filter(|b| *b >= 1.0 && *b < 1e15)
            .ok_or_else(|| self.error(token, format!("{expected}, from 1bit to 1000tbit")))?;
        let mut rate = Rate {
            bits_per_second: bits.round() as u64,
            packet_overhead: 0,
            cell_size: 0,
            cell_overhead: 0,
        };
        if self.next_is_number(true) {
            rate.packet_overhead = self.signed("a packet overhead in bytes")?;
            if self.next_is_number(false) {
                let at = self.take();
                rate.cell_size = at
                    .and_then(|t| netem_units::c_integer(t.text, false))
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| self.error(at, "a cell size in bytes"))?;
                if self.next_is_number(true) {
                    rate.cell_overhead = self.signed("a cell overhead in bytes")?;
                }
            }
        }
        Ok(rate)
    }

    fn signed(&mut self, expected: &str) -> Result<i32, NetemError> {
        let token = self.take();
        token
            .and_then(|t| netem_units::c_integer(t.text, true))
            .filter(|v| v.unsigned_abs() <= 65_535)
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| self.error(token, format!("{expected} (-65535 to 65535)")))
    }
}

impl fmt::Display for Netem {
    /// Writes options that parse back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.limit != DEFAULT_LIMIT {
            parts.push(format!("limit {}", self.limit));
        }
        if let Some(d) = &self.delay {
            let mut delay = format!("delay {}", Time(d.latency));
            if !d.jitter.is_zero() {
                delay += &format!(" {}{}", Time(d.jitter), Correlation(d.correlation));
            }
            parts.push(delay);
            if !d.jitter.is_zero() {
                parts.push(format!("distribution {}", d.distribution.name()));
            }
        }
        match &self.loss {
            Some(Loss::Random(c)) => parts.push(format!("loss random {}", Chancy(*c))),
            Some(Loss::State {
                p13,
                p31,
                p32,
                p23,
                p14,
            }) => parts.push(format!("loss state {p13} {p31} {p32} {p23} {p14}")),
            Some(Loss::GilbertElliott {
                p,
                r,
                bad_loss,
                good_loss,
            }) => parts.push(format!("loss gemodel {p} {r} {bad_loss} {good_loss}")),
            None => {}
        }
        if let Some(c) = self.corrupt {
            parts.push(format!("corrupt {}", Chancy(c)));
        }
        if let Some(c) = self.duplicate {
            parts.push(format!("duplicate {}", Chancy(c)));
        }
        if let Some(r) = &self.reorder {
            parts.push(format!("reorder {} gap {}", Chancy(r.chance), r.gap));
        }
        if let Some(r) = &self.rate {
            parts.push(format!(
                "rate {}bit {} {} {}",
                r.bits_per_second, r.packet_overhead, r.cell_size, r.cell_overhead
            ));
        }
        if let Some(seed) = self.seed {
            parts.push(format!("seed {seed}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// A probability, and its correlation when there is one.
struct Chancy(Chance);

impl fmt::Display for Chancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.0.probability,
            Correlation(self.0.correlation)
        )
    }
}

/// ` 25%`, or nothing for no correlation.
struct Correlation(Percent);

impl fmt::Display for Correlation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Percent::ZERO {
            Ok(())
        } else {
            write!(f, " {}", self.0)
        }
    }
}

/// A time in the largest unit that shows it exactly.
struct Time(Duration);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        match nanos {
            n if n % 1_000_000_000 == 0 => write!(f, "{}s", n / 1_000_000_000),
            n if n % 1_000_000 == 0 => write!(f, "{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => write!(f, "{}us", n / 1_000),
            n => write!(f, "{n}ns"),
        }
    }
}

#[cfg(test)]
#[path = "netem_tests.rs"]
mod tests;
