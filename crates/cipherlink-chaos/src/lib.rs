//! Chaos lab: reproducible network impairments for testing cipherlink's
//! protocols under loss, delay, reordering, duplication, corruption and
//! bandwidth limits.
//!
//! ```text
//!  "delay 100ms 75ms loss 30%" --netem::parse--> Netem --Model::new(seed)--> Model
//!                                                                              |
//!   packet (len, now) --------------------------------------------> Model::decide
//!                                    -> dropped | delivered at T (xN, bit flipped)
//!
//!  client --TCP--> StreamProxy (latency, bandwidth, slice, stall, reset, corrupt) --TCP--> upstream
//!
//!  netns A --TUN--> Router (a Model per direction, timer queue) --TUN--> netns B   (root)
//! ```
//!
//! The model is sans-IO: it takes the time as an argument and draws every
//! random number from one seeded generator, so a run is repeatable from its
//! seed and testable without sleeping. Drivers (the stream proxy and the TUN
//! router) only move bytes and arm timers. Kernel netem is not
//! available where the lab runs, which is why netem's behaviour is
//! reimplemented here rather than configured with `tc`.
//!
//! The protocols under test plug in as [`subject::Subject`]s (TLS, the link
//! protocol, the proxy's NaCl frame, plain TCP) or, datagram transports,
//! as [`subject::DatagramSubject`]s (plain UDP, TYPHOON); [`scenarios`]
//! lists the standard scenarios, [`scenario_run`] runs one of them over
//! a stream and [`dgram_run`] with datagrams.

pub mod capture;
pub mod comparison;
pub mod comparison_html;
mod comparison_words;
pub mod dgram_exchange;
pub mod dgram_run;
pub mod exchange;
pub mod lab;
pub mod lab_echo;
pub mod memory;
pub mod model;
pub mod netem;
mod netem_units;
pub mod output;
mod output_private;
mod output_walk;
pub mod recorder;
pub mod report;
pub mod results;
pub mod results_dgram;
pub mod router;
pub mod scenario_run;
pub mod scenarios;
pub mod signals;
pub mod simulate;
pub mod stream_proxy;
pub mod stream_queue;
pub mod stream_shaper;
pub mod subject;
pub mod svg;
pub mod timeline;
pub mod tls_records;
pub mod tun_router;

pub use model::{Decision, Delivery, DropReason, Model};
pub use netem::{Netem, NetemError};
