//! The `ntp` check: SNTP against ntp.base.oqs-pdl.org — reachability and the terminal's offset.

use super::{count, outcome, sample_of, text, worst};
use crate::catalog::Check;
use crate::config::Limits;
use crate::samples::Sample;
use oqs_proto::v1::Report;
use oqs_proto::wire_name;
use serde_json::json;

pub fn validate(r: &Report, l: &Limits) -> Result<(), String> {
    count("ntp", r.ntp.len(), l.max_ntp_probes)?;
    for (i, p) in r.ntp.iter().enumerate() {
        let f = format!("ntp[{i}]");
        outcome(&f, p.outcome)?;
        text(&format!("{f}.error"), &p.error, l.max_text_chars)?;
        text(
            &format!("{f}.server"),
            &p.server,
            oqs_proto::text_limits::DNS_NAME,
        )?;
    }
    Ok(())
}

pub fn sample(r: &Report) -> Option<Sample> {
    if r.ntp.is_empty() {
        return None;
    }
    let sig = json!({ "servers": r.ntp.iter().map(|n| json!({
        "server": n.server,
        "outcome": wire_name!(Outcome, n.outcome),
        "stratum": n.stratum,
    })).collect::<Vec<_>>() });
    let extra = json!({
        "offsets_ms": r.ntp.iter().map(|n| n.offset_us as f64 / 1000.0).collect::<Vec<_>>(),
        "latencies_ms": r.ntp.iter().map(|n| n.latency_ms).collect::<Vec<_>>(),
    });
    Some(sample_of(
        Check::Ntp,
        worst(r.ntp.iter().map(|n| n.outcome)),
        r.ntp.iter().map(|n| n.latency_ms).max().unwrap_or(0),
        sig,
        extra,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::{NtpProbe, Outcome};

    #[test]
    fn the_offset_is_detail_but_not_signature() {
        let mut r = Report {
            ntp: vec![NtpProbe {
                server: "ntp.base.oqs-pdl.org".into(),
                outcome: Outcome::Ok as i32,
                offset_us: 1_500,
                stratum: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        validate(&r, &Limits::default()).unwrap();
        let a = sample(&r).unwrap();
        assert_eq!(a.detail["offsets_ms"][0], 1.5);
        r.ntp[0].offset_us = 9_000_000;
        assert_eq!(sample(&r).unwrap().signature, a.signature);
        r.ntp[0].server = "n".repeat(254);
        assert!(validate(&r, &Limits::default())
            .unwrap_err()
            .contains("ntp[0].server"));
    }
}
