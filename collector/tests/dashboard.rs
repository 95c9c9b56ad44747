//! The NOC dashboard: its names come from the catalogue, and an end-to-end test in headless Chromium (Debian's
//! `chromium`, installed by .ci/run) against a collector fed by oqs-fleet-sim — the overview lists
//! the P11019 site before healthy ones; its site page shows the code, diagnosis step 5 and the
//! support desk's number (its handlers alone: api_router.rs). Screenshots are saved under target/tmp/dashboard-screenshots/.

mod common;

use common::*;
use oqs_fleet_sim::{self as sim, scenario::Scenario, SimOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The dashboard keeps no list of flags, checks or prefectures of its own: it draws what
/// `/api/catalog` serves, and that is every flag and check with both labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_takes_every_name_from_the_catalogue() {
    let js = include_str!("../../dashboard/src/assets/app.js");
    for f in oqs_collector::catalog::FLAGS.iter() {
        assert!(
            !js.contains(&format!("'{}'", f.name)) && !js.contains(&format!("{}:", f.name)),
            "app.js names the flag {} itself",
            f.name
        );
    }
    for c in oqs_collector::catalog::CHECKS
        .iter()
        .filter(|c| c.name.len() > 3)
    {
        assert!(
            !js.contains(&format!("'{}'", c.name)),
            "app.js names the check {} itself",
            c.name
        );
    }
    assert!(
        !js.contains("東京都"),
        "app.js keeps its own prefecture list"
    );

    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (status, body) = get(c.http_addr, "/api/catalog").await;
    c.stop().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["label_ja"].as_str().is_some_and(|l| !l.is_empty()), "{f}");
            assert!(f["label_en"].as_str().is_some_and(|l| !l.is_empty()), "{f}");
            assert!(["critical", "warning"].contains(&f["severity"].as_str().unwrap()));
            f["name"].as_str().unwrap()
        })
        .collect();
    let all: Vec<&str> = oqs_collector::flags::Flag::ALL
        .iter()
        .map(|f| f.as_str())
        .collect();
    assert_eq!(
        names, all,
        "the catalogue serves every flag, most severe first"
    );
    let checks: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["ipv6", "dns", "lineauth", "oqs_web", "crl", "ntp", "certs"]
    );
    assert_eq!(v["prefectures"].as_array().unwrap().len(), 47);
}

fn screenshots() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Headless Chromium: the DOM after the page's script ran, and a screenshot.
/// Headless Chromium with its own profile, the page's script given time to run.
fn headless(profile: &Path) -> Command {
    let mut cmd = Command::new("chromium");
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
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

fn chromium(url: &str, shot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = headless(profile.path())
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!("chromium must be installed (apt-get install chromium, as .ci/run does): {e}")
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = headless(profile.path())
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
    let mut cfg = config(dir.path());
    // The simulated agents stop after their reports (10 ms apart): this test's sites are ones
    // that report, not silent ones (those have their own test below).
    cfg.flags.silent_intervals = 1_000_000;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    sim_fleet(&c, Scenario::Mixed, 50, 3, "mx-").await;
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

    // The fleet inventory: versions with their counts, the lagging ones (the simulator's every
    // tenth site runs an older agent), and the filter from the URL.
    let b = base.clone();
    let s = shots.join("fleet.png");
    let dom = tokio::task::spawn_blocking(move || chromium(&format!("{b}/fleet"), &s))
        .await
        .unwrap();
    let old = oqs_fleet_sim::OLD_AGENT_VERSION;
    assert_eq!(
        dom.matches("data-terminal=\"").count(),
        50,
        "every terminal listed"
    );
    assert!(dom.contains("id=\"n-outdated\">5<"), "five lag");
    assert!(
        dom.contains(&format!("id=\"v-{old}\">5<")),
        "the old version's count"
    );
    assert!(
        dom.contains(&format!("id=\"v-{}\">45<", oqs_fleet_sim::agent_version(0))),
        "the newest version's count"
    );
    assert!(dom.contains("Windows 11 Pro"), "the OS with its build");
    let b = base.clone();
    let s = shots.join("fleet-outdated.png");
    let dom =
        tokio::task::spawn_blocking(move || chromium(&format!("{b}/fleet?outdated=true"), &s))
            .await
            .unwrap();
    assert_eq!(
        dom.matches("data-outdated=\"true\"").count(),
        5,
        "only the lagging"
    );
    assert_eq!(dom.matches("data-outdated=\"false\"").count(), 0);

    let b = base.clone();
    let s = shots.join("site-p11019.png");
    let dom = tokio::task::spawn_blocking(move || chromium(&format!("{b}/sites/mx-00005"), &s))
        .await
        .unwrap();
    assert!(dom.contains("id=\"diag-step\">5<"), "diagnosis step 5");
    assert!(
        dom.contains("<dd>P11019 ("),
        "the code is in the contact bundle (last portal code)"
    );
    assert!(
        dom.contains("id=\"desk-number\">0120-220-571<"),
        "the support desk"
    );
    // An ineligible line is the line's own problem: the FLET'S desk comes first, with its state.
    let flets = dom
        .find("id=\"desk-flets-number\">0120-116-116<")
        .expect("the FLET'S desk for the line");
    assert!(
        flets < dom.find("id=\"desk-number\"").unwrap(),
        "the FLET'S desk first"
    );
    assert!(
        dom.contains("id=\"desk-flets-open\""),
        "whether it is open now"
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

/// An area-wide incident on the overview: a banner naming the area, the prefecture and how many
/// sites, its sites badged in the list; its button filters the list to them (ChromeDriver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_area_outage_is_one_banner_over_the_overview() {
    use oqs_fleet_sim::scenario::OUTAGE_PREFECTURE;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flags.evaluate_every_ms = 100;
    // Forty sites put three in 新潟県: let three make an incident.
    cfg.incidents.min_sites = 3;
    // The simulated agents stop after their reports (10 ms apart): their silence is not this
    // test's incident.
    cfg.flags.silent_intervals = 1_000_000;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    sim_fleet(&c, Scenario::AreaOutage, 40, 4, "ar-").await;
    let mut open = serde_json::Value::Null;
    for _ in 0..100 {
        open = get_json(c.http_addr, "/api/incidents?state=open").await;
        if open["open"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open["open"], 1, "{open}");
    let sites: Vec<String> = serde_json::from_value(open["incidents"][0]["sites"].clone()).unwrap();
    assert_eq!(sites.len(), 3);
    let base = format!("http://{}", c.http_addr);
    let b = base.clone();
    let s = screenshots().join("overview-incident.png");
    let dom = tokio::task::spawn_blocking(move || chromium(&format!("{b}/"), &s))
        .await
        .unwrap();
    let banner = dom
        .split("data-incident=\"")
        .nth(1)
        .expect("the incident banner");
    assert!(
        banner.contains(&format!("NTT東日本 {OUTAGE_PREFECTURE}: 3拠点でIPv6未取得")),
        "{}",
        &banner[..banner.len().min(400)]
    );
    assert_eq!(dom.matches("data-incident=\"").count(), 1, "one banner");
    assert_eq!(
        dom.matches("class=\"badge incident\"").count(),
        3,
        "its sites are badged"
    );
    let b = base.clone();
    let s = screenshots().join("overview-incident-en.png");
    let dom = tokio::task::spawn_blocking(move || chromium(&format!("{b}/?lang=en"), &s))
        .await
        .unwrap();
    assert!(
        dom.contains(&format!(
            "NTT East, {OUTAGE_PREFECTURE}: 3 sites — IPv6 lost since"
        )),
        "the English banner"
    );
    // Its button lists just its sites.
    let b = webdriver::Browser::start().await;
    b.goto(&format!("{base}/")).await;
    b.wait_for(
        "the banner",
        "return document.querySelector('#incidents button') ? 'yes' : ''",
        20,
    )
    .await;
    b.click("#incidents button").await;
    let listed = b
        .wait_for(
            "the incident's sites only",
            "const r = [...document.querySelectorAll('#rows tr[data-site]')].map(t => t.dataset.site); \
             return r.length === 3 ? r.sort().join(',') : ''",
            20,
        )
        .await;
    assert_eq!(listed.as_str().unwrap(), sites.join(","));
    // A site of the incident: its page says the area's outage first, what to tell the clinic,
    // and not to call the FLET'S desk about the terminal's IPv6 settings.
    b.goto(&format!("{base}/sites/{}", sites[0])).await;
    let diag = b
        .wait_for(
            "the incident's diagnosis",
            "const d = document.querySelector('#diagnosis[data-basis=area_incident]'); \
             return d && document.getElementById('incident-banner') ? d.textContent : ''",
            20,
        )
        .await;
    let diag = diag.as_str().unwrap();
    assert!(
        diag.contains("エリア障害の可能性") && diag.contains("NTT東日本/西日本"),
        "{diag}"
    );
    assert!(
        diag.contains("クリニックへの伝え方") && diag.contains("お待ちください"),
        "{diag}"
    );
    assert!(
        !diag.contains("0120-116-116"),
        "not the FLET'S desk first: {diag}"
    );
    let desks = b
        .eval("return [...document.querySelectorAll('#contact .desk-entry')].map(d => d.dataset.desk).join(',')")
        .await;
    assert_eq!(
        desks, "network",
        "whom to call is not the line's desk: {desks}"
    );
    let banner = b
        .eval("return document.getElementById('incident-banner').textContent")
        .await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains(&format!("NTT東日本 {OUTAGE_PREFECTURE}")),
        "{banner}"
    );
    b.screenshot(&screenshots().join("site-in-incident.png"))
        .await;
    b.quit().await;
    c.stop().await.unwrap();
}

/// A silent site is never "no problem found": its page says the agent is silent, since when and
/// what to check, and shows its last checks grey with their age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_silent_site_says_so_and_shows_its_last_checks_with_their_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flags.evaluate_every_ms = 100;
    // One report, so no interval learnt: silent after three of a 1 s default.
    cfg.flags.default_interval_secs = 1;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    sim_fleet(&c, Scenario::Healthy, 1, 1, "sl-").await;
    let mut site = serde_json::Value::Null;
    for _ in 0..100 {
        site = get_json(c.http_addr, "/api/sites/sl-00000").await;
        if site["diagnosis"]["basis"] == "silent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(site["diagnosis"]["basis"], "silent", "{site}");
    assert_eq!(site["terminals"][0]["silent"], true);
    let b = webdriver::Browser::start().await;
    b.goto(&format!("http://{}/sites/sl-00000", c.http_addr))
        .await;
    let diag = b
        .wait_for(
            "the silent diagnosis",
            "const d = document.querySelector('#diagnosis[data-basis=silent]'); return d ? d.textContent : ''",
            20,
        )
        .await;
    let diag = diag.as_str().unwrap();
    assert!(
        diag.contains("エージェント無応答") && diag.contains("oqs-agent"),
        "{diag}"
    );
    assert!(diag.contains("最終受信"), "since when: {diag}");
    assert!(!diag.contains("問題は見つかりませんでした"), "{diag}");
    let checks = b
        .eval("const c = document.querySelector('#terminals td.checks'); return [c.className, c.textContent, c.querySelectorAll('.badge.ok').length]")
        .await;
    assert!(checks[0].as_str().unwrap().contains("old"), "{checks}");
    assert!(
        checks[1].as_str().unwrap().contains("前の結果"),
        "their age: {checks}"
    );
    assert_eq!(checks[2], 0, "none shown as passing: {checks}");
    b.screenshot(&screenshots().join("site-silent.png")).await;
    b.quit().await;
    c.stop().await.unwrap();
}

/// The dashboard never looks current when it cannot reach the collector: the site page and the
/// overview, once their refresh fails, show a banner with the time of the last good data and grey
/// everything under it; the banner goes when the collector answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_pages_that_cannot_reach_the_collector_say_so_and_grey_out() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(dir.path());
    cfg.http_listen = format!("127.0.0.1:{port}").parse().unwrap();
    let c = oqs_collector::server::start(cfg.clone()).await.unwrap();
    sim_fleet(&c, Scenario::Healthy, 3, 2, "st-").await;
    let base = format!("http://127.0.0.1:{port}");
    let b = webdriver::Browser::start().await;
    let stale = "const s = document.getElementById('stale-banner'); \
                 return s && !s.hidden && document.body.classList.contains('stale') ? s.textContent : ''";
    let fresh = "const s = document.getElementById('stale-banner'); \
                 return s && s.hidden && !document.body.classList.contains('stale') ? 'fresh' : ''";

    b.goto(&format!("{base}/sites/st-00000")).await;
    b.wait_for(
        "the site page",
        "return document.getElementById('diagnosis') ? 1 : 0",
        20,
    )
    .await;
    b.wait_for("a current page", fresh, 5).await;
    c.stop().await.unwrap();
    let text = b
        .wait_for("the stale banner on the site page", stale, 30)
        .await;
    assert!(text.as_str().unwrap().contains("時点"), "{text}");
    assert!(
        b.eval("return document.getElementById('diagnosis') !== null")
            .await
            == true,
        "what it showed stays, greyed"
    );
    b.screenshot(&screenshots().join("site-stale.png")).await;

    // The collector comes back: the next refresh clears it.
    let c = oqs_collector::server::start(cfg.clone()).await.unwrap();
    b.wait_for("the site page current again", fresh, 30).await;

    b.goto(&format!("{base}/")).await;
    b.wait_for(
        "the overview's rows",
        "return document.querySelectorAll('#rows tr[data-site]').length === 3 ? 1 : 0",
        20,
    )
    .await;
    c.stop().await.unwrap();
    let text = b
        .wait_for("the stale banner on the overview", stale, 30)
        .await;
    assert!(
        text.as_str()
            .unwrap()
            .contains("最新の情報を取得できません"),
        "{text}"
    );
    b.screenshot(&screenshots().join("overview-stale.png"))
        .await;
    b.quit().await;
}

/// The monthly availability report in Chromium: in Japanese, with the month's percentage, the
/// outage with its cause, the excluded closed days; and the browser prints it to a PDF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_monthly_availability_report_reads_and_prints() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flags.silent_intervals = 1_000_000;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let (month, _) = last_month_with_one_outage(&c, "ar-").await;
    let api = get_json(
        c.http_addr,
        &format!("/api/sites/ar-00000/availability?month={month}"),
    )
    .await;
    let pct = format!("{:.3}%", api["availability_percent"].as_f64().unwrap());
    let url = format!(
        "http://{}/sites/ar-00000/availability?month={month}",
        c.http_addr
    );
    let u = url.clone();
    let s = screenshots().join("availability.png");
    let dom = tokio::task::spawn_blocking(move || chromium(&u, &s))
        .await
        .unwrap();
    assert!(dom.contains("月次稼働率報告書"), "the report's title");
    let figure = dom
        .split("id=\"r-availability\"")
        .nth(1)
        .expect("the figure");
    assert!(
        figure[..300.min(figure.len())].contains(&pct),
        "{pct}: {}",
        &figure[..300.min(figure.len())]
    );
    assert!(
        dom.contains("data-outage=\"ipv6_missing\""),
        "the outage row"
    );
    assert!(
        dom.contains("IPv6未取得") && dom.contains("手順4"),
        "its cause and step"
    );
    assert!(dom.contains("id=\"r-maint\""), "the closed days, left out");
    assert!(dom.contains("停止の記録（1件）"));
    // Printed (as the browser's "save as PDF" does): a PDF of one page or more.
    let pdf = dir.path().join("availability.pdf");
    let p = pdf.clone();
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let out = headless(profile.path())
            .arg("--no-pdf-header-footer")
            .arg(format!("--print-to-pdf={}", p.display()))
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium --print-to-pdf failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
    .unwrap();
    let bytes = std::fs::read(&pdf).expect("the PDF was written");
    assert!(bytes.starts_with(b"%PDF-"), "a PDF");
    assert!(
        bytes.len() > 10_000,
        "with the report in it ({} bytes)",
        bytes.len()
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("/Type /Page") || text.contains("/Type/Page"),
        "with pages"
    );
    let _ = std::fs::copy(&pdf, screenshots().join("availability.pdf"));
    c.stop().await.unwrap();
}

/// A minimal W3C WebDriver client over ChromeDriver (Debian's `chromium-driver`), for what
/// `--dump-dom` cannot do: click, and wait for what the page's script does next.
mod webdriver {
    use serde_json::{json, Value};
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// ChromeDriver and its Chromium (one process group), killed when dropped — also when the
    /// test fails before a session exists.
    struct Driver(Child);

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0.id())])
                .status();
            let _ = self.0.wait();
        }
    }

    pub struct Browser {
        _driver: Driver,
        base: String,
        session: String,
        http: reqwest::Client,
        _profile: tempfile::TempDir,
    }

    /// The key W3C WebDriver uses for element references.
    const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

    impl Browser {
        pub async fn start() -> Browser {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            // A process group of its own: Chromium's processes go with it when the test ends.
            let driver = Driver(Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("chromedriver must be installed (apt-get install chromium-driver, as .ci/run does): {e}")
                }));
            let base = format!("http://127.0.0.1:{port}");
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while http.get(format!("{base}/status")).send().await.is_err() {
                assert!(Instant::now() < deadline, "chromedriver did not start");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let profile = tempfile::tempdir().unwrap();
            let caps = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--window-size=1400,1300",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                },
            }}});
            let mut b = Browser {
                _driver: driver,
                base,
                session: String::new(),
                http,
                _profile: profile,
            };
            let v = b.call("POST", "/session", caps).await;
            b.session = v["sessionId"].as_str().expect("a session").to_owned();
            b
        }

        async fn call(&self, method: &str, path: &str, body: Value) -> Value {
            let url = if path == "/session" {
                format!("{}{path}", self.base)
            } else {
                format!("{}/session/{}{path}", self.base, self.session)
            };
            let req = match method {
                "GET" => self.http.get(url),
                "DELETE" => self.http.delete(url),
                _ => self
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string()),
            };
            let text = req.send().await.unwrap().text().await.unwrap();
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                v["value"].get("error").is_none(),
                "webdriver {method} {path}: {text}"
            );
            v.get("value").cloned().unwrap_or(v)
        }

        pub async fn goto(&self, url: &str) {
            self.call("POST", "/url", json!({ "url": url })).await;
        }

        /// Runs `script` (a function body) in the page and returns its value.
        pub async fn eval(&self, script: &str) -> Value {
            self.call(
                "POST",
                "/execute/sync",
                json!({ "script": script, "args": [] }),
            )
            .await
        }

        /// Waits until `script` returns something truthy; returns it.
        pub async fn wait_for(&self, what: &str, script: &str, secs: u64) -> Value {
            let deadline = Instant::now() + Duration::from_secs(secs);
            loop {
                let v = self.eval(script).await;
                if !(v.is_null() || v == json!(false) || v == json!("")) {
                    return v;
                }
                assert!(Instant::now() < deadline, "waited {secs} s for {what}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        pub async fn click(&self, css: &str) {
            let e = self
                .call(
                    "POST",
                    "/element",
                    json!({ "using": "css selector", "value": css }),
                )
                .await;
            let id = e[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {e}"))
                .to_owned();
            self.call("POST", &format!("/element/{id}/click"), json!({}))
                .await;
        }

        pub async fn screenshot(&self, path: &std::path::Path) {
            use base64::Engine;
            let v = self.call("GET", "/screenshot", Value::Null).await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            std::fs::write(path, png).unwrap();
        }
    }

    impl Browser {
        /// Ends the session (ChromeDriver closes Chromium), then the driver.
        pub async fn quit(self) {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .send()
                .await;
        }
    }
}

/// In a real browser: the site page is Japanese by default, shows the customer ID masked, and its
/// "今すぐ実行" button sends RunNow to the site's (simulated) agent, which runs a round at once; the
/// page then says a fresh result arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_run_now_brings_a_fresh_result_on_a_japanese_page_with_a_masked_id() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    // One site whose agent stays connected and would report again only in ten minutes.
    let cancel = CancellationToken::new();
    let opts = SimOptions {
        collector: format!("http://{}", c.grpc_addr),
        sites: 1,
        reports: 0,
        interval: Duration::from_secs(600),
        scenario: Scenario::Healthy,
        site_prefix: "rn-".into(),
        terminals_per_site: 1,
        ..SimOptions::default()
    };
    let sim = tokio::spawn(sim::run(opts, cancel.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(c.http_addr, "/api/sites/rn-00000").await;
        if status == 200 && body.contains("\"last_seq\":1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the simulated agent reports"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = webdriver::Browser::start().await;
    b.goto(&format!("http://{}/sites/rn-00000", c.http_addr))
        .await;
    b.wait_for(
        "the site page",
        "return document.getElementById('run-now') && document.getElementById('contact')",
        20,
    )
    .await;
    assert_eq!(b.eval("return document.documentElement.lang").await, "ja");
    let run_label = b
        .eval("return document.getElementById('run-now').textContent")
        .await;
    assert_eq!(run_label, "今すぐ実行", "Japanese by default");
    let contact = b
        .eval("return document.getElementById('contact').textContent")
        .await;
    let contact = contact.as_str().unwrap().to_owned();
    let full_id =
        oqs_fleet_sim::scenario::SiteProfile::new(0, "rn-", Scenario::Healthy, 1).customer_id;
    assert!(
        contact.contains("ネットワークサポートデスク") && contact.contains("CAF*"),
        "{contact}"
    );
    assert!(
        !contact.contains(&full_id),
        "the customer ID is masked: {contact}"
    );

    b.click("#run-now").await;
    let toast = b
        .wait_for(
            "a fresh result",
            "const t = document.getElementById('toast').textContent; return t.includes('新しい結果を受信') ? t : ''",
            30,
        )
        .await;
    assert!(toast.as_str().unwrap().contains("新しい結果を受信"));
    b.screenshot(&screenshots().join("site-run-now.png")).await;
    let site = get_json(c.http_addr, "/api/sites/rn-00000").await;
    assert_eq!(
        site["terminals"][0]["last_seq"], 2,
        "the round ran because of the button, not the interval"
    );

    // A maintenance window typed in on the site page (Japan time), shown at once with its banner,
    // then removed.
    let now = oqs_collector::clock::now_ms();
    let jst = |ms: i64| oqs_collector::clock::rfc3339_ms(ms + 9 * 3_600_000)[..16].to_owned();
    let (start, end) = (jst(now - 60_000), jst(now + 3_600_000));
    b.eval(&format!(
        "document.getElementById('mw-start').value = '{start}';
         document.getElementById('mw-end').value = '{end}';
         document.getElementById('mw-reason').value = 'PC入替';
         document.getElementById('mw-by').value = 'noc-suzuki'; return true"
    ))
    .await;
    b.click("#mw-add").await;
    let row = b
        .wait_for(
            "the window in the list",
            "const r = document.querySelector('#maint-windows tr[data-window]'); return r ? r.textContent : ''",
            20,
        )
        .await;
    assert!(row.as_str().unwrap().contains("PC入替"), "{row}");
    let banner = b
        .wait_for(
            "the maintenance banner",
            "const e = document.getElementById('maint-banner'); return e ? e.textContent : ''",
            20,
        )
        .await;
    assert!(
        banner.as_str().unwrap().contains("休診・メンテナンス中"),
        "{banner}"
    );
    let site = get_json(c.http_addr, "/api/sites/rn-00000").await;
    assert_eq!(site["maintenance"]["reason"], "PC入替", "{site}");
    b.screenshot(&screenshots().join("site-maintenance.png"))
        .await;
    b.click(".mw-remove").await;
    b.wait_for(
        "the window removed",
        "return document.getElementById('maint-windows') ? '' : 'gone'",
        20,
    )
    .await;
    let m = get_json(c.http_addr, "/api/sites/rn-00000/maintenance").await;
    assert_eq!(m["windows"], serde_json::json!([]), "{m}");
    // Closed days typed as the admin command takes them; a bad one shows the collector's reason.
    b.eval(
        "document.getElementById('mc-spans').value = 'thu:18:00-13:00';
         return true",
    )
    .await;
    b.click("#mc-save").await;
    let msg = b
        .wait_for(
            "the refusal",
            "return document.getElementById('maint-msg').textContent",
            20,
        )
        .await;
    assert!(msg.as_str().unwrap().contains("end must be after"), "{msg}");
    b.eval(
        "document.getElementById('mc-spans').value = 'thu:13:00-24:00, sun';
         document.getElementById('mc-holidays').checked = true; return true",
    )
    .await;
    b.click("#mc-save").await;
    b.wait_for(
        "the closed days",
        "const e = document.getElementById('maint-closed'); return e && e.textContent.includes('木曜 13:00–24:00') ? e.textContent : ''",
        20,
    )
    .await;
    let m = get_json(c.http_addr, "/api/sites/rn-00000/maintenance").await;
    assert_eq!(m["closed"][1]["day"], "sun", "{m}");
    assert_eq!(m["holidays"], true);
    b.quit().await;
    cancel.cancel();
    let _ = sim.await;
    c.stop().await.unwrap();
}

/// The site page's charts draw the state in force at every range (1 h, 24 h, 7 d, 30 d): a site
/// stable for days is one green line-auth band and one prefix band, never red or grey for want
/// of a change inside the window; what is not known (before the first report) is drawn as
/// unknown; and where the site's events say something changed, the chart shows that change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_charts_draw_at_every_range_what_the_events_say() {
    use oqs_fleet_sim::scenario::{report, SiteProfile, CHANGE_ROUND};
    use serde_json::Value;
    const H: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // One terminal sends thirty days of hourly rounds at once (a spool replayed).
    cfg.limits.max_reports_per_minute = 10_000;
    cfg.flags.silent_intervals = 1_000_000;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let now = oqs_collector::clock::now_ms();
    let t = |k: i64| now - (720 - k) * H + H / 2;
    let healthy = SiteProfile::new(0, "ch-", Scenario::Healthy, 1);
    let moved = SiteProfile::new(0, "ch-", Scenario::PrefixChange, 1);
    let down = SiteProfile::new(0, "ch-", Scenario::Ipv6Missing, 1);
    let (mut s, _) = AgentStream::hello(
        channel(c.grpc_addr).await,
        oqs_fleet_sim::hello(&healthy, 0),
    )
    .await;
    for k in 0..720i64 {
        let seq = k as u64 + 1;
        let r = match k {
            // Prefix A, authenticated.
            ..480 => report(&healthy, 0, 0, seq, t(k)),
            // The line moves to prefix B: the consent page for two rounds (re-authentication).
            480..482 => report(&moved, 0, CHANGE_ROUND, seq, t(k)),
            // IPv6 lost for two rounds, three days ago.
            648..650 => report(&down, 0, 0, seq, t(k)),
            // Prefix B, authenticated again.
            _ => {
                let mut r = report(&moved, 0, CHANGE_ROUND, seq, t(k));
                r.lineauth = report(&healthy, 0, 0, seq, t(k)).lineauth;
                r
            }
        };
        s.send(r).await;
        assert_eq!(s.ack().await.seq, seq);
    }
    let events = get_json(c.http_addr, "/api/events?site=ch-00000&since=0").await;
    let events: Vec<(String, String, i64)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["flag"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["at_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    let at = |flag: &str, action: &str| {
        events
            .iter()
            .find(|(f, a, _)| f == flag && a == action)
            .unwrap_or_else(|| panic!("no {flag} {action} in {events:?}"))
            .2
    };
    let prefix_changed = at("prefix_changed", "raised");
    let (v6_down, v6_up) = (at("ipv6_missing", "raised"), at("ipv6_missing", "cleared"));
    let (reauth, reauthed) = (
        at("reauth_required", "raised"),
        at("reauth_required", "cleared"),
    );
    let site = get_json(c.http_addr, "/api/sites/ch-00000").await;
    let prefix_b = site["prefix"].as_str().unwrap().to_owned();

    let b = webdriver::Browser::start().await;
    b.goto(&format!("http://{}/sites/ch-00000", c.http_addr))
        .await;
    b.wait_for(
        "the charts",
        "return document.getElementById('chart-lineauth') ? 1 : 0",
        20,
    )
    .await;
    for (range, ms) in [
        ("1h", H),
        ("24h", 24 * H),
        ("7d", 7 * 24 * H),
        ("30d", 30 * 24 * H),
    ] {
        b.eval(&format!(
            "const s = document.getElementById('range'); s.value = '{range}'; \
             s.dispatchEvent(new Event('change')); return 1"
        ))
        .await;
        // What the page drew: each band's segments, and the window.
        let drawn = b
            .wait_for(
                &format!("the {range} charts"),
                &format!(
                    "const l = document.getElementById('chart-lineauth'), p = document.getElementById('chart-prefix'); \
                     if (!l || !p || Math.abs((l.dataset.to - l.dataset.from) - {ms}) > 60000) return ''; \
                     const segs = c => [...c.querySelectorAll('rect[data-state]')].map(r => [Number(r.dataset.from), Number(r.dataset.to), r.dataset.state]); \
                     const dns = document.querySelectorAll('#chart-dns path').length; \
                     return [Number(l.dataset.from), Number(l.dataset.to), segs(l), segs(p), dns]"
                ),
                30,
            )
            .await;
        let (from, to) = (drawn[0].as_i64().unwrap(), drawn[1].as_i64().unwrap());
        let segs = |v: &Value| -> Vec<(i64, i64, String)> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s[0].as_i64().unwrap(),
                        s[1].as_i64().unwrap(),
                        s[2].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        let (lineauth, prefix) = (segs(&drawn[2]), segs(&drawn[3]));
        for (name, band) in [("line-auth", &lineauth), ("prefix", &prefix)] {
            // Contiguous from the window's start to its end.
            assert_eq!(
                band.first().map(|s| s.0),
                Some(from),
                "{range} {name}: {band:?}"
            );
            assert_eq!(
                band.last().map(|s| s.1),
                Some(to),
                "{range} {name}: {band:?}"
            );
            assert!(
                band.windows(2).all(|w| w[0].1 == w[1].0),
                "{range} {name}: gaps {band:?}"
            );
            // Unknown only before the first report.
            for s in band.iter().filter(|s| s.2 == "unknown") {
                assert!(
                    s.1 <= t(0),
                    "{range} {name}: unknown after the first report: {band:?}"
                );
            }
        }
        let state_at = |band: &[(i64, i64, String)], when: i64| {
            band.iter()
                .find(|s| s.0 <= when && when < s.1)
                .map(|s| s.2.clone())
                .unwrap_or_default()
        };
        // Where the events say something changed, the charts show it.
        let inside = |ms: i64| from <= ms && ms < to;
        if inside(prefix_changed) {
            assert_eq!(
                state_at(&prefix, prefix_changed),
                prefix_b,
                "{range}: {prefix:?}"
            );
            assert_ne!(
                state_at(&prefix, prefix_changed - 1),
                prefix_b,
                "{range}: {prefix:?}"
            );
        }
        if inside(v6_down) {
            assert_eq!(state_at(&prefix, v6_down), "none", "{range}: {prefix:?}");
            assert_eq!(
                state_at(&lineauth, v6_down),
                "unreachable",
                "{range}: {lineauth:?}"
            );
        }
        if inside(v6_up) {
            assert_eq!(state_at(&prefix, v6_up), prefix_b, "{range}: {prefix:?}");
        }
        if inside(reauth) {
            assert_eq!(
                state_at(&lineauth, reauth),
                "consent",
                "{range}: {lineauth:?}"
            );
        }
        if inside(reauthed) {
            assert_eq!(
                state_at(&lineauth, reauthed),
                "already_authenticated",
                "{range}: {lineauth:?}"
            );
        }
        if !inside(v6_down) && !inside(reauth) && !inside(prefix_changed) {
            // Nothing happened in the window: one authenticated band, one prefix band.
            assert_eq!(
                lineauth.iter().map(|s| s.2.as_str()).collect::<Vec<_>>(),
                ["already_authenticated"],
                "{range}"
            );
            assert_eq!(
                prefix.iter().map(|s| s.2.as_str()).collect::<Vec<_>>(),
                [prefix_b.as_str()],
                "{range}"
            );
        }
        assert!(
            drawn[4].as_u64().unwrap() > 0,
            "{range}: the DNS chart draws its servers"
        );
        b.screenshot(&screenshots().join(format!("site-charts-{range}.png")))
            .await;
    }
    b.quit().await;
    c.stop().await.unwrap();
}
