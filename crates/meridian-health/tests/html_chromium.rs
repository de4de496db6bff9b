//! The HTML report opens in headless Chromium without console errors. Runs only
//! where `/usr/bin/chromium` exists; elsewhere it says that it skipped.

use meridian_health::run::{self, RunOptions};
use meridian_health::synth::write_demo_inputs;
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Loads `page` in headless Chromium, saves a screenshot, returns the console lines.
fn console_of(page: &Path, screenshot: &Path, profile: &Path) -> Vec<String> {
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_report_opens_in_headless_chromium_without_console_errors() {
    if !Path::new(CHROMIUM).exists() {
        println!("skipped: {CHROMIUM} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paths = write_demo_inputs(dir.path(), 3.5, 0.05).unwrap();
    let out = dir.path().join("out");
    run::run(&RunOptions {
        db: paths.db,
        inputs: vec![paths.ordered, paths.located],
        out: out.clone(),
        config: Default::default(),
        state: None,
    })
    .unwrap();
    let html = std::fs::read_to_string(out.join(run::REPORT_HTML)).unwrap();
    // Self-contained: no scripts, no external resources.
    assert!(!html.contains("<script"));
    for external in ["src=\"http", "href=\"http", "url(http", "<link", "@import"] {
        assert!(!html.contains(external), "{external} in the report");
    }
    assert!(html.matches("<svg").count() >= 10);

    // The console capture works: a page with a deliberate error shows it.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<html><body><script>console.error('deliberate')</script></body></html>",
    )
    .unwrap();
    let lines = console_of(
        &bad,
        &dir.path().join("bad.png"),
        &dir.path().join("profile-bad"),
    );
    assert!(
        lines.iter().any(|l| l.contains("deliberate")),
        "console capture does not work: {lines:?}"
    );

    let shot = dir.path().join("report.png");
    let lines = console_of(
        &out.join(run::REPORT_HTML),
        &shot,
        &dir.path().join("profile"),
    );
    assert!(lines.is_empty(), "console output: {lines:?}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot too small"
    );
}
