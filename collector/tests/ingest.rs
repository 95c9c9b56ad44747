//! End-to-end ingest against an in-process collector on loopback: acks mean stored, replays are
//! duplicates, bad input gets the right gRPC status and stores nothing.

mod common;

use common::*;
use oqs_collector::store::{Store, TerminalKey};
use oqs_proto::v1::collector_message::Body as CollectorBody;
use oqs_proto::v1::{AgentMessage, Area};
use tonic::Code;

#[tokio::test]
async fn hundred_reports_are_acked_in_order_and_visible_in_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (mut s, last) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-a", "pc-1")).await;
    assert_eq!(last, 0);
    let sent: Vec<_> = (1..=100).map(report).collect();
    for r in &sent {
        s.send(r.clone()).await;
    }
    for seq in 1..=100 {
        let a = s.ack().await;
        assert_eq!((a.seq, a.duplicate), (seq, false));
    }
    let site = get_json(c.http_addr, "/api/sites/clinic-a").await;
    let t = &site["terminals"][0];
    assert_eq!(t["terminal_id"], "pc-1");
    assert_eq!(t["last_seq"], 100);
    assert_eq!(t["reports_total"], 100);
    assert_eq!(t["connected"], true);
    assert!(t["last_report_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        site["customer_id"], "CAF*******789",
        "customer IDs leave masked"
    );
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["total"], 1);
    assert_eq!(sites["sites"][0]["site_id"], "clinic-a");
    assert_eq!(sites["sites"][0]["terminal_count"], 1);
    assert_eq!(sites["sites"][0]["flags"], serde_json::json!([]));
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(metric(&m, "oqs_reports_ingested_total"), 100.0);
    assert_eq!(metric(&m, "oqs_agents_connected"), 1.0);

    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let site = get_json(c.http_addr, "/api/sites/clinic-a").await;
    assert_eq!(site["terminals"][0]["connected"], false);
    c.stop().await.unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = TerminalKey::new("clinic-a", "pc-1");
    assert_eq!(store.count_reports(&key).unwrap(), 100);
    for r in &sent {
        assert_eq!(
            store
                .report(&key, r.seq)
                .unwrap()
                .as_ref()
                .and_then(|s| s.full()),
            Some(r),
            "seq {}",
            r.seq
        );
    }
}

#[tokio::test]
async fn replays_are_acked_as_duplicates_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let (mut s, _) = AgentStream::hello(ch.clone(), hello("clinic-b", "pc-1")).await;
    for seq in 1..=10 {
        s.send(report(seq)).await;
        s.ack().await;
    }
    drop(s);
    // Reconnect and replay everything, plus two new ones.
    let (mut s, last) = AgentStream::hello(ch, hello("clinic-b", "pc-1")).await;
    assert_eq!(last, 10, "Welcome tells the agent what is already stored");
    for seq in 1..=12 {
        s.send(report(seq)).await;
    }
    for seq in 1..=12 {
        let a = s.ack().await;
        assert_eq!((a.seq, a.duplicate), (seq, seq <= 10));
    }
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(metric(&m, "oqs_reports_duplicate_total"), 10.0);
    assert_eq!(metric(&m, "oqs_reports_ingested_total"), 12.0);
    let site = get_json(c.http_addr, "/api/sites/clinic-b").await;
    assert_eq!(site["terminals"][0]["reports_total"], 12);
    drop(s);
    c.stop().await.unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .count_reports(&TerminalKey::new("clinic-b", "pc-1"))
            .unwrap(),
        12
    );
}

#[tokio::test]
async fn two_terminals_of_one_site_and_two_sites_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    for (site, term) in [("s1", "pc-1"), ("s1", "pc-2"), ("s2", "pc-1")] {
        let (mut s, _) = AgentStream::hello(ch.clone(), hello(site, term)).await;
        for seq in 1..=3 {
            s.send(report(seq)).await;
            assert!(!s.ack().await.duplicate, "{site}/{term} seq {seq}");
        }
    }
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["total"], 2);
    assert_eq!(sites["sites"][0]["terminal_count"], 2);
    assert_eq!(sites["sites"][1]["terminal_count"], 1);
    c.stop().await.unwrap();
}

async fn rejected_total(c: &oqs_collector::server::Running, reason: &str) -> f64 {
    let (_, m) = get(c.http_addr, "/metrics").await;
    metric(
        &m,
        &format!("oqs_reports_rejected_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn a_first_message_that_is_not_hello_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut s = AgentStream::open(channel(c.grpc_addr).await, msg_report(report(1)))
        .await
        .unwrap();
    let (st, _) = s.error().await;
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("must be Hello"), "{}", st.message());
    assert_eq!(rejected_total(&c, "no_hello").await, 1.0);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_protocol_version_is_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut h = hello("s", "t");
    h.protocol_version = 2;
    let mut s = AgentStream::open(channel(c.grpc_addr).await, msg_hello(h))
        .await
        .unwrap();
    let (st, _) = s.error().await;
    assert_eq!(st.code(), Code::FailedPrecondition);
    assert!(
        st.message().contains("protocol_version 2"),
        "{}",
        st.message()
    );
    assert_eq!(rejected_total(&c, "protocol_version").await, 1.0);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn bad_identities_are_invalid_argument_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let mut cases = Vec::new();
    let mut h = hello("bad site", "t");
    cases.push((h.clone(), "site_id"));
    h = hello("s", &"t".repeat(65));
    cases.push((h.clone(), "terminal_id"));
    h = hello("s", "t");
    h.area = Area::West as i32;
    h.customer_id = Some("COP01234567".into());
    cases.push((h.clone(), "customer_id"));
    h = hello("s", "t");
    h.area = 9;
    cases.push((h, "area"));
    for (h, field) in cases {
        let mut s = AgentStream::open(ch.clone(), msg_hello(h)).await.unwrap();
        let (st, _) = s.error().await;
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(st.message().contains(field), "{field}: {}", st.message());
        assert!(
            !st.message().contains("01234567"),
            "no full customer ID in errors"
        );
    }
    assert_eq!(rejected_total(&c, "bad_hello").await, 4.0);
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["total"], 0, "nothing stored for refused streams");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_message_bytes = 4096;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let (mut s, _) = AgentStream::hello(channel(c.grpc_addr).await, hello("s", "t")).await;
    let mut r = report(1);
    r.dns = vec![r.dns[0].clone(); 200];
    s.send(r).await;
    let (st, _) = s.error().await;
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(
        st.message().contains("max_message_bytes = 4096"),
        "{}",
        st.message()
    );
    assert_eq!(rejected_total(&c, "too_large").await, 1.0);
    // Nothing stored: not even the terminal (a Hello alone makes no record).
    let (status, _) = get(c.http_addr, "/api/sites/s").await;
    assert_eq!(status, 404);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn an_invalid_report_is_rejected_by_seq_and_nothing_of_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (mut s, _) = AgentStream::hello(channel(c.grpc_addr).await, hello("s", "t")).await;
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    let mut bad = report(2);
    bad.dns[0].answers = vec!["not an address".into()];
    s.send(bad).await;
    let (st, rejected) = s.error().await;
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message().contains("dns[0].answers[0]"),
        "{}",
        st.message()
    );
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].seq, 2, "the agent learns which report to drop");
    assert_eq!(rejected_total(&c, "invalid_report").await, 1.0);
    let site = get_json(c.http_addr, "/api/sites/s").await;
    assert_eq!(site["terminals"][0]["last_seq"], 1);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn out_of_order_seqs_are_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    // Within a stream.
    let (mut s, _) = AgentStream::hello(ch.clone(), hello("s", "t")).await;
    s.send(report(5)).await;
    assert_eq!(s.ack().await.seq, 5);
    s.send(report(4)).await;
    let (st, rejected) = s.error().await;
    assert_eq!(st.code(), Code::FailedPrecondition);
    assert!(
        st.message().contains("strictly increase"),
        "{}",
        st.message()
    );
    assert_eq!(rejected[0].seq, 4);
    assert_eq!(rejected_total(&c, "out_of_order").await, 1.0);
    c.stop().await.unwrap();
}

/// A second writer under the same ids that jumps ahead in seq (it stored seq 100 while the real
/// agent is at 3) does not get the real agent's good reports refused and dropped: the real
/// agent's seq 4, never stored and below 100, is a `terminal_id_conflict` — the stream ends with
/// the conflict marker and no `Rejected` (the agent keeps it, and sends it again above 100), and
/// the site is flagged.
#[tokio::test]
async fn a_second_writer_jumping_ahead_is_a_conflict_and_the_real_agents_reports_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let (mut a, _) = AgentStream::hello(ch.clone(), hello("clinic-jump", "pc-1")).await;
    for seq in 1..=3 {
        a.send(report(seq)).await;
        assert_eq!(a.ack().await.seq, seq);
    }
    let (mut b, _) = AgentStream::hello(ch.clone(), hello("clinic-jump", "pc-1")).await;
    b.send(report(100)).await;
    assert_eq!(b.ack().await.seq, 100);
    a.send(report(4)).await;
    let (st, rejected) = a.error().await;
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(
        st.metadata().get(oqs_proto::TERMINAL_ID_CONFLICT).is_some(),
        "{st:?}"
    );
    assert!(
        rejected.is_empty(),
        "nothing refused for good: {rejected:?}"
    );
    let site = get_json(c.http_addr, "/api/sites/clinic-jump").await;
    assert!(
        site["flags"].to_string().contains("terminal_id_conflict"),
        "{site}"
    );
    let detail = site["active_flags"].to_string();
    assert!(detail.contains("below seq 100"), "{detail}");
    // Sent again above the other's seqs (as the agent's spool renumbers it), it is stored.
    let (mut a, last) = AgentStream::hello(ch, hello("clinic-jump", "pc-1")).await;
    assert_eq!(last, 100);
    a.send(report(101)).await;
    assert_eq!(a.ack().await.seq, 101);
    c.stop().await.unwrap();
}

/// A seq at the protocol's ceiling or far above the stored one is a damaged counter, not a bad
/// report: the stream ends OUT_OF_RANGE without a `Rejected` (on which an agent drops the
/// report), saying the stored seq to go on from; nothing is stored (a stored seq at the ceiling
/// would leave the terminal nothing to go on with), nothing overflows; a Hello claiming such a
/// seq is refused as a bad Hello.
#[tokio::test]
async fn a_seq_beyond_the_limit_ends_the_stream_without_refusing_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let (mut s, _) = AgentStream::hello(ch.clone(), hello("s", "t")).await;
    s.send(report(7)).await;
    assert_eq!(s.ack().await.seq, 7);
    // Beyond the ceiling, at it, or further above the stored seq than limits.max_seq_jump: a
    // damaged counter. Not stored (the terminal would have no seq left to go on with), no
    // Rejected, and the stream says where to go on from.
    let jump = oqs_collector::config::Limits::default().max_seq_jump;
    for seq in [
        oqs_proto::MAX_SEQ + 1,
        u64::MAX,
        oqs_proto::MAX_SEQ,
        7 + jump + 1,
    ] {
        let (mut s, last) = AgentStream::hello(ch.clone(), hello("s", "t")).await;
        assert_eq!(last, 7);
        let mut r = report(8);
        r.seq = seq;
        s.send(r).await;
        let (st, rejected) = s.error().await;
        assert_eq!(st.code(), Code::OutOfRange, "{seq}: {st:?}");
        assert!(
            st.message().contains("counter is damaged"),
            "{}",
            st.message()
        );
        assert!(rejected.is_empty(), "{seq}: no Rejected: {rejected:?}");
        let restart = st
            .metadata()
            .get(oqs_proto::SEQ_RESTART)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            restart.as_deref(),
            Some("7"),
            "{seq}: go on from the stored seq"
        );
    }
    // The agent goes on from there; a jump of the limit itself is an agent's own.
    let (mut s, last) = AgentStream::hello(ch.clone(), hello("s", "t")).await;
    assert_eq!(last, 7, "nothing of it was stored");
    s.send(report(8)).await;
    assert_eq!(s.ack().await.seq, 8);
    let mut r = report(9);
    r.seq = 8 + jump;
    s.send(r).await;
    assert_eq!(s.ack().await.seq, 8 + jump);
    let mut h = hello("s", "t2");
    h.highest_held_seq = u64::MAX;
    let st = match AgentStream::open(ch, msg_hello(h)).await {
        Err(st) => st,
        Ok(mut s) => s.error().await.0,
    };
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message().contains("highest_held_seq"),
        "{}",
        st.message()
    );
    assert_eq!(rejected_total(&c, "seq_out_of_range").await, 4.0);
    c.stop().await.unwrap();
}

/// A Hello alone writes nothing for a terminal that never stored a report (a peer making up ids
/// cannot grow the store); the first stored report brings the Hello's identity with it.
#[tokio::test]
async fn a_hello_alone_creates_no_terminal_record() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    for i in 0..20 {
        let (s, last) = AgentStream::hello(ch.clone(), hello(&format!("ghost-{i}"), "pc-1")).await;
        assert_eq!(last, 0);
        drop(s);
    }
    let (status, _) = get(c.http_addr, "/api/sites/ghost-3").await;
    assert_eq!(status, 404, "no site from Hellos alone");
    let sites = get_json(c.http_addr, "/api/sites").await;
    assert_eq!(sites["total"], 0, "{sites}");
    // A Hello then a report: the terminal exists, with what the Hello said.
    let (mut s, _) = AgentStream::hello(ch, hello("ghost-3", "pc-1")).await;
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    let site = get_json(c.http_addr, "/api/sites/ghost-3").await;
    assert_eq!(site["terminals"][0]["hostname"], "OQS-PC", "{site}");
    assert_eq!(site["prefecture"], "東京都", "{site}");
    drop(s);
    c.stop().await.unwrap();
    let store = oqs_collector::store::Store::open(dir.path()).unwrap();
    assert_eq!(
        store.terminals().unwrap().len(),
        1,
        "one terminal record, the one that reported"
    );
}

/// A terminal whose clock is days ahead is not refused (the report is fine, the clock is not):
/// its reports are stored, stamped with the time they arrived (the bytes as sent are kept), and
/// the site gets `ntp_skew` saying so.
#[tokio::test]
async fn a_report_from_a_clock_far_ahead_is_stored_at_its_receive_time_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flags.evaluate_every_ms = 100;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let (mut s, _) =
        AgentStream::hello(channel(c.grpc_addr).await, hello("clinic-z", "pc-1")).await;
    let ahead = 3 * 86_400_000; // three days
    let now = oqs_collector::clock::now_ms();
    for seq in 1..=3u64 {
        let mut r = report(seq);
        r.started_at_ms = now + ahead + seq as i64 * 1000 - 200;
        r.finished_at_ms = now + ahead + seq as i64 * 1000;
        s.send(r).await;
        let a = s.ack().await;
        assert_eq!((a.seq, a.duplicate), (seq, false), "stored, not refused");
    }
    let site = get_json(c.http_addr, "/api/sites/clinic-z").await;
    let f: Vec<_> = site["active_flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["flag"] == "ntp_skew")
        .collect();
    assert_eq!(f.len(), 1, "{site}");
    assert!(f[0]["detail"].as_str().unwrap().contains("ahead"), "{site}");
    drop(s);
    c.stop().await.unwrap();
    let store = oqs_collector::store::Store::open(dir.path()).unwrap();
    let key = oqs_collector::store::TerminalKey::new("clinic-z", "pc-1");
    let stored = store.report(&key, 3).unwrap().expect("stored");
    assert!(
        stored.finished_at_ms() < now + 60_000,
        "kept under its receive time, not the terminal's: {}",
        stored.finished_at_ms() - now
    );
}

/// A terminal whose clock is days behind: its Hello's time tells it apart from a spool replayed
/// after days offline (whose reports are old for real). The reports are stored with their own
/// times and the site gets `ntp_skew` saying "behind"; the same old reports from a terminal whose
/// clock is right (a replay) raise nothing.
#[tokio::test]
async fn a_clock_far_behind_is_told_apart_from_a_replay_by_the_hellos_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let behind = 3 * 86_400_000; // three days
    let now = oqs_collector::clock::now_ms();
    for (site, hello_time) in [("clinic-late", now - behind), ("clinic-replay", now)] {
        let mut h = hello(site, "pc-1");
        h.agent_time_ms = hello_time;
        let (mut s, _) = AgentStream::hello(channel(c.grpc_addr).await, h).await;
        for seq in 1..=3u64 {
            let mut r = report(seq);
            r.started_at_ms = now - behind + seq as i64 * 1000 - 200;
            r.finished_at_ms = now - behind + seq as i64 * 1000;
            s.send(r).await;
            let a = s.ack().await;
            assert_eq!((a.seq, a.duplicate), (seq, false), "{site}: stored");
        }
        drop(s);
    }
    let skew = |site: serde_json::Value| -> Vec<String> {
        site["active_flags"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["flag"] == "ntp_skew")
            .map(|f| f["detail"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let late = skew(get_json(c.http_addr, "/api/sites/clinic-late").await);
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(late[0].contains("72.0 h behind"), "{late:?}");
    let replay = skew(get_json(c.http_addr, "/api/sites/clinic-replay").await);
    assert!(
        replay.is_empty(),
        "a replay of old reports is not a clock fault: {replay:?}"
    );
    // The event window goes by the collector's clock: what the late terminal just said is in the
    // last day's events although its own times are three days old.
    let events = get_json(c.http_addr, "/api/events?site=clinic-late").await;
    let raised: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["flag"] == "ntp_skew" && e["action"] == "raised")
        .collect();
    assert_eq!(raised.len(), 1, "{events}");
    assert!(raised[0]["at_ms"].as_i64().unwrap() < now - behind + 10_000);
    // Its history is drawn where it happened (the Hello's offset), so the last day's chart shows
    // it; the replay's history stays three days back, where it happened for real.
    let late = get_json(c.http_addr, "/api/sites/clinic-late/history?check=ipv6").await;
    let points: Vec<_> = late["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] != "carried")
        .collect();
    assert_eq!(points.len(), 3, "{late}");
    for p in points {
        let at = p["at_ms"].as_i64().unwrap();
        let received = p["received_ms"].as_i64().unwrap();
        assert!(at <= received && received - at < 60_000, "{late}");
    }
    let replay = get_json(c.http_addr, "/api/sites/clinic-replay/history?check=ipv6").await;
    let kinds: Vec<&str> = replay["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["carried"],
        "only the state in force from then: {replay}"
    );
    let from = now - behind - 60_000;
    let replay = get_json(
        c.http_addr,
        &format!("/api/sites/clinic-replay/history?check=ipv6&from={from}"),
    )
    .await;
    let points = replay["points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{replay}");
    assert_eq!(points[0]["at_ms"].as_i64().unwrap(), now - behind + 1000);
    c.stop().await.unwrap();
}

/// Two machines with the same ids: a different report under a stored seq is not a "duplicate"
/// (that means the same report, byte for byte): the stream ends FAILED_PRECONDITION with the
/// conflict marker and no `Rejected` (the agent keeps its report), and the site is flagged
/// `terminal_id_conflict`; the same report sent again is still a duplicate.
#[tokio::test]
async fn another_machines_report_under_a_stored_seq_is_a_conflict_not_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let (mut a, _) = AgentStream::hello(ch.clone(), hello("clinic-twin", "pc-1")).await;
    let sent: Vec<_> = (1..=3).map(report).collect();
    for r in &sent {
        a.send(r.clone()).await;
        assert!(!a.ack().await.duplicate);
    }
    // The same report again (a retry after a lost ack): a duplicate.
    let (mut again, last) = AgentStream::hello(ch.clone(), hello("clinic-twin", "pc-1")).await;
    assert_eq!(last, 3);
    again.send(sent[1].clone()).await;
    assert!(again.ack().await.duplicate);
    drop(again);
    // Another machine's seq 2: another round, another time.
    let (mut b, _) = AgentStream::hello(ch, hello("clinic-twin", "pc-1")).await;
    let mut other = report(2);
    other.started_at_ms += 7_000;
    other.finished_at_ms += 7_000;
    b.send(other).await;
    let (st, rejected) = b.error().await;
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(st.message().contains("two machines"), "{}", st.message());
    assert!(st.metadata().get(oqs_proto::TERMINAL_ID_CONFLICT).is_some());
    assert!(
        rejected.is_empty(),
        "the agent keeps its report: {rejected:?}"
    );
    let site = get_json(c.http_addr, "/api/sites/clinic-twin").await;
    assert!(
        site["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "terminal_id_conflict"),
        "{site}"
    );
    assert_eq!(
        site["terminals"][0]["reports_total"], 3,
        "nothing of the other machine stored"
    );
    assert_eq!(rejected_total(&c, "terminal_id_conflict").await, 1.0);
    drop(a);
    c.stop().await.unwrap();
}

/// More DNS answers or addresses than the limits is the network's doing, not a bad report: the
/// report is stored with the first ones and the rest counted; the Welcome says the limits so an
/// agent can cut its lists itself.
#[tokio::test]
async fn long_lists_are_cut_to_the_limits_and_the_report_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.max_list_items = 8;
    cfg.limits.max_addresses = 4;
    let c = oqs_collector::server::start(cfg).await.unwrap();
    let ch = channel(c.grpc_addr).await;
    let mut s = AgentStream::open(ch, msg_hello(hello("clinic-big", "pc-1")))
        .await
        .unwrap();
    let welcome = match s.next().await {
        Ok(Some(CollectorBody::Welcome(w))) => w,
        other => panic!("expected Welcome, got {other:?}"),
    };
    assert_eq!((welcome.max_list_items, welcome.max_addresses), (8, 4));
    let mut r = report(1);
    r.dns[0].answers = (0..30).map(|i| format!("2408:210:9c0::{i:x}")).collect();
    let a = r.ipv6.as_ref().unwrap().addresses[0].clone();
    r.ipv6.as_mut().unwrap().addresses = vec![a; 6];
    s.send(r).await;
    let ack = s.ack().await;
    assert_eq!((ack.seq, ack.duplicate), (1, false), "stored, not refused");
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(metric(&m, "oqs_report_items_trimmed_total"), 22.0 + 2.0);
    drop(s);
    c.stop().await.unwrap();
    let store = oqs_collector::store::Store::open(dir.path()).unwrap();
    let key = oqs_collector::store::TerminalKey::new("clinic-big", "pc-1");
    match store.report(&key, 1).unwrap() {
        Some(oqs_collector::store::StoredReport::Full(r)) => {
            assert_eq!(r.dns[0].answers.len(), 8);
            assert_eq!(
                r.dns[0].answers[0], "2408:210:9c0::0",
                "the first ones kept"
            );
            assert_eq!(r.ipv6.unwrap().addresses.len(), 4);
        }
        other => panic!("stored whole: {other:?}"),
    }
}

/// A collector restored from an older copy of its data directory is told by the agents: a Hello
/// saying more was acknowledged than the store holds is counted, logged and flags the site.
#[tokio::test]
async fn a_store_behind_what_it_acknowledged_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let (mut s, _) = AgentStream::hello(ch.clone(), hello("clinic-r", "pc-1")).await;
    for seq in 1..=3 {
        s.send(report(seq)).await;
        s.ack().await;
    }
    drop(s);
    // The agent was acknowledged up to 9 (by the collector before its restore).
    let mut h = hello("clinic-r", "pc-1");
    h.highest_acked_seq = 9;
    let (s, last) = AgentStream::hello(ch.clone(), h).await;
    assert_eq!(last, 3);
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(metric(&m, "oqs_store_lost_acked_reports_total"), 6.0);
    let site = get_json(c.http_addr, "/api/sites/clinic-r").await;
    let f: Vec<_> = site["active_flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["flag"] == "store_lost_reports")
        .collect();
    assert_eq!(f.len(), 1, "{site}");
    assert!(f[0]["detail"]
        .as_str()
        .unwrap()
        .contains("6 acknowledged reports lost"));
    drop(s);
    // An agent that says what is true raises nothing.
    let mut h = hello("clinic-r", "pc-2");
    h.highest_acked_seq = 0;
    let (_s2, _) = AgentStream::hello(ch, h).await;
    let (_, m) = get(c.http_addr, "/metrics").await;
    assert_eq!(metric(&m, "oqs_store_lost_acked_reports_total"), 6.0);
    c.stop().await.unwrap();
}

/// A message whose bytes are not a valid `AgentMessage`: field 1 (Hello) carries garbage.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(bytes = "vec", tag = "1")]
    hello: Vec<u8>,
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut grpc = tonic::client::Grpc::new(channel(c.grpc_addr).await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Garbage, oqs_proto::v1::CollectorMessage>::default();
    let req = tonic::Request::new(tokio_stream::iter(vec![Garbage {
        hello: vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x02],
    }]));
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/oqs.fleet.v1.FleetIngest/Connect");
    let st = match grpc.streaming(req, path, codec).await {
        Err(st) => st,
        Ok(resp) => {
            let mut rx = resp.into_inner();
            loop {
                match rx.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("stream ended without an error"),
                    Err(st) => break st,
                }
            }
        }
    };
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("malformed"), "{}", st.message());
    assert_eq!(rejected_total(&c, "malformed").await, 1.0);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_message_kinds_from_newer_agents_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (mut s, _) = AgentStream::hello(channel(c.grpc_addr).await, hello("s", "t")).await;
    s.tx.send(AgentMessage { body: None }).await.unwrap();
    s.send(report(1)).await;
    assert_eq!(s.ack().await.seq, 1);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let ch = channel(c.grpc_addr).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "oqs.fleet.v1.FleetIngest".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut refl = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut rx = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = rx.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"oqs.fleet.v1.FleetIngest"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn api_answers_404_for_unknown_sites_and_400_for_bad_ids() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (st, body) = get(c.http_addr, "/api/sites/nobody").await;
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("never reported"));
    let (st, body) = get(c.http_addr, "/api/sites/bad%20id").await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("site_id"));
    let (st, body) = get(c.http_addr, "/healthz").await;
    assert_eq!((st, body.trim()), (200, "ok"));
    let (st, body) = get(c.http_addr, "/").await;
    assert_eq!(st, 200);
    assert!(body.contains("/api/sites"));
    c.stop().await.unwrap();
}

#[tokio::test]
async fn welcome_is_the_first_answer_to_hello() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut s = AgentStream::open(channel(c.grpc_addr).await, msg_hello(hello("s", "t")))
        .await
        .unwrap();
    assert!(matches!(
        s.next().await,
        Ok(Some(CollectorBody::Welcome(_)))
    ));
    c.stop().await.unwrap();
}
