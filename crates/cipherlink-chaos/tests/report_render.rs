//! The report as a person sees it: scenarios run, the HTML report written,
//! rendered by headless chromium to a PNG, and the picture checked for
//! content (many colours, the packet plot's bars in their colours) against
//! a blank page rendered the same way.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cipherlink_chaos::lab::Lab;
use cipherlink_chaos::output::{Invoker, OutDir};
use cipherlink_chaos::report::write_all;
use cipherlink_chaos::results::Mode;
use cipherlink_chaos::scenario_run::{run_scenario, RunOptions, CAPTURE_LIMIT};
use cipherlink_chaos::scenarios::{select, Timers};
use cipherlink_chaos::subject::PlainTcp;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_renders_with_plots_in_chromium() {
    let Some(chromium) = peer!(Peer::Chromium) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // The lab when this machine allows it, else the proxy: either way
    // real packets, classified, in both plots.
    let mode = if Lab::available().is_ok() {
        Mode::Lab
    } else {
        Mode::Proxy
    };
    let opts = RunOptions {
        seed: 1,
        timers: Timers {
            scenario: Duration::from_secs(60),
            ..Timers::default()
        },
        out: Arc::new(OutDir::open(dir.path(), Invoker::current_user()).expect("out dir")),
        mode,
        prefix: "rr".into(),
        port: 7200,
        capture_limit: CAPTURE_LIMIT,
    };
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
