use super::*;
use crate::exchange::{ClientLog, MessageRecord, ServerLog};
use crate::output::{Invoker, OutDir};
use crate::results::Mode;
use crate::scenarios::{select, ScenarioDef, Timers};
use PacketClass::*;

fn def(name: &str) -> ScenarioDef {
    select(name)
        .and_then(|v| v.into_iter().next())
        .expect("scenario")
}

fn packet(t: f64, from_client: bool, len: usize, class: PacketClass) -> PacketRecord {
    PacketRecord {
        t,
        from_client,
        len,
        class,
    }
}

/// `n` messages of 100 bytes, the first `echoed` of them echoed 5 ms
/// after they were sent; the server accepted those in order.
fn logs(n: u32, echoed: u32) -> (ClientLog, ServerLog) {
    let messages = (0..n)
        .map(|seq| MessageRecord {
            seq,
            size: 100,
            sent: 0.1 + f64::from(seq) * 0.01,
            server_received: None,
            echoed: (seq < echoed).then(|| 0.1 + f64::from(seq) * 0.01 + 0.005),
        })
        .collect();
    let client = ClientLog {
        connected: Some(0.0125),
        messages,
        completed: n == echoed,
        ..ClientLog::default()
    };
    let server = ServerLog {
        received: (0..echoed)
            .map(|s| (s, 0.1 + f64::from(s) * 0.01))
            .collect(),
        ..ServerLog::default()
    };
    (client, server)
}

fn result(
    scenario: &str,
    transport: &str,
    (client, server): (ClientLog, ServerLog),
    packets: Vec<PacketRecord>,
) -> ScenarioResult {
    let d = def(scenario);
    let bound = d.stale_after.map(|_| 3.5);
    ScenarioResult::new(
        d,
        transport,
        Mode::Lab,
        1,
        Timers::default(),
        bound,
        client,
        server,
        1.0,
        None,
        packets,
        None,
    )
}

/// Packets totalling `per_payload` wire bytes per payload byte of
/// `logs(n, n)`: one data packet per message each way, plus four
/// TCP-only segments of 40 bytes.
fn capture(n: u32, per_payload: f64) -> Vec<PacketRecord> {
    let payload = 2.0 * 100.0 * f64::from(n);
    let control = 4 * 40;
    let data_len = ((per_payload * payload) as usize - control) / (2 * n as usize);
    let mut p = vec![
        packet(0.0, true, 40, Control),
        packet(0.001, false, 40, Control),
    ];
    for i in 0..n {
        let t = 0.01 + f64::from(i) * 0.01;
        p.push(packet(t, true, data_len, Data));
        p.push(packet(t + 0.004, false, data_len, Data));
    }
    p.push(packet(0.5, true, 40, Control));
    p.push(packet(0.501, false, 40, Control));
    p
}

#[test]
fn setup_is_the_clients_own_time_when_it_has_one() {
    // The packets would say 30 ms; the client's clock says 12.5 ms.
    let packets = vec![
        packet(0.0, true, 60, Control),
        packet(0.01, false, 100, Handshake),
        packet(0.03, true, 100, Handshake),
    ];
    let r = result("ideal", "tls", logs(4, 4), packets);
    let s = setup(&r).expect("set-up");
    assert_eq!(s.source, SetupSource::Client);
    assert!((s.ms - 12.5).abs() < 1e-9, "{}", s.ms);
}

#[test]
fn setup_from_the_capture_when_the_client_cannot_tell() {
    let (mut client, server) = logs(4, 4);
    client.connected = None;
    // SYN at 0.5 s (capture time), the client's hello, the server's ACK
    // (no payload), the server's hello, a corrupted client copy and a
    // client ACK (neither counts), then the client speaks again at 0.63 s.
    let packets = vec![
        packet(0.5, true, 60, Control),
        packet(0.51, false, 60, Control),
        packet(0.52, true, 52, Control),
        packet(0.53, true, 300, Handshake),
        packet(0.60, false, 52, Control),
        packet(0.61, false, 900, Handshake),
        packet(0.615, true, 300, Invalid),
        packet(0.62, true, 52, Control),
        packet(0.63, true, 120, Unknown),
        packet(0.70, false, 120, Data),
    ];
    let r = result("ideal", "foreign", (client, server), packets.clone());
    let s = setup(&r).expect("set-up");
    assert_eq!(s.source, SetupSource::Capture);
    assert!((s.ms - 130.0).abs() < 1e-6, "{}", s.ms);
    let m = metrics(&r);
    assert_eq!(m.setup, Some(s));

    // Nothing from the server with payload; nothing from the client after
    // it; only the client's FIN after it; no packets at all.
    assert_eq!(setup_from_capture(&packets[..5]), None);
    assert_eq!(setup_from_capture(&packets[..8]), None);
    let mut fin = packets[..6].to_vec();
    fin.push(packet(0.64, true, 52, Close));
    assert_eq!(setup_from_capture(&fin), None);
    assert_eq!(setup_from_capture(&[]), None);
    let (mut client, server) = logs(4, 4);
    client.connected = None;
    assert_eq!(
        metrics(&result("ideal", "foreign", (client, server), Vec::new())).setup,
        None
    );
}

#[test]
fn round_trips_and_goodput_are_the_results() {
    let r = result("ideal", "tcp", logs(32, 32), capture(32, 1.5));
    let m = metrics(&r);
    let q = r.rtt_ms.expect("rtt");
    assert_eq!((m.rtt_p50_ms, m.rtt_p95_ms), (Some(q.p50), Some(q.p95)));
    assert!((q.p50 - 5.0).abs() < 1e-6);
    assert_eq!(m.goodput_bytes_per_s, r.rate_bytes_per_s);
    assert!(m.goodput_bytes_per_s.is_some_and(|g| g > 0.0));

    let skipped = metrics(&ScenarioResult::skipped(
        def("loss"),
        "tcp",
        Mode::Proxy,
        Timers::default(),
        "the stream proxy cannot lose packets".into(),
    ));
    assert_eq!(
        (
            skipped.rtt_p50_ms,
            skipped.goodput_bytes_per_s,
            skipped.setup
        ),
        (None, None, None)
    );
    assert_eq!(skipped.verdict, "NOT RUN");
    assert_eq!((skipped.gone.clone(), skipped.intact.clone()), (None, None));
}

#[test]
fn wire_bytes_and_packets_per_payload() {
    // 4 of 5 messages of 100 bytes echoed: 800 payload bytes.
    let packets = vec![
        packet(0.0, true, 60, Control),
        packet(0.01, true, 500, Data),
        packet(0.02, false, 500, Data),
        packet(0.03, true, 500, Data),
        packet(0.04, false, 440, Data),
        packet(0.05, true, 60, Keepalive),
        packet(0.06, false, 40, Control),
        packet(0.07, true, 300, Invalid),
    ];
    let (client, server) = logs(5, 4);
    let r = result("loss", "link", (client, server), packets);
    let m = metrics(&r);
    assert_eq!(m.payload_bytes, 800);
    assert_eq!(m.wire_bytes, 2400);
    assert_eq!(m.packets, 8);
    assert_eq!(m.wire_per_payload, Some(3.0));
    assert_eq!(m.packets_per_kib, Some(8.0 * 1024.0 / 800.0));
    let by = |c: &str| m.wire_bytes_by_class.get(c).copied();
    assert_eq!(
        (by("data"), by("control"), by("keepalive"), by("invalid")),
        (Some(1940), Some(100), Some(60), Some(300))
    );

    // Nothing echoed, or nothing captured: no ratio.
    let m = metrics(&result("loss", "link", logs(5, 0), capture(1, 2.0)));
    assert_eq!(m.payload_bytes, 0);
    assert_eq!((m.wire_per_payload, m.packets_per_kib), (None, None));
    let m = metrics(&result("loss", "link", logs(5, 5), Vec::new()));
    assert_eq!(m.payload_bytes, 1000);
    assert_eq!((m.wire_per_payload, m.packets_per_kib), (None, None));
}

/// The stale scenario: 4 messages echoed, then silence at 1.0 s, then the
/// client's end at `failed_at` with `error`.
fn stale(transport: &str, failed_at: f64, error: &str) -> ScenarioResult {
    let (mut client, server) = logs(5, 4);
    client.silenced_at = Some(1.0);
    client.failed_at = Some(failed_at);
    client.error = Some(error.into());
    result("stale", transport, (client, server), capture(4, 2.0))
}

#[test]
fn a_silent_peer_declared_gone_within_over_or_never() {
    let g = gone(&stale(
        "link",
        3.1,
        "peer gone: no answer to 3 keepalive retries",
    ));
    let Some(Gone::Declared {
        after_s,
        bound_s: Some(b),
        within_bound: Some(true),
    }) = g
    else {
        panic!("{g:?}")
    };
    assert!((after_s - 2.1).abs() < 1e-9 && b == 3.5);

    let g = gone(&stale("link", 5.0, "peer gone"));
    assert!(
        matches!(
            g,
            Some(Gone::Declared {
                within_bound: Some(false),
                ..
            })
        ),
        "{g:?}"
    );

    let why = "the transport did not declare the silent peer gone within 6.5s";
    assert_eq!(
        gone(&stale("tcp", 7.5, why)),
        Some(Gone::NotDeclared {
            bound_s: Some(3.5),
            why: why.into()
        })
    );

    // Not the stale scenario; not run; could not run before the silence.
    assert_eq!(gone(&result("ideal", "tcp", logs(4, 4), Vec::new())), None);
    let skipped = ScenarioResult::skipped(
        def("stale"),
        "tcp",
        Mode::Proxy,
        Timers::default(),
        "the proxy cannot silence a peer".into(),
    );
    assert_eq!(metrics(&skipped).gone, None);
    let error = ScenarioResult::error(
        def("stale"),
        "tcp",
        Mode::Lab,
        Timers::default(),
        "no TUN device".into(),
    );
    let g = metrics(&error).gone;
    assert!(
        matches!(&g, Some(Gone::NotDeclared { why, .. }) if why.contains("before the silence: no TUN device")),
        "{g:?}"
    );
}

#[test]
fn intact_and_once_or_why_not() {
    let ok = |r: &ScenarioResult| intact(r);
    assert_eq!(
        ok(&result("ideal", "tcp", logs(32, 32), Vec::new())),
        Intact {
            ok: true,
            why: vec![]
        }
    );
    // The stale scenario expects only the messages before the silence.
    assert!(ok(&stale("link", 3.0, "peer gone")).ok);

    let short = ok(&result("loss", "tcp", logs(32, 30), Vec::new()));
    assert_eq!(short.why, vec!["30 of 32 messages echoed".to_string()]);

    let (mut c, s) = logs(32, 32);
    c.wrong = 1;
    let wrong = ok(&result("corrupt", "tcp", (c, s), Vec::new()));
    assert!(!wrong.ok);
    assert!(
        wrong.why[0].starts_with("wrong data: 1 wrong echoes"),
        "{wrong:?}"
    );

    let (mut c, s) = logs(32, 32);
    c.extra_bytes = 7;
    assert!(ok(&result("duplicate", "tcp", (c, s), Vec::new())).why[0].contains("7 extra bytes"));

    let (c, mut s) = logs(32, 32);
    s.wrong = 2;
    s.received.swap(3, 4);
    let w = ok(&result("duplicate", "tcp", (c, s), Vec::new()));
    assert_eq!(w.why.len(), 2, "{w:?}");
    assert!(w.why[0].contains("2 wrong messages at the server"));
    assert!(w.why[1].contains("out of order or twice"));
}

#[test]
fn one_transport_has_nothing_to_compare() {
    let results = vec![
        result("ideal", "tcp", logs(32, 32), capture(32, 1.5)),
        result("loss", "tcp", logs(32, 32), capture(32, 1.5)),
    ];
    assert_eq!(compare(&results), None);
    assert!(!crate::report::html(&results, &[]).contains("id=\"comparison\""));
}

/// tcp, link and v1 (not run) in `ideal`, tcp and link in `stale`, link
/// alone in `loss`.
fn three_transports() -> Vec<ScenarioResult> {
    vec![
        result("ideal", "tcp", logs(32, 32), capture(32, 1.5)),
        result("ideal", "link", logs(32, 32), capture(32, 2.1)),
        ScenarioResult::skipped(
            def("ideal"),
            "v1",
            Mode::Proxy,
            Timers::default(),
            "skipped for the test".into(),
        ),
        stale(
            "tcp",
            7.5,
            "the transport did not declare the silent peer gone within 6.5s",
        ),
        stale("link", 3.1, "peer gone: no answer to 3 keepalive retries"),
        result("loss", "link", logs(32, 32), capture(32, 2.4)),
    ]
}

#[test]
fn rows_are_set_against_plain_tcp_and_say_so() {
    let c = compare(&three_transports()).expect("a comparison");
    assert_eq!(c.transports, ["tcp", "link", "v1"]);
    let names: Vec<_> = c.scenarios.iter().map(|b| b.scenario.as_str()).collect();
    assert_eq!(names, ["ideal", "stale", "loss"]);
    let ideal = &c.scenarios[0];
    assert_eq!(ideal.baseline, Baseline::Plain);
    assert_eq!(ideal.rows.len(), 3);
    let [tcp, link, v1] = &ideal.rows[..] else {
        panic!("rows")
    };
    let ratio = link.ratios.wire_per_payload.expect("ratio");
    assert!((ratio - 1.4).abs() < 0.01, "{ratio}");
    assert_eq!(tcp.ratios.wire_per_payload, Some(1.0));
    assert!(
        tcp.sentence.starts_with("tcp: the baseline"),
        "{}",
        tcp.sentence
    );
    assert!(
        link.sentence.starts_with("link: 2.1 wire bytes per payload byte, 1.4x plain: data packets make 2.07 per payload byte"),
        "{}",
        link.sentence
    );
    assert!(
        link.sentence.contains("set up in 12.5 ms, 1.0x plain"),
        "{}",
        link.sentence
    );
    assert!(link.sentence.contains("every message echoed intact, once"));
    assert_eq!(
        v1.sentence,
        "v1: not run in this scenario (skipped for the test)."
    );
    assert_eq!(v1.ratios, Ratios::default());

    let stale = &c.scenarios[1];
    assert_eq!(stale.rows[1].transport, "link");
    assert!(
        stale.rows[1]
            .sentence
            .contains("declared the silent peer gone after 2.1 s, within its 3.5 s bound"),
        "{}",
        stale.rows[1].sentence
    );
    assert!(
        stale.rows[0].sentence.contains(
            "never declared the silent peer gone within its 3.5 s bound; the lab stopped waiting"
        ),
        "{}",
        stale.rows[0].sentence
    );
    assert_eq!(
        stale.rows[2].sentence,
        "v1: no result for this scenario in this run."
    );
}

#[test]
fn without_plain_tcp_rows_are_set_against_the_best() {
    let c = compare(&three_transports()).expect("a comparison");
    // In `loss` only link ran: there is nothing to set it against.
    let loss = &c.scenarios[2];
    assert_eq!(loss.baseline, Baseline::Best);
    assert_eq!(loss.references, References::default());
    assert_eq!(loss.rows[1].ratios, Ratios::default());
    assert!(
        !loss.rows[1].sentence.contains("best"),
        "{}",
        loss.rows[1].sentence
    );

    let results = vec![
        result("ideal", "link", logs(32, 32), capture(32, 2.1)),
        result("ideal", "tls", logs(32, 32), capture(32, 3.0)),
    ];
    let c = compare(&results).expect("a comparison");
    let b = &c.scenarios[0];
    assert_eq!(b.baseline, Baseline::Best);
    let wire = b.references.wire_per_payload.as_ref().expect("reference");
    assert_eq!(wire.transport, "link");
    assert!(
        b.rows[0]
            .sentence
            .contains("2.1 wire bytes per payload byte, the best here:"),
        "{}",
        b.rows[0].sentence
    );
    let tls = &b.rows[1];
    assert!(
        tls.sentence
            .contains("3.0 wire bytes per payload byte, 1.4x the best (link)"),
        "{}",
        tls.sentence
    );
}

#[test]
fn the_html_has_a_row_per_transport_per_scenario_and_their_sentences() {
    let results = three_transports();
    let page = crate::report::html(&results, &[]);
    let c = compare(&results).expect("a comparison");
    assert!(page.contains("<section id=\"comparison\">"));
    assert_eq!(page.matches("<table class=\"cmp\"").count(), 3);
    assert_eq!(page.matches("<tr class=\"cmp-row").count(), 3 * 3);
    for b in &c.scenarios {
        for row in &b.rows {
            let sentence = crate::svg::escape(&row.sentence);
            assert!(page.contains(&sentence), "missing: {sentence}");
        }
    }
    // The comparison sits between the summary table and the per-scenario sections.
    let at = |needle: &str| page.find(needle).expect(needle);
    assert!(
        at("<th class=\"l\">transport</th><th class=\"l\">scenario</th>") < at("id=\"comparison\"")
    );
    assert!(at("id=\"comparison\"") < at("<section id=\"tcp-ideal\">"));
}

#[test]
fn write_all_writes_the_comparison_as_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = OutDir::open(dir.path(), Invoker::current_user()).expect("out dir");
    let results = three_transports();
    crate::report::write_all(&out, &results, &[]).expect("report");
    let json = std::fs::read(dir.path().join("comparison.json")).expect("comparison.json");
    let back: Comparison = serde_json::from_slice(&json).expect("parses");
    let want = compare(&results).expect("a comparison");
    // Floats may come back a last bit off; the words and shape must not.
    let shape = |c: &Comparison| {
        c.scenarios
            .iter()
            .map(|b| {
                let rows: Vec<_> = b
                    .rows
                    .iter()
                    .map(|r| (r.transport.clone(), r.sentence.clone(), r.metrics.is_some()))
                    .collect();
                (b.scenario.clone(), b.baseline, rows)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(back.transports, want.transports);
    assert_eq!(shape(&back), shape(&want));
    let m = back.scenarios[0].rows[1]
        .metrics
        .as_ref()
        .expect("link in ideal");
    assert_eq!(
        (m.transport.as_str(), m.payload_bytes, m.packets),
        ("link", 6400, 68)
    );

    let one = tempfile::tempdir().expect("temp dir");
    let out = OutDir::open(one.path(), Invoker::current_user()).expect("out dir");
    crate::report::write_all(&out, &results[..1], &[]).expect("report");
    assert!(one.path().join("report.html").exists());
    assert!(!one.path().join("comparison.json").exists());
}

#[test]
fn where_the_wire_bytes_went_names_the_notable_classes() {
    // 800 payload bytes; 2,000 wire bytes: 1,200 data, 500 TCP-only,
    // 200 keepalives, 60 handshake (3%, left out), 40 FIN.
    let packets = vec![
        packet(0.0, true, 500, Control),
        packet(0.01, true, 60, Handshake),
        packet(0.02, true, 600, Data),
        packet(0.03, false, 600, Data),
        packet(0.04, true, 200, Keepalive),
        packet(0.05, true, 40, Close),
    ];
    let r = result("ideal", "link", logs(4, 4), packets);
    let m = metrics(&r);
    let s = crate::comparison_words::sentence(
        "link",
        Some(&m),
        &Ratios::default(),
        crate::comparison_words::Against {
            baseline: Baseline::Best,
            refs: &References::default(),
            plain: PLAIN,
        },
    );
    assert!(
        s.starts_with(
            "link: 2.5 wire bytes per payload byte: data packets make 1.50 per payload byte \
             (headers, framing, resent copies), TCP-only segments 25% of the wire, keepalives 10%;"
        ),
        "{s}"
    );
    assert!(!s.contains("handshake") && !s.contains("FIN"), "{s}");
}

#[test]
fn small_ratios_keep_their_digits() {
    use crate::comparison_words::times;
    assert_eq!(times(1.4), "1.4x");
    assert_eq!(times(0.1), "0.1x");
    assert_eq!(times(0.034), "0.03x");
}

/// A datagram run of `transport`: `echoed` of 256 datagrams back, spread
/// over the run, each `rtt` after it was sent, with repeats.
fn datagram_result(
    scenario: &str,
    transport: &str,
    echoed: u32,
    rtt: f64,
    duplicates: u32,
) -> ScenarioResult {
    let def = crate::dgram_run::datagram_scenario(&def(scenario));
    let netem = crate::netem::parse(&def.netem).expect("netem");
    let stale = def.stale_after.is_some();
    let (mut client, server) = logs(256, echoed);
    for m in &mut client.messages {
        let back = u64::from(m.seq) * u64::from(echoed) % 256 < u64::from(echoed);
        m.echoed = back.then_some(m.sent + rtt);
    }
    client.completed = true;
    if stale {
        client.silenced_at = Some(3.0);
    }
    let dup = crate::dgram_exchange::Arrivals {
        duplicates,
        reordered: 2,
    };
    let stats = crate::results_dgram::DatagramStats::new(&netem, 256, 10.0, dup, dup, false);
    ScenarioResult::new(
        def,
        transport,
        Mode::Lab,
        1,
        Timers::default(),
        None,
        client,
        server,
        3.0,
        None,
        capture(echoed.max(1), 1.2),
        None,
    )
    .with_datagram(stats)
}

#[test]
fn datagram_rows_sit_beside_streams_against_plain_udp() {
    let results = vec![
        result("loss", "tcp", logs(32, 32), capture(32, 1.5)),
        result("loss", "link", logs(32, 32), capture(32, 2.1)),
        datagram_result("loss", "udp", 128, 0.005, 0),
        datagram_result("loss", "typhoon", 120, 0.010, 3),
        datagram_result("stale", "udp", 32, 0.005, 0),
    ];
    let c = compare(&results).expect("a comparison");
    let loss = &c.scenarios[0];
    // The streams are set against TCP as before, the datagrams against UDP.
    assert_eq!(loss.baseline, Baseline::Plain);
    assert_eq!(loss.datagram_baseline, Some(Baseline::Plain));
    let refs = loss
        .datagram_references
        .as_ref()
        .expect("datagram references");
    assert_eq!(
        refs.rtt_p50_ms.as_ref().map(|r| r.transport.as_str()),
        Some("udp")
    );
    assert_eq!(
        loss.references
            .rtt_p50_ms
            .as_ref()
            .map(|r| r.transport.as_str()),
        Some("tcp")
    );
    let [tcp, link, udp, typhoon] = &loss.rows[..] else {
        panic!("rows")
    };
    assert!(tcp.metrics.as_ref().is_some_and(|m| m.datagram.is_none()));
    assert!(link.sentence.contains("1.4x plain:"), "{}", link.sentence);
    let ratio = typhoon.ratios.rtt_p50.expect("ratio");
    assert!((ratio - 2.0).abs() < 1e-6, "{ratio}");
    let d = typhoon
        .metrics
        .as_ref()
        .and_then(|m| m.datagram.as_ref())
        .expect("datagram metrics");
    assert_eq!(
        (d.sent, d.delivered, d.duplicates, d.reordered),
        (256, 120, 6, 4)
    );
    assert!((d.delivered_fraction - 120.0 / 256.0).abs() < 1e-9);
    assert!(
        udp.sentence.starts_with("udp: the baseline"),
        "{}",
        udp.sentence
    );
    assert!(
        typhoon.sentence.contains(
            "delivered 46.9% of 256 datagrams (at least 36.5% expected), 6 repeats passed on \
             (it does not promise at most once), 4 reordered"
        ),
        "{}",
        typhoon.sentence
    );
    assert!(typhoon
        .sentence
        .contains("median round trip 10.0 ms, 2.0x plain UDP"));
    assert!(
        typhoon.sentence.contains("nothing altered"),
        "{}",
        typhoon.sentence
    );

    // Plain UDP cannot notice a silent peer: it is said, not failed.
    let stale = &c.scenarios[1];
    let udp = &stale.rows[2];
    assert_eq!(
        udp.metrics.as_ref().and_then(|m| m.gone.clone()),
        Some(Gone::NoMechanism)
    );
    assert!(
        udp.sentence.contains("has no way to notice a silent peer"),
        "{}",
        udp.sentence
    );

    // The table: the datagram rows marked, their numbers in the last cell.
    let html = crate::comparison_html::section(&c);
    assert!(html.contains("<tr class=\"cmp-row pass dgram\" data-transport=\"typhoon\">"));
    assert!(html.contains("yes; 46.9% <small>min 36.5%</small>, 6 repeats, 4 reordered"));
    assert!(html.contains("none <small>no way to notice</small>"));
    assert!(html.contains("against plain TCP; datagrams: plain UDP"));
    // A stream-only table keeps its header.
    let streams = compare(&three_transports()).expect("a comparison");
    let html = crate::comparison_html::section(&streams);
    assert!(!html.contains("datagrams"), "{html}");
}
