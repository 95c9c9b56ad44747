//! Monthly availability end to end, through the real server: last month's story for one site
//! (an IPv6 outage of two hours on a Monday, closed on Sundays) comes back as the right minutes,
//! percentage and outage with its cause and the guide's step — the same after a restart; the
//! fleet CSV has a row per site, with no percentage (not 100%) for a site with no data that
//! month; bad months and unknown sites are refused with what is wrong.

mod common;

use common::*;
use oqs_collector::server;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_months_outage_and_closed_days_give_its_availability() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flags.silent_intervals = 1_000_000;
    let c = server::start(cfg.clone()).await.unwrap();
    let (month, outage_min) = last_month_with_one_outage(&c, "av-").await;
    // A second site seen only from now on: last month is no data for it.
    sim_fleet(&c, oqs_fleet_sim::scenario::Scenario::Healthy, 1, 2, "nd-").await;
    let (from, to) = month.bounds();
    let month_min = ((to - from) / 60_000) as f64;
    // Sundays of the month, in Japan time.
    let sundays = (0..(to - from) / 86_400_000)
        .filter(|d| ((from + 9 * 3_600_000) / 86_400_000 + 1 + d + 3) % 7 == 0)
        .count() as f64;
    let path = format!("/api/sites/av-00000/availability?month={month}");
    let check = |v: &Value| {
        assert_eq!(v["month"], month.to_string(), "{v}");
        assert_eq!(v["maintenance_minutes"], sundays * 1440.0, "{v}");
        assert_eq!(v["down_minutes"], outage_min, "{v}");
        assert_eq!(v["no_data_minutes"], 0.0, "{v}");
        let up = month_min - sundays * 1440.0 - outage_min;
        assert_eq!(v["up_minutes"], up, "{v}");
        let pct = ((up / (up + outage_min)) * 100_000.0).floor() / 1000.0;
        assert_eq!(v["availability_percent"], pct, "{v}");
        let o = &v["outages"];
        assert_eq!(o.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(o[0]["cause"], "ipv6_missing");
        assert_eq!(o[0]["cause_ja"], "IPv6未取得");
        assert_eq!(o[0]["guide_step"], 4);
        assert_eq!(o[0]["minutes"], outage_min);
        assert_eq!(o[0]["ongoing"], false);
        assert_eq!(
            o[0]["start"],
            oqs_collector::clock::rfc3339_ms(from + 86_400_000 + 610 * 60_000)
        );
    };
    let v = get_json(c.http_addr, &path).await;
    check(&v);
    assert!(v["definition_ja"].as_str().unwrap().contains("稼働率"));
    // A site whose agent names it like a spreadsheet formula (a text from the agent's Hello).
    let mut h = hello("zz-formula", "pc-1");
    h.site_name = Some("=HYPERLINK(\"http://evil.example/\",\"click\")".into());
    let (mut fx, _) = AgentStream::hello(channel(c.grpc_addr).await, h).await;
    fx.send(report(1)).await;
    assert_eq!(fx.ack().await.seq, 1);
    drop(fx);
    // The fleet as CSV: one row per site; the site with no data that month has no percentage.
    // It starts with a UTF-8 byte order mark, so Japanese Excel reads its names as UTF-8.
    let (status, csv) = get(c.http_addr, &format!("/api/availability.csv?month={month}")).await;
    assert_eq!(status, 200, "{csv}");
    assert!(csv.starts_with('\u{feff}'), "a BOM first");
    let rows: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert!(rows[0].starts_with("site_id,site_name,prefecture,area,month,availability_percent"));
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows[3].starts_with("zz-formula,\"'=HYPERLINK("),
        "a formula stays text: {}",
        rows[3]
    );
    let av: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(av[0], "av-00000");
    assert_eq!(
        av[5],
        format!("{:.3}", v["availability_percent"].as_f64().unwrap())
    );
    assert_eq!(
        (av[10], av[11], av[12]),
        ("1", "120", "ipv6_missing"),
        "{csv}"
    );
    let nd: Vec<&str> = rows[2].split(',').collect();
    assert_eq!(nd[0], "nd-00000");
    assert_eq!(nd[5], "", "no data is not 100%: {csv}");
    assert_eq!(nd[9], month_min.to_string(), "all of it no data");
    let v = get_json(
        c.http_addr,
        &format!("/api/sites/nd-00000/availability?month={month}"),
    )
    .await;
    assert!(v["availability_percent"].is_null(), "{v}");

    // The same after a restart.
    c.stop().await.unwrap();
    let c = server::start(cfg).await.unwrap();
    check(&get_json(c.http_addr, &path).await);

    // Bad input says what is wrong.
    for (p, code, want) in [
        (
            "/api/sites/av-00000/availability?month=2026-13",
            400,
            "YYYY-MM",
        ),
        (
            "/api/sites/av-00000/availability?month=2199-01",
            400,
            "has not begun",
        ),
        ("/api/sites/av-00000/availability?when=2026-11", 400, "when"),
        ("/api/sites/nobody/availability", 404, "nobody"),
        ("/api/availability.csv?month=november", 400, "YYYY-MM"),
    ] {
        let (status, body) = get(c.http_addr, p).await;
        assert_eq!(status, code, "{p}: {body}");
        assert!(body.contains(want), "{p}: {body}");
    }
    c.stop().await.unwrap();
}
