//! The collector's HTTP side without a socket: a [`Core`] (store, committer, derived state) and
//! its router, driven with `tower::ServiceExt::oneshot`; reports go straight to the committer,
//! as an ingest stream would hand them over.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use oqs_collector::committer::ReportCommit;
use oqs_collector::config::CollectorConfig;
use oqs_collector::server::Core;
use oqs_collector::store::TerminalKey;
use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};
use std::path::Path;
use tower::ServiceExt;

pub struct Api {
    pub core: Core,
    pub config: CollectorConfig,
}

impl Api {
    pub async fn open(dir: &Path) -> Api {
        Api::open_with(super::config(dir)).await
    }

    pub async fn open_with(config: CollectorConfig) -> Api {
        let core = Core::open(&config).await.expect("the core opens");
        Api { core, config }
    }

    /// One request through the router: (status, headers, body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .core
            .router(&self.config)
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = self.request("GET", path, &[], "").await;
        (status.as_u16(), body)
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `rounds` reports of terminal pc-1 of each of `sites` sites of a scenario, committed (as
    /// the simulator would send them, a minute apart ending now).
    pub async fn feed(&self, prefix: &str, scenario: Scenario, sites: usize, rounds: u64) {
        let now = oqs_fleet_sim::now_ms();
        for i in 0..sites {
            let site = SiteProfile::new(i, prefix, scenario, 1);
            let ident = oqs_collector::validate::hello(&oqs_fleet_sim::hello(&site, 0))
                .expect("the simulator's Hello is valid");
            let rounds = if scenario.for_site(i) == Scenario::Silent {
                1
            } else {
                rounds
            };
            for round in 0..rounds {
                let t = now - ((rounds - round) as i64) * 60_000;
                let r = report(&site, 0, round, round + 1, t);
                let commit = ReportCommit::new(
                    &TerminalKey::new(&site.site_id, "pc-1"),
                    r,
                    (round == 0).then(|| Box::new(ident.clone())),
                );
                self.core
                    .committer
                    .report(commit)
                    .await
                    .expect("the committer takes it")
                    .await
                    .expect("the committer answers")
                    .expect("the report is stored");
            }
        }
    }

    pub async fn close(self) {
        self.core.close().await.unwrap();
    }
}
