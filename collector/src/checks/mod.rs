//! Each check kind of a report in one place: its validation (what a report's part must look like
//! to be stored), its list trimming (to the limits a Welcome advertises), and its sample (what the
//! history and the metrics follow). One module per kind, as the agent has; the envelope (seq,
//! times) stays in [`crate::validate`] and the flag engine in [`crate::flags`].
//!
//! Adding a check kind: its catalogue entry ([`crate::catalog`]), its module here, and one arm in
//! [`sample`] (the compiler asks for it). Pure: must never decide flags or store anything.

pub mod certs;
pub mod crl;
pub mod dns;
pub mod http;
pub mod ipv6;
pub mod lineauth;
pub mod ntp;
pub mod oqs_web;

use crate::catalog::Check;
use crate::config::Limits;
use crate::samples::Sample;
use oqs_proto::v1::{self, Outcome, Report};
use oqs_proto::wire_name;
use serde_json::{json, Value};

/// Every part of a report against the limits; the message names the field.
pub fn validate(r: &Report, l: &Limits) -> Result<(), String> {
    ipv6::validate(r, l)?;
    dns::validate(r, l)?;
    lineauth::validate(r, l)?;
    http::validate(r, l)?;
    ntp::validate(r, l)?;
    certs::validate(r, l)
}

/// Keeps the first `limits.max_addresses` addresses and the first `limits.max_list_items` items
/// of every other list; returns how many were dropped.
pub fn trim(r: &mut Report, l: &Limits) -> u64 {
    ipv6::trim(r, l) + dns::trim(r, l)
}

/// The check's sample of a report, `None` when the report does not carry the check.
pub fn sample(check: Check, r: &Report) -> Option<Sample> {
    match check {
        Check::Ipv6 => ipv6::sample(r),
        Check::Dns => dns::sample(r),
        Check::Lineauth => lineauth::sample(r),
        Check::OqsWeb => oqs_web::sample(r),
        Check::Crl => crl::sample(r),
        Check::Ntp => ntp::sample(r),
        Check::Certs => certs::sample(r),
    }
}

/// What a check's chart draws of a point, in force at that point: the last full detail (a first
/// or change point's) with the point's own values over it (a keyframe carries only what varies:
/// latencies, offsets, errors). Small whatever the report was: the history API answers this per
/// point, never the detail itself (`GET …/history/point` gives one point whole).
pub fn chart_state(check: Check, full: Option<&Value>, own: &Value) -> Value {
    let Some(full) = full else {
        return Value::Null;
    };
    match check {
        Check::Ipv6 => ipv6::chart(full),
        Check::Dns => dns::chart(full, own),
        Check::Lineauth => lineauth::chart(full),
        Check::OqsWeb | Check::Crl | Check::Ntp | Check::Certs => json!({}),
    }
}

// ---- validation helpers ----

/// A free text: at most `max` characters, no control characters but newline and tab.
pub(crate) fn text(field: &str, s: &str, max: usize) -> Result<(), String> {
    let n = s.chars().count();
    if n > max {
        return Err(format!("{field} is {n} characters; the limit is {max}"));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(format!("{field} contains control characters"));
    }
    Ok(())
}

fn count(field: &str, n: usize, max: usize) -> Result<(), String> {
    if n > max {
        return Err(format!("{field} has {n} entries; the limit is {max}"));
    }
    Ok(())
}

fn ipv6_addr(field: &str, s: &str) -> Result<(), String> {
    s.parse::<std::net::Ipv6Addr>()
        .map(|_| ())
        .map_err(|_| format!("{field} = {s:?} is not an IPv6 address"))
}

fn ip(field: &str, s: &str) -> Result<(), String> {
    s.parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("{field} = {s:?} is not an IP address"))
}

fn outcome(field: &str, v: i32) -> Result<(), String> {
    match v1::Outcome::try_from(v) {
        Ok(v1::Outcome::Unspecified) | Err(_) => Err(format!(
            "{field}.outcome is {v}; it must be ok (1), failed (2) or timed out (3)"
        )),
        Ok(_) => Ok(()),
    }
}

fn keep<T>(v: &mut Vec<T>, max: usize) -> u64 {
    let extra = v.len().saturating_sub(max);
    v.truncate(max);
    extra as u64
}

// ---- sample helpers ----

fn is_ok(o: i32) -> bool {
    o == Outcome::Ok as i32
}

/// The worst outcome of several probes: any timeout, else any failure, else ok.
fn worst(outcomes: impl Iterator<Item = i32>) -> i32 {
    let mut w = Outcome::Ok as i32;
    for o in outcomes {
        if o == Outcome::TimedOut as i32 {
            return o;
        }
        if o != Outcome::Ok as i32 {
            w = Outcome::Failed as i32;
        }
    }
    w
}

fn fnv1a(v: &Value) -> u64 {
    let text = v.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A sample from what matters (`sig`, signed) and what varies (`extra`: latencies, errors).
fn sample_of(check: Check, outcome: i32, latency_ms: u32, sig: Value, extra: Value) -> Sample {
    let signature = fnv1a(&json!([wire_name!(Outcome, outcome), &sig]));
    let mut detail = sig;
    if let (Some(d), Value::Object(e)) = (detail.as_object_mut(), extra.clone()) {
        d.extend(e);
    }
    Sample {
        check,
        ok: is_ok(outcome),
        outcome: wire_name!(Outcome, outcome),
        latency_ms,
        detail,
        volatile: extra,
        signature,
    }
}
