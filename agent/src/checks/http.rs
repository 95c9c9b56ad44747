//! HTTP(S) reachability of OQS web (production and verification login pages, guide 3-2 P18) and of
//! the CRL download host. OQS web must answer over TLS verified against the OQS CA; the CRL host is
//! plain HTTP and any HTTP answer means it is reachable.
//!
//! Must never log in or post anything: one GET each.

use super::lineauth::fetch::{chain, get};
use oqs_proto::v1::{HttpProbe, HttpTarget, Outcome};
use std::time::{Duration, Instant};

/// One GET of `url` for `target`.
pub async fn probe(
    client: &reqwest::Client,
    target: HttpTarget,
    url: &str,
    timeout: Duration,
) -> HttpProbe {
    let started = Instant::now();
    let mut p = HttpProbe {
        target: target as i32,
        url: url.to_string(),
        ..Default::default()
    };
    match get(client, url).await {
        Ok((status, _, _)) => {
            p.status = status;
            p.tls_trusted = url.starts_with("https://");
            let ok = match target {
                HttpTarget::Crl => true,
                _ => (200..400).contains(&status),
            };
            p.outcome = if ok { Outcome::Ok } else { Outcome::Failed } as i32;
            if !ok {
                p.error = format!("HTTP status {status}");
            }
        }
        Err(e) if e.is_timeout() => {
            p.outcome = Outcome::TimedOut as i32;
            p.error = format!("no answer within {} ms", timeout.as_millis());
        }
        Err(e) => {
            p.outcome = Outcome::Failed as i32;
            p.error = chain(&e);
        }
    }
    p.latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    p
}

/// The `oqs_web` and `crl` probes of a round: both OQS web login pages and the CRL host.
pub async fn run(ctx: &super::Context<'_>) -> Vec<HttpProbe> {
    let p = ctx.probes;
    futures::future::join_all([
        probe(
            ctx.web,
            HttpTarget::OqsWebProduction,
            &p.oqs_web_production_url,
            ctx.timeout,
        ),
        probe(
            ctx.web,
            HttpTarget::OqsWebVerification,
            &p.oqs_web_verification_url,
            ctx.timeout,
        ),
        probe(ctx.web, HttpTarget::Crl, &p.crl_url, ctx.timeout),
    ])
    .await
}
