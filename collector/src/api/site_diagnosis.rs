//! What a site page's diagnosis says, in this order: an open area-wide incident listing the site
//! (the area's outage is the likely cause: what to check, what to tell the clinic), else the
//! guide's tree over the terminals that still report (the earliest failing step), else silence
//! (the agents stopped reporting: since when and what to check), else healthy.
//!
//! A silent terminal's last findings are stale: they neither make the site healthy nor fail it;
//! the page shows its last checks with their age. Must never present silence as "no problem".

use super::when;
use crate::flags::{SiteState, TerminalState};
use crate::incidents::Incident;
use oqs_guide::diagnosis::{self, Finding};
use serde::Serialize;

/// What the site page tells the NOC about a site.
#[derive(Serialize)]
pub struct DiagnosisView {
    /// What the verdict rests on: `area_incident`, `guide`, `off_guide` (a connection method
    /// outside the guide), `silent` or `healthy`.
    basis: &'static str,
    /// The guide's step and finding over the terminals that report (also under an incident);
    /// for a silent site, what its last reports said before it fell silent (stale).
    step: Option<u8>,
    finding: Option<Finding>,
    remedy_ja: &'static str,
    remedy_en: &'static str,
    guide_page: &'static str,
    terminal_id: Option<String>,
    /// Since when the guide's finding has held.
    failing_since: Option<String>,
    /// Since when the basis holds: the incident's first failure, the failing step, the last
    /// report of the silent terminal.
    since: Option<String>,
    hint_ja: Option<&'static str>,
    hint_en: Option<&'static str>,
    /// What to tell the clinic on the phone, when the NOC has something to say.
    tell_clinic_ja: Option<&'static str>,
    tell_clinic_en: Option<&'static str>,
    /// The open area-wide incident that lists the site.
    incident_id: Option<u64>,
    /// The connection method the verdict assumed (the failing terminal's, else the site's
    /// latest): the guide's tree is FLET'S IPoE's (`flets_ipoe`); on `ipv4_pppoe` or `ipsec`
    /// only what applies is judged and the basis is `off_guide`.
    connection: crate::flags::Connection,
    connection_ja: &'static str,
    connection_en: &'static str,
}

/// Silence: not the guide's (the agent's own health), the NOC's text.
const SILENT_JA: &str = "エージェントからの報告が途絶えています。(1) オンライン資格確認端末の電源が入っているか、(2) oqs-agent サービスが動いているか（Windows は「サービス」、Linux は systemctl status oqs-agent）、(3) 端末から監視センターまでの経路（院内LAN、プロキシ、中継PC、VPN）が通じているかを確認してください。休診中で端末の電源が切れている場合は対応不要です。表示中のチェック結果は報告が途絶える前のものです。";
const SILENT_EN: &str = "The agent has stopped reporting. Check (1) that the OQS terminal is switched on, (2) that the oqs-agent service runs (Windows Services; systemctl status oqs-agent on Linux), (3) the path from the terminal to the NOC (clinic LAN, proxy, relay PC, VPN). Nothing to do if the clinic is closed and the PC is off. The checks shown are from before it stopped.";
const SILENT_TELL_JA: &str = "監視センターでオンライン資格確認端末の状態が確認できなくなっています。端末の電源が入っているか、ネットワークにつながっているかをご確認いただけますか。";
const SILENT_TELL_EN: &str = "The NOC can no longer see the OQS terminal's state: could you check that the terminal is on and connected to the network?";

/// The diagnosis of `st` (None: nothing derived yet). `last_heard` gives a terminal's last
/// report or Hello (collector time); `customer_id` adds the guide's hint for the finding.
pub fn diagnose(
    st: Option<&SiteState>,
    incident: Option<&Incident>,
    customer_id: Option<&str>,
    last_heard: impl Fn(&str) -> Option<i64>,
) -> (DiagnosisView, Option<(String, Finding)>) {
    let reporting = |(_, ts): &(&String, &TerminalState)| !ts.silent;
    let finding = st.and_then(|st| {
        st.terminals
            .iter()
            .filter(reporting)
            .filter_map(|(id, ts)| ts.finding.map(|f| (id.as_str(), f, ts.failing_since_ms)))
            .min_by_key(|(_, f, _)| diagnosis::verdict(*f).step)
    });
    // The silent terminal heard from last, and when.
    let silent = st.and_then(|st| {
        st.terminals
            .iter()
            .filter(|(_, ts)| ts.silent)
            .map(|(id, _)| (id.as_str(), last_heard(id)))
            .max_by_key(|(_, at)| *at)
    });
    let connection = finding
        .and_then(|(t, _, _)| st.and_then(|st| st.terminals.get(t)))
        .or_else(|| st.and_then(|st| st.terminals.iter().map(|(_, ts)| ts).next()))
        .map(|ts| ts.connection)
        .unwrap_or_default();
    let mut v = DiagnosisView {
        connection,
        connection_ja: connection.label_ja(),
        connection_en: connection.label_en(),
        basis: "healthy",
        step: None,
        finding: None,
        remedy_ja: diagnosis::HEALTHY.remedy_ja,
        remedy_en: diagnosis::HEALTHY.remedy_en,
        guide_page: diagnosis::HEALTHY.guide_page,
        terminal_id: None,
        failing_since: None,
        since: None,
        hint_ja: None,
        hint_en: None,
        tell_clinic_ja: None,
        tell_clinic_en: None,
        incident_id: None,
    };
    if let Some((terminal, f, since)) = finding {
        let d = diagnosis::verdict(f);
        let hint = customer_id.and_then(|c| diagnosis::customer_id_hint(f, c));
        v = DiagnosisView {
            basis: if diagnosis::is_off_guide(f) {
                "off_guide"
            } else {
                "guide"
            },
            step: d.step,
            finding: d.finding,
            remedy_ja: d.remedy_ja,
            remedy_en: d.remedy_en,
            guide_page: d.guide_page,
            terminal_id: Some(terminal.to_owned()),
            failing_since: since.and_then(when),
            since: since.and_then(when),
            hint_ja: hint.map(|h| h.0),
            hint_en: hint.map(|h| h.1),
            ..v
        };
    } else if let Some((terminal, heard)) = silent {
        // What the silent terminals' last reports said: shown for what it was, not as the verdict.
        let stale = st.and_then(|st| {
            st.terminals
                .iter()
                .filter(|(_, ts)| ts.silent)
                .filter_map(|(_, ts)| ts.finding.map(|f| (f, ts.failing_since_ms)))
                .min_by_key(|(f, _)| diagnosis::verdict(*f).step)
        });
        if let Some((f, since)) = stale {
            let d = diagnosis::verdict(f);
            v.step = d.step;
            v.finding = d.finding;
            v.guide_page = d.guide_page;
            v.failing_since = since.and_then(when);
        }
        v = DiagnosisView {
            basis: "silent",
            remedy_ja: SILENT_JA,
            remedy_en: SILENT_EN,
            terminal_id: Some(terminal.to_owned()),
            since: heard.and_then(when),
            tell_clinic_ja: Some(SILENT_TELL_JA),
            tell_clinic_en: Some(SILENT_TELL_EN),
            ..v
        };
    }
    if let Some(i) = incident {
        let (cause_ja, cause_en) = i.kind.likely_cause();
        let (tell_ja, tell_en) = i.kind.tell_clinic();
        v = DiagnosisView {
            basis: "area_incident",
            remedy_ja: cause_ja,
            remedy_en: cause_en,
            guide_page: "",
            since: when(i.since_ms),
            tell_clinic_ja: Some(tell_ja),
            tell_clinic_en: Some(tell_en),
            incident_id: Some(i.id),
            hint_ja: None,
            hint_en: None,
            ..v
        };
    }
    let failing = finding.map(|(t, f, _)| (t.to_owned(), f));
    (v, failing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::TerminalState;

    fn site(silent: bool, finding: Option<Finding>) -> SiteState {
        let mut st = SiteState {
            site: "s".into(),
            ..Default::default()
        };
        *st.terminals
            .get_or_insert_with("pc-1".into(), TerminalState::default) = TerminalState {
            silent,
            finding,
            failing_since_ms: finding.map(|_| 1_000),
            ..Default::default()
        };
        st
    }

    fn json(v: &DiagnosisView) -> serde_json::Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn a_silent_site_is_never_healthy_and_its_stale_finding_is_not_its_verdict() {
        let heard = |_: &str| Some(1_796_000_000_000);
        let (v, _) = diagnose(Some(&site(true, None)), None, None, heard);
        let v = json(&v);
        assert_eq!(v["basis"], "silent");
        assert_ne!(v["remedy_ja"], diagnosis::HEALTHY.remedy_ja);
        assert!(
            v["remedy_ja"].as_str().unwrap().contains("oqs-agent"),
            "{v}"
        );
        assert_eq!(v["since"], "2026-11-30T00:53:20.000Z");
        // Its last report said IPv6 was missing: stale, shown as what it last said, not the
        // verdict (no failing finding, the silent remedy).
        let (v, failing) = diagnose(
            Some(&site(true, Some(Finding::Ipv6Missing))),
            None,
            None,
            heard,
        );
        let v = json(&v);
        assert_eq!((v["basis"].clone(), failing), ("silent".into(), None));
        assert_eq!(v["step"], 4, "{v}");
        assert!(
            v["remedy_ja"].as_str().unwrap().contains("oqs-agent"),
            "{v}"
        );
        // A reporting terminal's finding is.
        let (v, _) = diagnose(
            Some(&site(false, Some(Finding::Ipv6Missing))),
            None,
            None,
            heard,
        );
        assert_eq!(json(&v)["basis"], "guide");
        assert_eq!(json(&v)["step"], 4);
        let (v, _) = diagnose(Some(&site(false, None)), None, None, heard);
        assert_eq!(json(&v)["basis"], "healthy");
    }

    #[test]
    fn a_site_inside_an_open_incident_is_told_the_area_outage_first() {
        let inc = Incident {
            id: 7,
            kind: crate::incidents::IncidentKind::Ipv6Lost,
            area: "east".into(),
            prefecture: "新潟県".into(),
            opened_ms: 2_000,
            since_ms: 1_000,
            closed_ms: None,
            sites: vec!["s".into()],
            peak_sites: 9,
            group_sites: 20,
        };
        let (v, failing) = diagnose(
            Some(&site(false, Some(Finding::Ipv6Missing))),
            Some(&inc),
            None,
            |_| None,
        );
        let v = json(&v);
        assert_eq!(v["basis"], "area_incident");
        assert_eq!(v["incident_id"], 7);
        assert_eq!(v["step"], 4, "the guide's own step stays known");
        assert!(
            v["remedy_ja"]
                .as_str()
                .unwrap()
                .contains("NTT東日本/西日本"),
            "{v}"
        );
        assert!(
            !v["remedy_ja"].as_str().unwrap().contains("0120-116-116"),
            "{v}"
        );
        assert!(
            v["tell_clinic_ja"]
                .as_str()
                .unwrap()
                .contains("お待ちください"),
            "{v}"
        );
        assert_eq!(failing, Some(("pc-1".into(), Finding::Ipv6Missing)));
    }
}
