//! What each check of one report says, reduced to what the NOC follows over time: the check's
//! outcome, a latency, a small JSON detail, and a signature of everything in the detail that
//! matters (latencies, offsets and free-text errors excluded) so that "nothing changed" is a
//! comparison of two numbers.
//!
//! Each kind's sample is built in its own module under [`crate::checks`]; this is the type and the
//! walk over every kind. Pure: a report in, samples out. Must never decide flags (that is `flags`)
//! or store anything.

use oqs_proto::v1::Report;
use serde_json::Value;

pub use crate::catalog::Check;

/// One check of one report.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub check: Check,
    pub ok: bool,
    /// `ok`, `failed`, `timed_out`.
    pub outcome: String,
    /// The check's latency (the slowest probe of the check).
    pub latency_ms: u32,
    /// What the check found, with per-probe latencies.
    pub detail: Value,
    /// The part of `detail` that varies from sample to sample (latencies, offsets, errors).
    pub volatile: Value,
    /// FNV-1a of the detail without latencies, offsets and error texts.
    pub signature: u64,
}

pub use crate::checks::dns::is_system;
pub use crate::checks::ipv6::{global_addresses, line_prefix, slash64};

/// Every check present in `r`, in [`Check::ALL`] order.
pub fn samples(r: &Report) -> Vec<Sample> {
    Check::ALL
        .into_iter()
        .filter_map(|c| crate::checks::sample(c, r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_fleet_sim::scenario::{report, Scenario, SiteProfile};

    #[test]
    fn check_names_round_trip_and_errors_list_them() {
        for c in Check::ALL {
            assert_eq!(Check::parse(c.as_str()), Ok(c));
        }
        assert!(Check::parse("dnss").unwrap_err().contains("oqs_web"));
    }

    #[test]
    fn a_healthy_report_has_every_check() {
        let site = SiteProfile::new(0, "s", Scenario::Healthy, 1);
        let s = samples(&report(&site, 0, 0, 1, 1_000));
        let kinds: Vec<_> = s.iter().map(|s| s.check).collect();
        assert_eq!(kinds, Check::ALL.to_vec());
        assert!(s.iter().all(|s| s.ok), "{s:?}");
    }

    #[test]
    fn latency_jitter_and_temporary_rotation_keep_the_signature() {
        let site = SiteProfile::new(3, "s", Scenario::Healthy, 1);
        // Rounds 0 and 30 differ in every latency and in the temporary address (it rotates every
        // 24 rounds in the simulator).
        let a = samples(&report(&site, 0, 0, 1, 1_000));
        let b = samples(&report(&site, 0, 30, 31, 1_000_000));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.signature, y.signature, "{:?}", x.check);
        }
        assert_ne!(a[1].detail, b[1].detail, "latencies are in the detail");
    }

    #[test]
    fn a_prefix_change_changes_the_ipv6_signature_only_there() {
        let site = SiteProfile::new(0, "s", Scenario::PrefixChange, 1);
        let a = samples(&report(&site, 0, 0, 1, 1_000));
        let b = samples(&report(&site, 0, 5, 6, 2_000));
        assert_ne!(a[0].signature, b[0].signature);
        assert_eq!(
            a[1].signature, b[1].signature,
            "dns answers do not depend on the prefix"
        );
        assert_ne!(
            line_prefix(&report(&site, 0, 0, 1, 1)),
            line_prefix(&report(&site, 0, 5, 6, 1))
        );
    }
}
