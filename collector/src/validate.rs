//! Validation of what agents send: a `Hello` becomes a trusted [`AgentIdentity`], a `Report` is
//! checked against the configured [`Limits`]. Pure functions, so every rule is unit-tested.
//!
//! Must never truncate or repair a message: bad input is refused with a reason that names the
//! field, the value's problem and the limit, and nothing of it is stored.

use crate::config::Limits;
use oqs_proto::ident::{Area, CustomerId, SiteId, TerminalId};
use oqs_proto::v1::{self, Hello, Report};
use oqs_proto::PROTOCOL_VERSION;

/// Why a message was refused. `label()` is the bounded metric label; `Display` is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("protocol_version {got} is not supported: this collector speaks {PROTOCOL_VERSION}")]
    ProtocolVersion { got: u32 },
    #[error("hello: {0}")]
    Hello(String),
    #[error("report seq {seq}: {reason}")]
    Report { seq: u64, reason: String },
}

impl Rejection {
    /// The `reason` label of `oqs_reports_rejected_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::ProtocolVersion { .. } => "protocol_version",
            Rejection::Hello(_) => "bad_hello",
            Rejection::Report { .. } => "invalid_report",
        }
    }
}

/// A validated `Hello`: who is on the other end of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub site: SiteId,
    pub terminal: TerminalId,
    pub area: Area,
    pub customer_id: Option<CustomerId>,
    pub hostname: String,
    pub agent_version: String,
    pub os: String,
    pub boot_id: String,
    pub highest_held_seq: u64,
    /// What the agent says this collector acknowledged to it (0: not said).
    pub highest_acked_seq: u64,
    /// The agent's clock when it sent the Hello (0: not said).
    pub agent_time_ms: i64,
    /// When the terminal's machine booted, by its clock (0: not said).
    pub boot_time_ms: i64,
    pub prefecture: Option<String>,
    pub site_name: Option<String>,
}

use crate::checks::text;
use oqs_proto::text_limits as TL;

/// Checks a `Hello` and turns it into an identity.
pub fn hello(h: &Hello) -> Result<AgentIdentity, Rejection> {
    if h.protocol_version != PROTOCOL_VERSION {
        return Err(Rejection::ProtocolVersion {
            got: h.protocol_version,
        });
    }
    let bad = |e: String| Rejection::Hello(e);
    let site = SiteId::parse(&h.site_id).map_err(|e| bad(e.to_string()))?;
    let terminal = TerminalId::parse(&h.terminal_id).map_err(|e| bad(e.to_string()))?;
    let area = v1::Area::try_from(h.area)
        .ok()
        .and_then(Area::from_wire)
        .ok_or_else(|| bad(format!("area {} is not east (1) or west (2)", h.area)))?;
    let customer_id = h
        .customer_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| CustomerId::parse(s, Some(area)))
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    text("hostname", &h.hostname, TL::HOSTNAME).map_err(bad)?;
    text("agent_version", &h.agent_version, TL::AGENT_VERSION).map_err(bad)?;
    text("os", &h.os, TL::OS).map_err(bad)?;
    text("boot_id", &h.boot_id, TL::BOOT_ID).map_err(bad)?;
    let line = |field: &str, v: &Option<String>, max: usize| -> Result<Option<String>, Rejection> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) if s.contains('\n') || s.contains('\t') => {
                Err(bad(format!("{field} must be one line")))
            }
            Some(s) => text(field, s, max).map(|_| Some(s.to_owned())).map_err(bad),
        }
    };
    if h.credential
        .as_deref()
        .is_some_and(|c| c.len() > TL::CREDENTIAL)
    {
        return Err(bad(format!(
            "credential is longer than {} characters",
            TL::CREDENTIAL
        )));
    }
    if h.highest_acked_seq > oqs_proto::MAX_SEQ {
        return Err(bad(format!(
            "highest_acked_seq {} is above the limit {}: the agent's spool state is damaged",
            h.highest_acked_seq,
            oqs_proto::MAX_SEQ
        )));
    }
    if h.highest_held_seq > oqs_proto::MAX_SEQ {
        return Err(bad(format!(
            "highest_held_seq {} is above the limit {}: the agent's spool state is damaged",
            h.highest_held_seq,
            oqs_proto::MAX_SEQ
        )));
    }
    if h.boot_time_ms < 0 {
        return Err(bad(format!(
            "boot_time_ms {} is before 1970: send 0 when the boot time is not known",
            h.boot_time_ms
        )));
    }
    let prefecture = line("prefecture", &h.prefecture, TL::PREFECTURE)?;
    let site_name = line("site_name", &h.site_name, TL::SITE_NAME)?;
    Ok(AgentIdentity {
        prefecture,
        site_name,
        site,
        terminal,
        area,
        customer_id,
        hostname: h.hostname.clone(),
        agent_version: h.agent_version.clone(),
        os: h.os.clone(),
        boot_id: h.boot_id.clone(),
        highest_held_seq: h.highest_held_seq,
        highest_acked_seq: h.highest_acked_seq,
        agent_time_ms: h.agent_time_ms,
        boot_time_ms: h.boot_time_ms,
    })
}

/// Keeps the first `limits.max_addresses` addresses and the first `limits.max_list_items` DNS
/// answers, servers and gateways of a report; returns how many items were dropped. A long list
/// is the network's doing (a DNS name with many addresses, a terminal with many adapters), not a
/// bad report: it is stored with what fits, never refused for it.
pub fn trim_lists(r: &mut Report, l: &Limits) -> u64 {
    crate::checks::trim(r, l)
}

/// Checks a report's content against the limits. Its times are not judged against the
/// collector's clock: a report far ahead is stamped with its receive time by the ingest, not
/// refused (the clock is what is wrong, not the report).
pub fn report(r: &Report, limits: &Limits) -> Result<(), Rejection> {
    report_inner(r, limits).map_err(|reason| Rejection::Report { seq: r.seq, reason })
}

fn report_inner(r: &Report, l: &Limits) -> Result<(), String> {
    if r.seq == 0 {
        return Err("seq is 0; seqs start at 1".into());
    }
    if r.started_at_ms <= 0 || r.finished_at_ms <= 0 {
        return Err(
            "started_at_ms and finished_at_ms must be set (Unix epoch milliseconds)".into(),
        );
    }
    if r.finished_at_ms < r.started_at_ms {
        return Err(format!(
            "finished_at_ms {} is before started_at_ms {}",
            r.finished_at_ms, r.started_at_ms
        ));
    }
    if let Some(a) = &r.agent {
        crate::checks::text("agent.config_refused", &a.config_refused, l.max_text_chars)?;
        crate::checks::text("agent.last_refusal", &a.last_refusal, l.max_text_chars)?;
    }
    crate::checks::validate(r, l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::{DnsProbe, Ipv6State, LineAuthProbe, Outcome};

    fn good_hello() -> Hello {
        Hello {
            protocol_version: 1,
            site_id: "clinic-1".into(),
            terminal_id: "pc-1".into(),
            hostname: "OQS-PC".into(),
            agent_version: "0.1.0".into(),
            area: v1::Area::East as i32,
            os: "linux".into(),
            boot_id: "b1".into(),
            customer_id: Some("CAF0123456789".into()),
            highest_held_seq: 0,
            highest_acked_seq: 0,
            agent_time_ms: 0,
            boot_time_ms: 0,
            prefecture: Some("東京都".into()),
            site_name: Some("山田クリニック".into()),
            credential: None,
        }
    }

    fn good_report() -> Report {
        Report {
            seq: 1,
            started_at_ms: 1_700_000_000_000,
            finished_at_ms: 1_700_000_000_500,
            ipv6: Some(Ipv6State {
                outcome: Outcome::Ok as i32,
                prefix: "2408:1:2:3::/64".into(),
                ..Default::default()
            }),
            dns: vec![DnsProbe {
                outcome: Outcome::Ok as i32,
                name: "www.lineauth.mnw".into(),
                server: "system".into(),
                answers: vec!["2404:1a8:f583:af0::1".into()],
                ..Default::default()
            }],
            lineauth: Some(LineAuthProbe {
                outcome: Outcome::Ok as i32,
                error_code: "P11019".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_hello_becomes_an_identity() {
        let id = hello(&good_hello()).unwrap();
        assert_eq!(id.site.as_str(), "clinic-1");
        assert_eq!(id.area, Area::East);
        assert!(id.customer_id.is_some());
    }

    #[test]
    fn hello_rules_name_what_is_wrong() {
        let mut h = good_hello();
        h.protocol_version = 2;
        assert_eq!(hello(&h), Err(Rejection::ProtocolVersion { got: 2 }));
        let mut h = good_hello();
        h.site_id = "../etc".into();
        assert!(hello(&h).unwrap_err().to_string().contains("site_id"));
        let mut h = good_hello();
        h.area = 0;
        assert!(hello(&h).unwrap_err().to_string().contains("area"));
        let mut h = good_hello();
        h.area = v1::Area::West as i32;
        h.customer_id = Some("COP01234567".into());
        assert!(hello(&h).unwrap_err().to_string().contains("West"));
        let mut h = good_hello();
        h.hostname = "x".repeat(300);
        assert!(hello(&h).unwrap_err().to_string().contains("hostname"));
        let mut h = good_hello();
        h.site_name = Some("山田\nクリニック".into());
        assert!(hello(&h).unwrap_err().to_string().contains("site_name"));
        let mut h = good_hello();
        h.prefecture = Some("東京都".repeat(10));
        assert!(hello(&h).unwrap_err().to_string().contains("prefecture"));
        let mut h = good_hello();
        h.boot_time_ms = -5;
        assert!(hello(&h).unwrap_err().to_string().contains("boot_time_ms"));
        h.boot_time_ms = 1_764_547_200_000;
        assert_eq!(hello(&h).unwrap().boot_time_ms, 1_764_547_200_000);
    }

    #[test]
    fn a_good_report_passes() {
        report(&good_report(), &Limits::default()).unwrap();
    }

    #[test]
    fn report_rules_name_the_field_and_limit() {
        let l = Limits::default();
        type Mutation = Box<dyn Fn(&mut Report)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|r| r.seq = 0), "seq is 0"),
            (
                Box::new(|r| r.finished_at_ms = r.started_at_ms - 1),
                "before started_at_ms",
            ),
            (
                Box::new(|r| r.dns = vec![r.dns[0].clone(); 257]),
                "dns has 257 entries; the limit is 256",
            ),
            (
                Box::new(|r| r.dns[0].answers = vec!["not-an-ip".into()]),
                "dns[0].answers[0]",
            ),
            (Box::new(|r| r.dns[0].outcome = 0), "dns[0].outcome"),
            (
                Box::new(|r| r.dns[0].error = "e".repeat(513)),
                "dns[0].error is 513 characters",
            ),
            (
                Box::new(|r| r.ipv6.as_mut().unwrap().prefix = "2408::/300".into()),
                "ipv6.prefix",
            ),
            (
                Box::new(|r| r.lineauth.as_mut().unwrap().error_code = "X1".into()),
                "lineauth.error_code",
            ),
        ];
        for (mutate, want) in cases {
            let mut r = good_report();
            mutate(&mut r);
            let e = report(&r, &l).unwrap_err();
            assert_eq!(e.label(), "invalid_report");
            assert!(e.to_string().contains(want), "{e} should contain {want}");
        }
    }
}
