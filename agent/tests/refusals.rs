//! What `oqs-agent run` does when the collector says no (issue "true alarms", items 7–9): a
//! refused report is kept and sent again after a back-off, and set aside (quarantined, counted,
//! reported) only after repeated refusals, so a refusal of what the agent itself builds never
//! deletes report after report; an update that fails the agent's own checks is refused, the old
//! settings kept and the refusal reported; a collector that says the agent's counter is damaged
//! gets the held reports from its stored seq on; a collector that takes the stream and never
//! answers is given up after the ack timeout and connected to again. All probes point at
//! loopback.

mod common;

use common::fake_collector::{FakeCollector, Script, REASON};
use common::{start_agent, write_config};
use oqs_proto::v1::ConfigUpdate;

/// An agent config for the fake collector, retrying a refused report after 1–2 s.
fn config(tmp: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = tmp.join("agent.toml");
    write_config(
        &path,
        "clinic-r",
        url,
        "refused_retry_min_secs = 1\nrefused_retry_max_secs = 2",
        &tmp.join("spool"),
        1,
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_report_is_kept_sent_again_and_set_aside_only_after_repeated_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    // Seq 2 refused twice, then taken: nothing is lost.
    let fake = FakeCollector::start(Script {
        refuse: [(2, 2)].into(),
        ..Default::default()
    })
    .await;
    let cfg = config(tmp.path(), &format!("http://{}", fake.addr));
    let agent = start_agent(&cfg);
    assert!(
        fake.until(30, |s| s.stored.contains_key(&2) && s.stored.len() >= 4)
            .await,
        "seq 2 stored after its refusals: {:?}",
        fake.script.lock().unwrap().received
    );
    {
        let s = fake.script.lock().unwrap();
        assert_eq!(
            s.received.iter().filter(|q| **q == 2).count(),
            3,
            "{:?}",
            s.received
        );
        let seqs: Vec<u64> = s.stored.keys().copied().collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "none missing"
        );
        // The reports after the refusals say what the collector refused.
        let last = s.stored.values().next_back().unwrap();
        let note = last.agent.as_ref().expect("the agent's state");
        assert_eq!(note.last_refusal, REASON);
        assert_eq!(note.quarantined_total, 0);
    }
    drop(agent);

    // A report refused again and again (seq 3, five times): set aside after three refusals
    // (kept on disk, counted), and the reports after it go; none of them is lost.
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeCollector::start(Script {
        refuse: [(3, 5)].into(),
        ..Default::default()
    })
    .await;
    let cfg = config(tmp.path(), &format!("http://{}", fake.addr));
    let _agent = start_agent(&cfg);
    // Reports carry the agent's state as of their round: one made after the quarantine says so.
    assert!(
        fake.until(40, |s| s.stored.values().any(|r| r
            .agent
            .as_ref()
            .is_some_and(|a| a.quarantined_total == 1)))
            .await,
        "the reports after the refused one go, and say one was set aside: {:?}",
        fake.script.lock().unwrap().received
    );
    let s = fake.script.lock().unwrap();
    assert!(!s.stored.contains_key(&3), "never taken");
    assert_eq!(
        s.received.iter().filter(|q| **q == 3).count(),
        3,
        "tried three times, then set aside: {:?}",
        s.received
    );
    let seqs: Vec<u64> = s.stored.keys().copied().collect();
    let expected: Vec<u64> = (1..=*seqs.last().unwrap()).filter(|q| *q != 3).collect();
    assert_eq!(
        seqs, expected,
        "everything but the set-aside one, none lost"
    );
    let kept = tmp
        .path()
        .join("spool")
        .join(format!("{:020}.quarantined", 3));
    assert!(kept.exists(), "kept on the terminal for an engineer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_fails_the_agents_checks_is_refused_kept_out_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    // What a real collector refuses at its API (a pasted CR), and nine NTP servers.
    let fake = FakeCollector::start(Script {
        config_update: Some(ConfigUpdate {
            lineauth_url: "https://www.lineauth.mnw\r".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let cfg = config(tmp.path(), &format!("http://{}", fake.addr));
    let _agent = start_agent(&cfg);
    assert!(
        fake.until(20, |s| s.stored.values().any(|r| r
            .agent
            .as_ref()
            .is_some_and(|a| !a.config_refused.is_empty())))
            .await,
        "the refusal is reported"
    );
    let s = fake.script.lock().unwrap();
    let refused = s
        .stored
        .values()
        .find_map(|r| r.agent.as_ref().filter(|a| !a.config_refused.is_empty()))
        .unwrap();
    assert!(
        refused.config_refused.contains("lineauth_url"),
        "{}",
        refused.config_refused
    );
    // The settings stayed: every report's portal probe went to the configured URL.
    for r in s.stored.values() {
        let url = &r.lineauth.as_ref().unwrap().url;
        assert_eq!(url, "https://127.0.0.1:1/", "seq {}", r.seq);
    }
}

/// A spool whose counter was damaged (its state file says a seq near the ceiling): the real
/// collector stores none of it and says where to go on from; the agent renumbers what it holds
/// and every round arrives, from seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_counter_goes_on_from_the_collectors_stored_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = oqs_collector::server::start(common::collector_config(tmp.path()))
        .await
        .unwrap();
    let spool = tmp.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(
        spool.join("state"),
        format!("{} 0\n", oqs_proto::MAX_SEQ - 2),
    )
    .unwrap();
    let path = tmp.path().join("agent.toml");
    write_config(
        &path,
        "clinic-seq",
        &format!("http://{}", collector.grpc_addr),
        "",
        &spool,
        1,
    );
    let _agent = start_agent(&path);
    let site = common::wait_site(collector.http_addr, "clinic-seq", 30, |v| {
        v["terminals"][0]["last_seq"].as_u64().unwrap_or(0) >= 4
    })
    .await;
    let t = &site["terminals"][0];
    let last = t["last_seq"].as_u64().unwrap();
    assert!((4..1000).contains(&last), "{site}");
    assert_eq!(
        t["reports_total"], last,
        "every seq from 1, none lost: {site}"
    );
    collector.stop().await.unwrap();
}

/// A collector (or a box on the way) that takes the stream and never sends its Welcome: the agent
/// gives the stream up after its ack timeout (three intervals, at least 10 s) and connects again;
/// the next stream is welcomed and every report arrives, from seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_welcome_is_given_up_and_opened_again() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeCollector::start(Script {
        silent_streams: 1,
        ..Default::default()
    })
    .await;
    let cfg = config(tmp.path(), &format!("http://{}", fake.addr));
    let _agent = start_agent(&cfg);
    let done = fake
        .until(40, |s| s.hellos >= 2 && s.stored.len() >= 3)
        .await;
    let s = fake.script.lock().unwrap();
    assert!(
        done,
        "a second stream, welcomed, carries the reports: hellos {}, stored {:?}",
        s.hellos,
        s.stored.keys().collect::<Vec<_>>()
    );
    let seqs: Vec<u64> = s.stored.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "none lost"
    );
}
