//! The JSON API's shapes are a contract (the dashboard, NOC scripts and Grafana's JSON panels read
//! them): every answer's keys and value types, recursively, equal the recorded ones in
//! `tests/fixtures/api_shapes.json`. A field renamed, dropped, or turned from a number into a
//! string fails here. After a deliberate change: `UPDATE_API_SHAPES=1 cargo test --test api_shapes`.

mod common;

use common::api::Api;
use oqs_fleet_sim::scenario::Scenario;
use serde_json::{json, Map, Value};

/// A value's shape: objects keep their keys, arrays the union of their elements' shapes, scalars
/// become their type's name ("null" where absent).
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => {
            let mut merged = Value::Null;
            for e in a {
                merged = merge(merged, shape(e));
            }
            Value::Array(if a.is_empty() { vec![] } else { vec![merged] })
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// A shape without its nullability, and whether it was nullable ("null", "type?", {"?": shape}).
fn split(v: Value) -> (Value, bool) {
    match v {
        Value::String(s) if s == "null" => (Value::Null, true),
        Value::String(s) if s.ends_with('?') => {
            (Value::String(s.trim_end_matches('?').into()), true)
        }
        Value::Object(mut o) if o.len() == 1 && o.contains_key("?") => {
            (o.remove("?").unwrap(), true)
        }
        v => (v, false),
    }
}

/// Two shapes of one place: objects merge key by key, arrays element by element; a shape that is
/// sometimes null becomes "type?" (scalars) or {"?": shape}.
fn merge(a: Value, b: Value) -> Value {
    let ((a, na), (b, nb)) = (split(a), split(b));
    let m = match (a, b) {
        (Value::Null, b) => b,
        (a, Value::Null) => a,
        (a, b) if a == b => a,
        (Value::Object(mut x), Value::Object(y)) => {
            for (k, v) in y {
                let old = x.remove(&k).unwrap_or(Value::Null);
                x.insert(k, merge(old, v));
            }
            Value::Object(x)
        }
        (Value::Array(x), Value::Array(y)) => {
            let v = x.into_iter().chain(y).fold(Value::Null, merge);
            Value::Array(if v.is_null() { vec![] } else { vec![v] })
        }
        (a, b) => json!(format!("{a}|{b}")),
    };
    if !(na || nb) {
        return m;
    }
    match m {
        Value::Null => json!("null"),
        Value::String(s) => Value::String(format!("{s}?")),
        other => json!({ "?": other }),
    }
}

/// Through the router alone (no socket), over a store fed straight through the committer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_keeps_its_recorded_shape() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::open(dir.path()).await;
    // Scenarios that fill every optional part of the answers (a code, a hint, a prefix history,
    // a DNS cause, a silent terminal), two sites each.
    let scenarios = [
        ("ok-", Scenario::Healthy),
        ("bad-", Scenario::P11019),
        ("pc-", Scenario::PrefixChange),
        ("dns-", Scenario::DnsTable),
        ("af-", Scenario::AuthFailed),
        ("si-", Scenario::Silent),
        ("fl-", Scenario::Flapping),
        ("uc-", Scenario::UnknownCode),
        ("cu-", Scenario::CertUntrusted),
    ];
    for (prefix, scenario) in scenarios {
        api.feed(prefix, scenario, 2, 4).await;
    }
    let mut shapes = Map::new();
    let mut record = |name: &str, v: Value| {
        let old = shapes.remove(name).unwrap_or(Value::Null);
        shapes.insert(name.to_owned(), merge(old, shape(&v)));
    };
    record("GET /api/sites", api.get_json("/api/sites").await);
    record(
        "GET /api/sites?flag=…&area=…",
        api.get_json("/api/sites?flag=lineauth_error&area=east&limit=5")
            .await,
    );
    for site in scenarios.map(|(p, _)| format!("{p}00000")) {
        record(
            "GET /api/sites/{id}",
            api.get_json(&format!("/api/sites/{site}")).await,
        );
        for check in oqs_collector::samples::Check::ALL {
            let h = api
                .get_json(&format!(
                    "/api/sites/{site}/history?check={}",
                    check.as_str()
                ))
                .await;
            for p in h["points"].as_array().unwrap() {
                record(
                    "GET /api/sites/{id}/history/point",
                    api.get_json(&format!(
                        "/api/sites/{site}/history/point?check={}&terminal={}&at_ms={}&seq={}",
                        check.as_str(),
                        p["terminal_id"].as_str().unwrap(),
                        p["at_ms"],
                        p["seq"]
                    ))
                    .await,
                );
            }
            record("GET /api/sites/{id}/history", h);
        }
    }
    record(
        "GET /api/events",
        api.get_json("/api/events?limit=50").await,
    );
    record("GET /api/catalog", api.get_json("/api/catalog").await);
    record(
        "GET /api/admin/enrollments",
        api.get_json("/api/admin/enrollments").await,
    );
    for (what, path, status) in [
        ("unknown site", "/api/sites/never-seen", 404),
        ("bad site id", "/api/sites/bad%20id", 400),
        ("bad query", "/api/sites?limit=x", 400),
        ("unknown flag", "/api/sites?flag=nope", 400),
        (
            "history of an unknown site",
            "/api/sites/never-seen/history?check=dns",
            404,
        ),
        (
            "history without a check",
            "/api/sites/ok-00000/history",
            400,
        ),
    ] {
        let (got, body) = api.get(path).await;
        assert_eq!(got, status, "{what}: {body}");
        record(
            &format!("error: {what} ({status})"),
            serde_json::from_str(&body).unwrap(),
        );
    }
    api.close().await;

    let got = Value::Object(shapes);
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/api_shapes.json");
    if std::env::var_os("UPDATE_API_SHAPES").is_some() {
        std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for (name, w) in want.as_object().unwrap() {
        assert_eq!(
            got.get(name),
            Some(w),
            "the shape of {name} changed:\n got {}\nwant {}",
            serde_json::to_string_pretty(&got[name]).unwrap(),
            serde_json::to_string_pretty(w).unwrap()
        );
    }
    assert_eq!(
        got, want,
        "answers were added: record them (UPDATE_API_SHAPES=1)"
    );
}
