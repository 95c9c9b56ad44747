//! The NOC dashboard: handler tests, and an end-to-end test in headless Chromium (Debian's
//! `chromium`, installed by .ci/run) against a collector fed by oqs-fleet-sim — the overview lists
//! the P11019 site before healthy ones; its site page shows the code, diagnosis step 5 and the
//! support desk's number. Screenshots are saved under target/tmp/dashboard-screenshots/.

mod common;

use common::*;
use oqs_collector::sim::{self, scenario::Scenario, SimOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_assets_are_served_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    for (path, needle) in [
        ("/", "data-page=\"overview\""),
        ("/sites/anything", "data-page=\"site\""),
        ("/assets/app.js", "function sitePage"),
        ("/assets/app.css", "--red"),
    ] {
        let (status, body) = get(c.http_addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(needle), "{path}");
    }
    let (status, _) = get(c.http_addr, "/assets/nope.js").await;
    assert_eq!(status, 404);
    c.stop().await.unwrap();
}

fn screenshots() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Headless Chromium: the DOM after the page's script ran, and a screenshot.
fn chromium(url: &str, shot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1300",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dom = Command::new("chromium");
    common(&mut dom);
    let out = dom.arg("--dump-dom").arg(url).output().unwrap_or_else(|e| {
        panic!("chromium must be installed (apt-get install chromium, as .ci/run does): {e}")
    });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut shot_cmd = Command::new("chromium");
    common(&mut shot_cmd);
    let s = shot_cmd
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(s.status.success(), "chromium screenshot failed");
    assert!(
        std::fs::metadata(shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "screenshot {} missing or empty",
        shot.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_p11019_site_comes_first_and_its_page_shows_step_5_and_the_desk() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let opts = SimOptions {
        collector: format!("http://{}", c.grpc_addr),
        sites: 50,
        reports: 3,
        interval: Duration::from_millis(10),
        scenario: Scenario::Mixed,
        site_prefix: "mx-".into(),
        terminals_per_site: 1,
        ..SimOptions::default()
    };
    assert!(sim::run(opts, CancellationToken::new())
        .await
        .unwrap()
        .all_acked());
    let base = format!("http://{}", c.http_addr);
    let shots = screenshots();

    let b = base.clone();
    let s = shots.join("overview.png");
    let dom = tokio::task::spawn_blocking(move || chromium(&format!("{b}/"), &s))
        .await
        .unwrap();
    let order: Vec<&str> = dom
        .split("data-site=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(order.len(), 50, "every site is listed: {order:?}");
    let p11019 = order.iter().position(|s| *s == "mx-00005").unwrap();
    let healthy = order.iter().position(|s| *s == "mx-00000").unwrap();
    assert!(p11019 < healthy, "{order:?}");
    assert_eq!(order[0], "mx-00005", "the most severe first: {order:?}");
    // Counts by state: 50 sites, the mixed blend's problems flagged.
    assert!(dom.contains("id=\"n-total\">50<"), "total count");
    assert!(dom.contains("id=\"n-flagged\">"), "flagged count");

    let b = base.clone();
    let s = shots.join("site-p11019.png");
    let dom = tokio::task::spawn_blocking(move || chromium(&format!("{b}/sites/mx-00005"), &s))
        .await
        .unwrap();
    assert!(dom.contains("id=\"diag-step\">5<"), "diagnosis step 5");
    assert!(dom.contains("P11019"), "the code is shown");
    assert!(
        dom.contains("id=\"desk-number\">0120-220-571<"),
        "the support desk"
    );
    assert!(dom.contains("id=\"events\""), "the event log");

    // The English switch.
    let b = base.clone();
    let s = shots.join("site-p11019-en.png");
    let dom =
        tokio::task::spawn_blocking(move || chromium(&format!("{b}/sites/mx-00005?lang=en"), &s))
            .await
            .unwrap();
    assert!(dom.contains("Network support desk"), "English UI");
    assert!(dom.contains("eligible line"), "the English remedy");
    c.stop().await.unwrap();
}
