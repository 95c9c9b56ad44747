//! The `certs` check: the certificates the OQS connection depends on — the OQS connection
//! certificate (the trust anchor) and the terminal's electronic certificate — and when they
//! expire. The sample fails when a place could not be read; how close an expiry is, is the
//! `cert_expiring` flag's business (`flags::verdicts`).

use super::{count, outcome, sample_of, text};
use crate::catalog::Check;
use crate::config::Limits;
use crate::samples::Sample;
use oqs_proto::text_limits::CERT_TEXT;
use oqs_proto::v1::{CertSource, Report};
use oqs_proto::wire_name;
use serde_json::json;

pub fn validate(r: &Report, l: &Limits) -> Result<(), String> {
    let Some(c) = &r.certs else { return Ok(()) };
    outcome("certs", c.outcome)?;
    text("certs.error", &c.error, l.max_text_chars)?;
    count("certs.certs", c.certs.len(), l.max_certs)?;
    for (i, cert) in c.certs.iter().enumerate() {
        let f = format!("certs.certs[{i}]");
        match CertSource::try_from(cert.source) {
            Ok(CertSource::TrustAnchor | CertSource::Client) => {}
            _ => {
                return Err(format!(
                    "{f}.source is {}; it must be trust_anchor (1) or client (2)",
                    cert.source
                ))
            }
        }
        text(&format!("{f}.subject"), &cert.subject, CERT_TEXT)?;
        text(&format!("{f}.issuer"), &cert.issuer, CERT_TEXT)?;
        text(&format!("{f}.location"), &cert.location, CERT_TEXT)?;
        text(&format!("{f}.matched_by"), &cert.matched_by, CERT_TEXT)?;
        if cert.not_after_ms <= 0 {
            return Err(format!("{f}.not_after_ms must be a time (Unix ms)"));
        }
    }
    Ok(())
}

pub fn sample(r: &Report) -> Option<Sample> {
    let c = r.certs.as_ref()?;
    let sig = json!({
        "error": c.error,
        "certs": c.certs.iter().map(|x| json!({
            "source": wire_name!(CertSource, x.source),
            "subject": x.subject,
            "issuer": x.issuer,
            "not_after": crate::clock::rfc3339_ms(x.not_after_ms),
            "location": x.location,
            "matched_by": x.matched_by,
        })).collect::<Vec<_>>(),
    });
    let days_left = c
        .certs
        .iter()
        .map(|x| (x.not_after_ms - r.finished_at_ms).div_euclid(86_400_000))
        .min();
    Some(sample_of(
        Check::Certs,
        c.outcome,
        0,
        sig,
        json!({ "days_left": days_left }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::{CertCheck, CertInfo, Outcome};

    /// A report made on day `today` of a certificate ending on day 1025 (plus an hour).
    fn report_on(today: i64) -> Report {
        Report {
            finished_at_ms: today * 86_400_000,
            certs: Some(CertCheck {
                outcome: Outcome::Ok as i32,
                error: String::new(),
                certs: vec![CertInfo {
                    source: CertSource::Client as i32,
                    subject: "CN=Clinic".into(),
                    issuer: "CN=MEDIS-DC Online Claims CA".into(),
                    not_after_ms: 1_025 * 86_400_000 + 3_600_000,
                    location: "LocalMachine\\My".into(),
                    matched_by: "issuer contains MEDIS".into(),
                }],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn days_left_are_detail_and_bad_certificates_are_named() {
        let r = report_on(1_000);
        validate(&r, &Limits::default()).unwrap();
        let s = sample(&r).unwrap();
        assert_eq!(s.detail["days_left"], 25);
        assert!(s.ok);
        // A day later the signature (what was found) is the same; only the days left moved.
        let next = sample(&report_on(1_001)).unwrap();
        assert_eq!(next.signature, s.signature);
        assert_eq!(next.detail["days_left"], 24);
        // A renewed certificate is a change.
        let mut renewed = report_on(1_001);
        renewed.certs.as_mut().unwrap().certs[0].not_after_ms += 1_000 * 86_400_000;
        assert_ne!(sample(&renewed).unwrap().signature, s.signature);
        let mut bad = report_on(1_000);
        bad.certs.as_mut().unwrap().certs[0].source = 7;
        assert!(validate(&bad, &Limits::default())
            .unwrap_err()
            .contains("certs.certs[0].source"));
        let mut bad = report_on(1_000);
        bad.certs.as_mut().unwrap().certs[0].subject = "x".repeat(300);
        assert!(validate(&bad, &Limits::default())
            .unwrap_err()
            .contains("certs.certs[0].subject"));
        let mut bad = report_on(1_000);
        let c = bad.certs.as_mut().unwrap();
        let one = c.certs[0].clone();
        c.certs = vec![one; 40];
        assert!(validate(&bad, &Limits::default())
            .unwrap_err()
            .contains("certs.certs has 40"));
    }
}
