//! The HTML report opened in headless Chromium (Debian `chromium`, installed by
//! `ci/bootstrap-browser`): the page must render — tables, bars and curves — not come out
//! blank. The screenshot is decoded and its pixels inspected.

use std::path::PathBuf;
use std::process::Command;

use infoat_registry::{EvalRecord, PaperTable, RunRecord};
use infoat_reports::{build, paper, render, Format, Selection};
use serde_json::Value;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("INFOAT_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh").args(["-c", &format!("command -v {name}")]).output() {
            if out.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    panic!("no chromium on PATH: run ci/bootstrap-browser (installs Debian's chromium) or set INFOAT_CHROMIUM");
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("fixtures/reports/records.jsonl")).unwrap();
    let (mut runs, mut evals): (Vec<RunRecord>, Vec<EvalRecord>) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        match v["kind"].as_str().unwrap() {
            "run" => runs.push(serde_json::from_value(v["record"].clone()).unwrap()),
            _ => evals.push(serde_json::from_value(v["record"].clone()).unwrap()),
        }
    }
    let published: Vec<_> = paper::embedded().unwrap().iter().map(|p| p.to_record()).collect();
    let selection = Selection { tables: vec![PaperTable::II], configs: None, evals: None, include_not_run: true };
    let report = build("Browser check", &runs, &evals, &published, &selection).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, render(&report, Format::Html).unwrap()).unwrap();
    let shot = dir.path().join("shot.png");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,1600",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", page.display()),
        ])
        .env("HOME", dir.path())
        .output()
        .expect("start chromium");
    assert!(shot.exists(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    if let Some(keep) = std::env::var_os("INFOAT_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 1600));
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let non_white = pixels.iter().filter(|p| p[..3].iter().any(|&c| c < 230)).count();
    // Text, rules, tinted verdict cells and bars: a blank or error page has almost none.
    assert!(non_white > pixels.len() / 50, "screenshot looks blank: {non_white} of {} pixels not white", pixels.len());
    // The bar chart's first colour (#0072B2) and the reproduced-cell tint (#e8f5e9) are on screen.
    let near = |p: &[u8], c: [u8; 3]| p.iter().zip(c).all(|(&a, b)| (a as i32 - b as i32).abs() <= 6);
    assert!(pixels.iter().filter(|p| near(p, [0x00, 0x72, 0xB2])).count() > 100, "no bars rendered");
    assert!(pixels.iter().filter(|p| near(p, [0xe8, 0xf5, 0xe9])).count() > 100, "no reproduced cells rendered");
}
