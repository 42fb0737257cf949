//! The report as a person sees it: scenarios run, the HTML report written,
//! rendered by headless chromium to a PNG, and the picture checked for
//! content (many colours, the packet plot's bars in their colours) against
//! a blank page rendered the same way. A report of several transports is
//! also laid out by chromium with a measuring script: its comparison
//! tables are there and fit the window.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherlink_chaos::dgram_run::run_datagram_scenario;
use cipherlink_chaos::lab::Lab;
use cipherlink_chaos::output::{Invoker, OutDir};
use cipherlink_chaos::report::write_all;
use cipherlink_chaos::results::{Mode, ScenarioResult};
use cipherlink_chaos::scenario_run::{run_scenario, RunOptions, CAPTURE_LIMIT};
use cipherlink_chaos::scenarios::{select, Timers};
use cipherlink_chaos::subject::{
    link_keepalive, DatagramSubject, LabSubject, Link, NaclFrame, PlainTcp, PlainUdp,
};
use cipherlink_test_support::{peer, Peer};

/// Renders `page` to a PNG with headless chromium, bounded in time.
fn render(chromium: &Path, page: &Path, png: &Path, profile: &Path) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success() && png.exists(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pixel counts by colour of an 8-bit RGB or RGBA, non-interlaced PNG.
fn colours(png: &[u8]) -> HashMap<[u8; 3], usize> {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut bpp) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().expect("4")) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().expect("4")) as usize;
                assert_eq!(data[8], 8, "bit depth");
                assert_eq!(data[12], 0, "interlaced");
                bpp = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("inflate");
    let stride = width * bpp;
    assert_eq!(raw.len(), height * (stride + 1), "image data size");
    let mut prev = vec![0u8; stride];
    let mut counts = HashMap::new();
    for row in raw.chunks(stride + 1) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= bpp { cur[i - bpp] } else { 0 };
            let b = prev[i];
            let c = if i >= bpp { prev[i - bpp] } else { 0 };
            let x = line[i];
            cur[i] = match filter {
                0 => x,
                1 => x.wrapping_add(a),
                2 => x.wrapping_add(b),
                3 => x.wrapping_add(((u16::from(a) + u16::from(b)) / 2) as u8),
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    let pred = if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    };
                    x.wrapping_add(pred)
                }
                f => panic!("PNG filter {f}"),
            };
        }
        for px in cur.chunks(bpp) {
            *counts.entry([px[0], px[1], px[2]]).or_insert(0) += 1;
        }
        prev = cur;
    }
    counts
}

/// Loads `page` in headless chromium and returns the DOM after its
/// scripts ran, bounded in time.
fn dump_dom(chromium: &Path, page: &Path, profile: &Path) -> String {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1800",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = stdout.read_to_string(&mut dom);
        dom
    });
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().expect("reader")
}

/// The lab when this machine allows it, else the proxy: either way real
/// packets, classified, in the plots and the comparison.
fn options(dir: &Path, prefix: &str, port: u16) -> RunOptions {
    let mode = if Lab::available().is_ok() {
        Mode::Lab
    } else {
        Mode::Proxy
    };
    RunOptions {
        seed: 1,
        timers: Timers {
            scenario: Duration::from_secs(60),
            ..Timers::default()
        },
        out: Arc::new(OutDir::open(dir, Invoker::current_user()).expect("out dir")),
        mode,
        prefix: prefix.into(),
        port,
        capture_limit: CAPTURE_LIMIT,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_renders_with_plots_in_chromium() {
    let Some(chromium) = peer!(Peer::Chromium) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = options(dir.path(), "rr", 7200);
    let mut results = Vec::new();
    for def in select("ideal")
        .into_iter()
        .chain(select("jitter"))
        .flatten()
    {
        results.push(run_scenario(PlainTcp, &def, &opts).await.expect("scenario"));
    }
    assert!(
        results.iter().all(|r| r.verdict.pass),
        "{:?}",
        results.iter().map(|r| &r.verdict).collect::<Vec<_>>()
    );
    let page = write_all(&opts.out, &results, &[]).expect("report");

    let png = dir.path().join("report.png");
    render(&chromium, &page, &png, &dir.path().join("profile"));
    let counts = colours(&std::fs::read(&png).expect("png"));
    // A blank page, rendered the same way: the check below must tell them apart.
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").expect("blank page");
    let blank_png = dir.path().join("blank.png");
    render(&chromium, &blank, &blank_png, &dir.path().join("profile"));
    let blank_counts = colours(&std::fs::read(&blank_png).expect("png"));
    println!(
        "report: {} colours; blank page: {} colours",
        counts.len(),
        blank_counts.len()
    );
    assert!(blank_counts.len() < 5, "the blank page is not blank");
    assert!(counts.len() >= 50, "only {} colours", counts.len());
    // The plots' bars: data (green) and TCP-only (grey) packets, drawn in
    // their legend colours, and the table's pass rows.
    let pixels = |rgb: [u8; 3]| counts.get(&rgb).copied().unwrap_or(0);
    assert!(
        pixels([0x2c, 0xa0, 0x2c]) > 200,
        "data bars: {}",
        pixels([0x2c, 0xa0, 0x2c])
    );
    assert!(pixels([0x7f, 0x7f, 0x7f]) > 20, "TCP-only bars");
    assert!(pixels([0xc8, 0xf0, 0xc8]) > 1000, "pass rows");
}

/// Measures the laid-out page: the window's width, the document's, the
/// comparison's tables and rows, and the first elements whose right edge
/// passes the window's.
const MEASURE: &str = "<script>(function(){var w=window.innerWidth,over=[];\
document.querySelectorAll('body *').forEach(function(e){\
var r=e.getBoundingClientRect();if(r.right>w+0.5&&over.length<8){\
over.push(e.tagName+'.'+e.className+'#'+e.id+'@'+Math.round(r.right));}});\
var p=document.createElement('pre');p.id='layout';p.textContent='width='+w+' scroll='+\
document.documentElement.scrollWidth+' tables='+document.querySelectorAll('table.cmp').length+\
' rows='+document.querySelectorAll('tr.cmp-row').length+' over='+over.join(',');\
document.body.appendChild(p);})();</script>";

async fn run<S: LabSubject + Clone>(
    subject: S,
    scenario: &str,
    opts: &RunOptions,
) -> ScenarioResult {
    let def = select(scenario)
        .and_then(|v| v.into_iter().next())
        .expect("scenario");
    run_scenario(subject, &def, opts).await.expect("scenario")
}

async fn run_datagram<S: DatagramSubject + Clone>(
    subject: S,
    scenario: &str,
    opts: &RunOptions,
) -> ScenarioResult {
    let def = select(scenario)
        .and_then(|v| v.into_iter().next())
        .expect("scenario");
    run_datagram_scenario(subject, &def, opts)
        .await
        .expect("scenario")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_several_transports_shows_their_comparison() {
    let Some(chromium) = peer!(Peer::Chromium) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = options(dir.path(), "rc", 7300);
    let link = |stale: bool| Link::new(link_keepalive(stale)).expect("link subject");
    let mut results = vec![
        run(PlainTcp, "ideal", &opts).await,
        run(NaclFrame::new(), "ideal", &opts).await,
        run(link(false), "ideal", &opts).await,
        // Not run by the proxy (no root): then their rows say so.
        run(PlainTcp, "stale", &opts).await,
        run(link(true), "stale", &opts).await,
        // A datagram transport beside the streams (the lab only: without
        // root its rows say it was not run).
        run_datagram(PlainUdp, "ideal", &opts).await,
        run_datagram(PlainUdp, "stale", &opts).await,
    ];
    assert!(
        results[..3].iter().all(|r| r.verdict.pass),
        "{:?}",
        results.iter().map(|r| &r.verdict).collect::<Vec<_>>()
    );
    let lab = opts.mode == Mode::Lab;
    assert_eq!(results[5].verdict.pass, lab, "{:?}", results[5].verdict);
    // A program whose set-up the lab cannot see: link's packets, no
    // set-up time of its own (estimated from the capture instead).
    let mut foreign = results[2].clone();
    foreign.transport = "foreign".into();
    foreign.client.connected = None;
    results.push(foreign);
    let page = write_all(&opts.out, &results, &[]).expect("report");

    let html = std::fs::read_to_string(&page).expect("report.html");
    assert_eq!(html.matches("<table class=\"cmp\"").count(), 2);
    assert_eq!(html.matches("<tr class=\"cmp-row").count(), 2 * 5);
    assert!(html.contains("<small>capture</small>"), "foreign's set-up");
    // The datagram row: its own numbers, set against plain UDP.
    if lab {
        assert!(
            html.contains("<tr class=\"cmp-row pass dgram\" data-transport=\"udp\">"),
            "the datagram row"
        );
        assert!(html.contains("; 100.0% <small>min"), "delivered fraction");
        assert!(html.contains("datagrams: plain UDP"), "its baseline");
        assert!(
            html.contains("none <small>no way to notice</small>"),
            "UDP's silence"
        );
    }
    let json =
        std::fs::read_to_string(dir.path().join("comparison.json")).expect("comparison.json");
    let comparison: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        comparison["transports"],
        serde_json::json!(["tcp", "v1", "link", "udp", "foreign"])
    );
    if lab {
        let udp = &comparison["scenarios"][0]["rows"][3]["metrics"]["datagram"];
        assert_eq!(udp["sent"], 256, "{udp}");
        assert_eq!(udp["delivered_fraction"], 1.0, "{udp}");
        assert_eq!(udp["duplicates"], 0, "{udp}");
    }

    // Laid out at the window's width, nothing of the comparison passes it.
    let measured = dir.path().join("measured.html");
    let body_end = html.rfind("</body>").expect("</body>");
    let probe = format!("{}{MEASURE}{}", &html[..body_end], &html[body_end..]);
    std::fs::write(&measured, probe).expect("measured page");
    let dom = dump_dom(&chromium, &measured, &dir.path().join("profile"));
    let layout = dom
        .split("<pre id=\"layout\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .expect("the measuring script ran");
    println!("layout: {layout}");
    let field = |name: &str| {
        layout
            .split(' ')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{name} in {layout}"))
    };
    assert_eq!((field("tables"), field("rows")), ("2", "10"), "{layout}");
    assert_eq!(
        field("over"),
        "",
        "elements pass the window's edge: {layout}"
    );
    let width: u32 = field("width").parse().expect("width");
    let scroll: u32 = field("scroll").parse().expect("scroll");
    assert!(
        scroll <= width,
        "the page is wider than the window: {layout}"
    );

    // Rendered: the comparison's header rows show, next to the rest.
    let png = dir.path().join("report.png");
    render(&chromium, &page, &png, &dir.path().join("profile"));
    let counts = colours(&std::fs::read(&png).expect("png"));
    let pixels = |rgb: [u8; 3]| counts.get(&rgb).copied().unwrap_or(0);
    println!(
        "report: {} colours, comparison headers {} px, pass rows {} px",
        counts.len(),
        pixels([0xdd, 0xe6, 0xf3]),
        pixels([0xc8, 0xf0, 0xc8])
    );
    assert!(counts.len() >= 50, "only {} colours", counts.len());
    assert!(pixels([0xdd, 0xe6, 0xf3]) > 2000, "comparison headers");
    assert!(pixels([0xc8, 0xf0, 0xc8]) > 1000, "pass rows");
}
