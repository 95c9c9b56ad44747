//! The `dns` check (guide step 3): OQS names through the terminal's resolver and straight at the
//! NW-base (and NGN) servers.

use super::{count, ip, keep, outcome, sample_of, text, worst};
use crate::catalog::Check;
use crate::config::Limits;
use crate::samples::Sample;
use oqs_proto::text_limits as TL;
use oqs_proto::v1::{DnsProbe, Outcome, Report, ResolverRole};
use oqs_proto::wire_name;
use serde_json::json;

pub fn validate(r: &Report, l: &Limits) -> Result<(), String> {
    count("dns", r.dns.len(), l.max_dns_probes)?;
    for (i, p) in r.dns.iter().enumerate() {
        let f = format!("dns[{i}]");
        outcome(&f, p.outcome)?;
        text(&format!("{f}.error"), &p.error, l.max_text_chars)?;
        text(&format!("{f}.name"), &p.name, TL::DNS_NAME)?;
        if p.name.is_empty() {
            return Err(format!("{f}.name is empty"));
        }
        if p.server != "system" {
            ip(&format!("{f}.server"), &p.server)?;
        }
        text(&format!("{f}.rcode"), &p.rcode, TL::RCODE)?;
        count(&format!("{f}.answers"), p.answers.len(), l.max_list_items)?;
        for (j, a) in p.answers.iter().enumerate() {
            ip(&format!("{f}.answers[{j}]"), a)?;
        }
    }
    Ok(())
}

pub fn trim(r: &mut Report, l: &Limits) -> u64 {
    r.dns
        .iter_mut()
        .map(|p| keep(&mut p.answers, l.max_list_items))
        .sum()
}

pub fn sample(r: &Report) -> Option<Sample> {
    if r.dns.is_empty() {
        return None;
    }
    let sig = json!({ "probes": r.dns.iter().map(|p| json!({
        "name": p.name,
        "type": wire_name!(RecordType, p.record_type),
        "resolver": wire_name!(ResolverRole, p.role),
        "server": p.server,
        "outcome": wire_name!(Outcome, p.outcome),
        "rcode": p.rcode,
        "answers": p.answers,
    })).collect::<Vec<_>>() });
    let extra = json!({
        "latencies_ms": r.dns.iter().map(|p| p.latency_ms).collect::<Vec<_>>(),
    });
    // Off the guide's method a name resolves when any record type answered it (an IPv4 network
    // has no AAAA): the check is judged by names, as its flag is.
    let outcome = if oqs_proto::ident::Connection::of_report(r).is_guides() {
        worst(r.dns.iter().map(|p| p.outcome))
    } else if oqs_guide::diagnosis::off_guide_unresolved(r).is_empty() {
        Outcome::Ok as i32
    } else {
        Outcome::Failed as i32
    };
    Some(sample_of(
        Check::Dns,
        outcome,
        r.dns.iter().map(|p| p.latency_ms).max().unwrap_or(0),
        sig,
        extra,
    ))
}

/// At most this many series in a point's chart state (the site page draws ten).
pub const CHART_SERIES: usize = 32;

/// The DNS chart's state: latency per server and name asked straight (the terminal's own
/// resolver is left out: it is the same server for every name), labelled "server name", from the
/// probes of `full` and the latencies of `own` (a keyframe's) or else `full`'s.
pub fn chart(full: &serde_json::Value, own: &serde_json::Value) -> serde_json::Value {
    let probes = full["probes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let latencies = own["latencies_ms"]
        .as_array()
        .or_else(|| full["latencies_ms"].as_array());
    let series: Vec<serde_json::Value> = probes
        .iter()
        .enumerate()
        .filter(|(_, p)| p["resolver"] != "system")
        .filter_map(|(i, p)| {
            let ms = latencies?.get(i)?.as_u64()?;
            let name = p["name"].as_str()?.split('.').next().unwrap_or("");
            Some(json!([format!("{} {name}", p["server"].as_str()?), ms]))
        })
        .take(CHART_SERIES)
        .collect();
    json!({ "series": series })
}

/// Whether a probe went through the terminal's own resolver.
pub fn is_system(p: &DnsProbe) -> bool {
    p.role == ResolverRole::System as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::Outcome;

    fn probe(answers: &[&str]) -> DnsProbe {
        DnsProbe {
            name: "www.lineauth.mnw".into(),
            server: "system".into(),
            outcome: Outcome::Ok as i32,
            answers: answers.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn answers_are_addresses_and_long_lists_are_trimmed_not_refused() {
        let l = Limits::default();
        let mut r = Report {
            dns: vec![probe(&["2404:1a8:f583:d00::53:1"])],
            ..Default::default()
        };
        validate(&r, &l).unwrap();
        r.dns[0].answers.push("not-an-ip".into());
        assert!(validate(&r, &l).unwrap_err().contains("dns[0].answers[1]"));
        r.dns[0].answers = vec!["2001:db8::1".into(); l.max_list_items + 3];
        assert_eq!(trim(&mut r, &l), 3);
        assert_eq!(r.dns[0].answers.len(), l.max_list_items);
        validate(&r, &l).unwrap();
    }

    #[test]
    fn the_sample_signs_answers_but_not_latencies() {
        let mut r = Report {
            dns: vec![probe(&["2001:db8::1"])],
            ..Default::default()
        };
        let a = sample(&r).unwrap();
        r.dns[0].latency_ms = 900;
        let b = sample(&r).unwrap();
        assert_eq!(a.signature, b.signature);
        assert_eq!(b.latency_ms, 900);
        r.dns[0].answers = vec!["2001:db8::2".into()];
        assert_ne!(sample(&r).unwrap().signature, a.signature);
        assert!(is_system(&r.dns[0]) || r.dns[0].role != ResolverRole::System as i32);
        assert!(sample(&Report::default()).is_none());
    }
}
