use super::*;
use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};

fn engine() -> Engine {
    Engine::new(FlagSettings::default(), 1)
}

/// Runs `rounds` reports of a scenario through the engine, one minute apart.
fn run(sc: Scenario, rounds: u64) -> (SiteState, Vec<Event>) {
    let site = SiteProfile::new(0, "s", sc, 1);
    let mut e = engine();
    let mut st = SiteState {
        site: site.site_id.clone(),
        ..Default::default()
    };
    let mut events = Vec::new();
    for round in 0..rounds {
        let t = 1_000_000 + round as i64 * 60_000;
        let r = report(&site, 0, round, round + 1, t);
        events.extend(e.on_report(&mut st, "pc-1", &r, t));
    }
    (st, events)
}

fn flags(st: &SiteState) -> Vec<Flag> {
    st.flags.keys().copied().collect()
}

#[test]
fn an_id_conflict_is_held_then_clears_on_the_collectors_clock() {
    let mut e = engine();
    let mut st = SiteState {
        site: "s".into(),
        ..Default::default()
    };
    let t0 = 10_000_000;
    let ev = e.on_conflict(&mut st, "pc-1", 42, None, t0);
    assert_eq!(ev[0].action, Action::Raised);
    assert!(ev[0].detail.as_deref().unwrap().contains("seq 42"));
    assert_eq!(flags(&st), [Flag::TerminalIdConflict]);
    let hold = e.settings.conflict_hold_ms();
    let none = |_: &str| None;
    assert!(!e.tick_due(&st, t0 + hold - 1, &none));
    assert!(e.on_tick(&mut st, t0 + hold - 1, &none).is_empty());
    assert!(e.tick_due(&st, t0 + hold, &none));
    let ev = e.on_tick(&mut st, t0 + hold, &none);
    assert_eq!(ev[0].action, Action::Cleared);
    assert!(st.flags.is_empty());
}

#[test]
fn healthy_raises_nothing() {
    let (st, events) = run(Scenario::Healthy, 6);
    assert!(events.is_empty(), "{events:?}");
    assert!(st.flags.is_empty());
    assert!(st.authenticated_seen);
    assert_eq!(site_finding(&st), None);
}

#[test]
fn p11019_raises_lineauth_error_with_its_code_after_two_reports() {
    let (st, _) = run(Scenario::P11019, 1);
    assert!(st.flags.is_empty(), "one report is not enough (hysteresis)");
    let (st, events) = run(Scenario::P11019, 3);
    assert_eq!(
        flags(&st),
        vec![Flag::LineauthError, Flag::OqsWebUnreachable]
    );
    assert_eq!(
        st.flags[&Flag::LineauthError].detail.as_deref(),
        Some("P11019")
    );
    assert_eq!(events.len(), 2);
    assert_eq!(site_finding(&st).unwrap().1, Finding::IneligibleLine);
    assert_eq!(st.last_code.as_ref().unwrap().code, "P11019");
}

#[test]
fn dns_table_is_told_apart_from_upstream() {
    let (st, _) = run(Scenario::DnsTable, 3);
    assert_eq!(flags(&st), vec![Flag::DnsFailing]);
    assert_eq!(
        st.flags[&Flag::DnsFailing].detail.as_deref(),
        Some("router_table")
    );
    assert_eq!(site_finding(&st).unwrap().1, Finding::RouterDnsTable);
}

#[test]
fn ipv6_missing_is_one_flag_not_a_cascade() {
    let (st, _) = run(Scenario::Ipv6Missing, 3);
    assert_eq!(flags(&st), vec![Flag::Ipv6Missing]);
    assert_eq!(site_finding(&st).unwrap().1, Finding::Ipv6Missing);
}

#[test]
fn prefix_change_then_reauth_linked_to_it() {
    let (st, events) = run(Scenario::PrefixChange, 4);
    assert_eq!(flags(&st), vec![Flag::ReauthRequired, Flag::PrefixChanged]);
    assert_eq!(st.prefix_history.len(), 1);
    assert_eq!(st.prefix_changes_total, 1);
    let change = events
        .iter()
        .find(|e| e.flag == Flag::PrefixChanged)
        .unwrap();
    let reauth = events
        .iter()
        .find(|e| e.flag == Flag::ReauthRequired)
        .unwrap();
    assert_eq!(reauth.related_event_id, Some(change.id));
    assert!(reauth.at_ms > change.at_ms);
    assert_eq!(site_finding(&st).unwrap().1, Finding::ReauthRequired);
}

#[test]
fn consent_without_prior_authentication_is_not_reauth() {
    // A site whose first ever page is the consent page is a new installation.
    let site = SiteProfile::new(0, "s", Scenario::Consent, 1);
    let mut e = engine();
    let mut st = SiteState::default();
    for round in 1..5 {
        let r = report(&site, 0, round, round, round as i64 * 60_000);
        e.on_report(&mut st, "pc-1", &r, 0);
    }
    assert!(!st.flags.contains_key(&Flag::ReauthRequired));
    let (st, _) = run(Scenario::Consent, 4);
    assert!(st.flags.contains_key(&Flag::ReauthRequired));
}

#[test]
fn flapping_raises_flapping_and_not_ipv6_missing() {
    let (st, _) = run(Scenario::Flapping, 4);
    assert_eq!(flags(&st), vec![Flag::Flapping]);
}

#[test]
fn flags_clear_when_the_condition_ends_and_prefix_hold_expires() {
    let sick = SiteProfile::new(0, "s", Scenario::P11019, 1);
    let well = SiteProfile::new(0, "s", Scenario::Healthy, 1);
    let mut e = engine();
    let mut st = SiteState::default();
    let mut t = 0;
    let mut all = Vec::new();
    for round in 0..3 {
        t += 60_000;
        all.extend(e.on_report(&mut st, "pc", &report(&sick, 0, round, round + 1, t), t));
    }
    assert!(st.flags.contains_key(&Flag::LineauthError));
    t += 60_000;
    all.extend(e.on_report(&mut st, "pc", &report(&well, 0, 3, 4, t), t));
    assert!(
        st.flags.contains_key(&Flag::LineauthError),
        "one good report is not enough (hysteresis)"
    );
    t += 60_000;
    all.extend(e.on_report(&mut st, "pc", &report(&well, 0, 4, 5, t), t));
    assert!(st.flags.is_empty(), "{:?}", st.flags);
    assert_eq!(
        all.iter()
            .filter(|e| e.action == Action::Cleared)
            .map(|e| e.flag)
            .collect::<Vec<_>>(),
        vec![Flag::LineauthError, Flag::OqsWebUnreachable]
    );
    assert_eq!(site_finding(&st), None);

    let (mut st, _) = run(Scenario::PrefixChange, 4);
    let raised = st.flags[&Flag::PrefixChanged].raised_at_ms;
    let hold = e.settings.prefix_changed_hold_ms();
    let evs = e.on_tick(&mut st, raised + hold - 1, &|_| None);
    assert!(evs.is_empty());
    let evs = e.on_tick(&mut st, raised + hold, &|_| None);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].flag, evs[0].action),
        (Flag::PrefixChanged, Action::Cleared)
    );
}

#[test]
fn silence_counts_from_the_collectors_start_and_a_restart_is_no_recovery() {
    let (mut st, _) = run(Scenario::Healthy, 2);
    let mut e = engine();
    // Last heard at 0, every 60 s; the collector was down and listens again from 500 s on.
    e.heard_from_ms = 500_000;
    let seen = |_: &str| Some((0_i64, 60_000_i64));
    assert!(!e.tick_due(&st, 600_000, &seen));
    assert!(
        e.on_tick(&mut st, 680_000, &seen).is_empty(),
        "its grace runs from the start"
    );
    let evs = e.on_tick(&mut st, 680_001, &seen);
    assert_eq!(
        (evs[0].flag, evs[0].action),
        (Flag::AgentSilent, Action::Raised)
    );
    // Silent before another restart: it stays silent, no clear-and-raise.
    e.heard_from_ms = 900_000;
    assert!(!e.tick_due(&st, 900_001, &seen));
    assert!(e.on_tick(&mut st, 900_001, &seen).is_empty());
    assert!(st.flags.contains_key(&Flag::AgentSilent));
}

#[test]
fn silence_is_judged_on_the_interval_and_cleared_by_a_report() {
    let (mut st, _) = run(Scenario::Healthy, 2);
    let mut e = engine();
    // Last seen at 0, reporting every 60 s: silent after 3 intervals.
    let seen = |_: &str| Some((0_i64, 60_000_i64));
    assert!(e.on_tick(&mut st, 180_000, &seen).is_empty());
    let evs = e.on_tick(&mut st, 180_001, &seen);
    assert_eq!(
        (evs[0].flag, evs[0].action),
        (Flag::AgentSilent, Action::Raised)
    );
    let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
    let evs = e.on_report(&mut st, "pc-1", &report(&site, 0, 9, 9, 200_000), 200_000);
    assert_eq!(
        (evs[0].flag, evs[0].action),
        (Flag::AgentSilent, Action::Cleared)
    );
}

#[test]
fn a_second_terminal_following_the_change_is_not_a_second_change() {
    let site = SiteProfile::new(0, "s", Scenario::PrefixChange, 2);
    let mut e = engine();
    let mut st = SiteState::default();
    for round in 0..4 {
        for term in 0..2 {
            let t = 1_000 + round as i64 * 60_000 + term as i64;
            let r = report(&site, term, round, round + 1, t);
            e.on_report(&mut st, &format!("pc-{term}"), &r, t);
        }
    }
    assert_eq!(st.prefix_changes_total, 1);
}

#[test]
fn steady_state_does_not_change_the_state() {
    let (mut st, _) = run(Scenario::Healthy, 5);
    let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
    let before = st.clone();
    let mut e = engine();
    e.on_report(&mut st, "pc-1", &report(&site, 0, 6, 7, 10_000_000), 0);
    assert_eq!(st, before);
    let (mut st, _) = run(Scenario::P11019, 5);
    let before = st.clone();
    let sick = SiteProfile::new(0, "s", Scenario::P11019, 1);
    e.on_report(&mut st, "pc-1", &report(&sick, 0, 6, 7, 10_000_000), 0);
    assert_eq!(
        st.flags, before.flags,
        "a persisting condition writes nothing new"
    );
}

/// A path cut for longer than `late_after_secs`: its replayed reports raise `reports_late` once
/// (not once per report), held `late_hold_secs` after the last late one, then cleared; reports that
/// waited for a collector that was down, or that a clock running behind only seems to make late,
/// raise nothing.
#[test]
fn late_reports_raise_once_are_held_then_clear_and_a_collector_restart_is_not_late() {
    let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
    let mut e = engine();
    let late_after = e.settings.late_after_ms();
    let hold = e.settings.late_hold_ms();
    let mut st = SiteState {
        site: site.site_id.clone(),
        ..Default::default()
    };
    let t0 = 100_000_000;
    // Three hours of rounds, one a minute, all arriving at once when the path is back.
    let back = t0 + 3 * 3_600_000;
    let mut events = Vec::new();
    for round in 0..180u64 {
        let made = t0 + round as i64 * 60_000;
        let r = report(&site, 0, round, round + 1, made);
        events.extend(e.on_report(&mut st, "pc-1", &r, back + round as i64));
    }
    let raised: Vec<_> = events
        .iter()
        .filter(|ev| ev.flag == Flag::ReportsLate)
        .collect();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].action, Action::Raised);
    let detail = raised[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("pc-1") && detail.contains("3.0 h"),
        "{detail}"
    );
    // The last rounds were made within late_after of their arrival: on time.
    let last_late = st.flags.get(&Flag::ReportsLate).unwrap().raised_at_ms;
    assert_eq!(last_late, back + 170);
    // Caught up: on-time reports keep it only until the hold ends.
    let none = |_: &str| None;
    let r = report(&site, 0, 180, 181, last_late + 1000);
    e.on_report(&mut st, "pc-1", &r, last_late + 1500);
    assert!(st.flags.contains_key(&Flag::ReportsLate));
    assert!(!e.tick_due(&st, last_late + hold - 1, &none), "{st:?}");
    assert!(e.tick_due(&st, last_late + hold, &none));
    let ev = e.on_tick(&mut st, last_late + hold, &none);
    assert!(
        ev.iter()
            .any(|ev| ev.flag == Flag::ReportsLate && ev.action == Action::Cleared),
        "{ev:?}"
    );
    assert!(!st.flags.contains_key(&Flag::ReportsLate));

    // Made while the collector was down: counted from its start, not late.
    let mut e = engine();
    let mut st = SiteState {
        site: site.site_id.clone(),
        ..Default::default()
    };
    let start = t0 + 2 * 3_600_000;
    e.heard_from_ms = start;
    let r = report(&site, 0, 0, 1, t0);
    let ev = e.on_report(&mut st, "pc-1", &r, start + 30_000);
    assert!(ev.iter().all(|ev| ev.flag != Flag::ReportsLate), "{ev:?}");
    // A clock two hours behind: the report is as old as its clock says plus the offset.
    let r = report(&site, 0, 1, 2, start + 60_000 - 2 * 3_600_000);
    let ev = e.on_report_with(
        &mut st,
        "pc-1",
        &r,
        start + 61_000,
        Some(ClockSkew::Behind(2 * 3_600_000)),
    );
    assert!(ev.iter().all(|ev| ev.flag != Flag::ReportsLate), "{ev:?}");
    // Just over the threshold is late.
    let r = report(&site, 0, 2, 3, start + 120_000);
    let ev = e.on_report(&mut st, "pc-1", &r, start + 120_000 + late_after + 1);
    assert!(ev.iter().any(|ev| ev.flag == Flag::ReportsLate), "{ev:?}");
}

/// An IPv4 (PPPoE) site: its reports carry no IPv6 state and no portal probe, and its names answer
/// A only. The same reports as the guide's method would raise ipv6_missing and dns_failing; here
/// nothing is raised, the terminal's method is kept, and a name no type answers raises
/// dns_failing with the cause `resolver` (the guide's causes are not told apart off its method).
#[test]
fn a_site_off_the_guides_method_raises_no_ipv6_or_portal_flag() {
    use oqs_proto::v1::RecordType;
    let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
    let pppoe = |round: u64, resolves: bool| {
        let t = 1_000_000 + round as i64 * 60_000;
        let mut r = report(&site, 0, round, round + 1, t);
        r.connection = oqs_proto::v1::ConnectionMethod::Ipv4Pppoe as i32;
        r.ipv6 = None;
        r.lineauth = None;
        r.dns
            .retain(|p| samples::is_system(p) && p.record_type == RecordType::Aaaa as i32);
        for p in std::mem::take(&mut r.dns) {
            let a = oqs_proto::v1::DnsProbe {
                record_type: RecordType::A as i32,
                outcome: if resolves {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                } as i32,
                answers: vec!["10.1.2.3".into()],
                ..p.clone()
            };
            r.dns.push(oqs_proto::v1::DnsProbe {
                outcome: Outcome::Failed as i32,
                answers: Vec::new(),
                ..p
            });
            r.dns.push(a);
        }
        (r, t)
    };
    let mut e = engine();
    let mut st = SiteState {
        site: "s".into(),
        ..Default::default()
    };
    for round in 0..4 {
        let (r, t) = pppoe(round, true);
        let ev = e.on_report(&mut st, "pc-1", &r, t);
        assert!(ev.is_empty(), "{ev:?}");
    }
    assert!(st.flags.is_empty(), "{:?}", flags(&st));
    assert_eq!(site_finding(&st), None);
    assert_eq!(st.terminals["pc-1"].connection, Connection::Ipv4Pppoe);

    for round in 4..7 {
        let (r, t) = pppoe(round, false);
        e.on_report(&mut st, "pc-1", &r, t);
    }
    assert_eq!(flags(&st), vec![Flag::DnsFailing]);
    assert_eq!(
        st.flags[&Flag::DnsFailing].detail.as_deref(),
        Some("resolver")
    );
    assert_eq!(site_finding(&st).unwrap().1, Finding::OffGuideDns);

    // The same reports judged as the guide's method: what the method setting changes.
    let mut e = engine();
    let mut guide = SiteState::default();
    for round in 0..4 {
        let (mut r, t) = pppoe(round, true);
        r.connection = 0;
        e.on_report(&mut guide, "pc-1", &r, t);
    }
    assert!(
        flags(&guide).contains(&Flag::DnsFailing),
        "{:?}",
        flags(&guide)
    );
}
