//! The report's HTTPS/HTTP probes, which the `oqs_web` and `crl` checks divide between them by
//! target: their validation, and the sample of one check's targets.

use super::{count, outcome, sample_of, text, worst};
use crate::catalog::Check;
use crate::config::Limits;
use crate::samples::Sample;
use oqs_proto::v1::{HttpTarget, Report};
use oqs_proto::wire_name;
use serde_json::json;

pub fn validate(r: &Report, l: &Limits) -> Result<(), String> {
    count("http", r.http.len(), l.max_http_probes)?;
    for (i, p) in r.http.iter().enumerate() {
        let f = format!("http[{i}]");
        outcome(&f, p.outcome)?;
        text(&format!("{f}.error"), &p.error, l.max_text_chars)?;
        text(&format!("{f}.url"), &p.url, l.max_url_chars)?;
    }
    Ok(())
}

/// The sample of `check` over the probes of `targets` (`None`: the report has none of them).
pub fn sample(r: &Report, check: Check, targets: &[HttpTarget]) -> Option<Sample> {
    let probes: Vec<_> = r
        .http
        .iter()
        .filter(|h| targets.iter().any(|t| *t as i32 == h.target))
        .collect();
    if probes.is_empty() {
        return None;
    }
    let sig = json!({ "targets": probes.iter().map(|h| json!({
        "target": wire_name!(HttpTarget, h.target),
        "url": h.url,
        "outcome": wire_name!(Outcome, h.outcome),
        "status": h.status,
        "tls_trusted": h.tls_trusted,
    })).collect::<Vec<_>>() });
    let extra = json!({
        "latencies_ms": probes.iter().map(|h| h.latency_ms).collect::<Vec<_>>(),
        "errors": probes.iter().map(|h| h.error.as_str()).collect::<Vec<_>>(),
    });
    Some(sample_of(
        check,
        worst(probes.iter().map(|h| h.outcome)),
        probes.iter().map(|h| h.latency_ms).max().unwrap_or(0),
        sig,
        extra,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::{HttpProbe, Outcome};

    #[test]
    fn oqs_web_and_crl_take_their_own_targets() {
        let probe = |target: HttpTarget, outcome: Outcome| HttpProbe {
            target: target as i32,
            url: "https://hweb.oqs-st.onshikaku.org/web/".into(),
            outcome: outcome as i32,
            ..Default::default()
        };
        let r = Report {
            http: vec![
                probe(HttpTarget::OqsWebVerification, Outcome::Ok),
                probe(HttpTarget::Crl, Outcome::TimedOut),
            ],
            ..Default::default()
        };
        validate(&r, &Limits::default()).unwrap();
        let web = super::super::oqs_web::sample(&r).unwrap();
        let crl = super::super::crl::sample(&r).unwrap();
        assert!(web.ok && !crl.ok);
        assert_eq!(crl.outcome, "timed_out");
        assert!(sample(&r, Check::OqsWeb, &[HttpTarget::OqsWebProduction]).is_none());
        let mut long = r.clone();
        long.http[0].url = "x".repeat(Limits::default().max_url_chars + 1);
        assert!(validate(&long, &Limits::default())
            .unwrap_err()
            .contains("http[0].url"));
    }
}
