//! The per-site, per-terminal and per-check metric families, written at scrape time from compact
//! state instead of being kept as hundreds of thousands of registry children (a fleet of 10,000
//! terminals has about 300,000 such series; as registry children they cost hundreds of MB).
//!
//! Families: `oqs_check_success` and `oqs_check_duration_seconds` {site, terminal, check},
//! `oqs_site_flag` {site, flag}, `oqs_site_flag_detail` {site, flag, detail} (only for a raised
//! flag), `oqs_site_diagnosis_step` {site}, `oqs_ipv6_prefix_changes_total` {site},
//! `oqs_lineauth_code_total` {site, code}, `oqs_agent_last_report_timestamp_seconds`
//! {site, terminal}, `oqs_agent_info` {site, terminal, version, os},
//! `oqs_agent_newest_version_info` {version} (`inventory.rs` bounds both labels) and
//! `oqs_site_info` {site, site_name, prefecture, area} (the alerts' `site_name`; the name is the
//! one free text here: one series per site, escaped). Labels are validated ids and fixed names: never an address or free text.
//! Must never be written by anything but the committer after a durable batch.

use crate::flags::{self, Flag};
use crate::samples::Check;
use crate::view::FleetView;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, RwLock};

/// One terminal's latest check results and report time.
#[derive(Debug, Clone, Default)]
struct TerminalMetrics {
    /// Per [`Check::ALL`] index: (passed, latency ms) of the latest report that had the check.
    checks: [Option<(bool, u32)>; Check::ALL.len()],
    last_report_ms: i64,
    /// The agent's version as a label (interned: a fleet runs a handful) and its OS family.
    version: Option<Arc<str>>,
    os: &'static str,
}

#[derive(Default)]
struct Inner {
    terminals: BTreeMap<(String, String), TerminalMetrics>,
    /// Reports with a portal code since the collector started, by (site, code label).
    codes: BTreeMap<(String, String), u64>,
    known_codes: Vec<String>,
    versions: std::collections::BTreeSet<Arc<str>>,
    /// Per site: its name, prefecture and area as its agents' Hellos say.
    sites: BTreeMap<String, SiteInfo>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct SiteInfo {
    name: String,
    prefecture: String,
    area: &'static str,
}

/// A label value in the exposition format's escaping.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Shared, cheap to clone.
#[derive(Clone, Default)]
pub struct FleetMetrics {
    // A std lock: held for a map update or one render, never across an await.
    inner: Arc<RwLock<Inner>>,
}

fn check_index(c: Check) -> usize {
    Check::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

impl FleetMetrics {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The portal codes that get their own `code`/`detail` label (others are `other`).
    pub fn set_known_codes(&self, codes: Vec<String>) {
        self.write().known_codes = codes;
    }

    /// A stored report's checks.
    pub fn record(&self, site: &str, terminal: &str, checks: &[(Check, bool, u32)], now_ms: i64) {
        let mut g = self.write();
        let t = g
            .terminals
            .entry((site.to_owned(), terminal.to_owned()))
            .or_default();
        for (c, ok, latency) in checks {
            t.checks[check_index(*c)] = Some((*ok, *latency));
        }
        t.last_report_ms = now_ms;
    }

    /// A terminal's last report time, as loaded from the store at start.
    pub fn set_last_report(&self, site: &str, terminal: &str, ms: i64) {
        self.write()
            .terminals
            .entry((site.to_owned(), terminal.to_owned()))
            .or_default()
            .last_report_ms = ms;
    }

    /// The agent version and OS a terminal's Hello said.
    pub fn set_agent(&self, site: &str, terminal: &str, version: &str, os: &str) {
        let label = crate::inventory::version_label(version);
        let family = crate::inventory::os_family(os);
        let mut g = self.write();
        let interned = match g.versions.get(label) {
            Some(v) => v.clone(),
            None => {
                let v: Arc<str> = Arc::from(label);
                g.versions.insert(v.clone());
                v
            }
        };
        let t = g
            .terminals
            .entry((site.to_owned(), terminal.to_owned()))
            .or_default();
        t.version = Some(interned);
        t.os = family;
    }

    /// A site's name, prefecture and area (empty texts: not said).
    pub fn set_site(&self, site: &str, name: &str, prefecture: &str, area: &'static str) {
        let mut g = self.write();
        let same = g
            .sites
            .get(site)
            .is_some_and(|i| i.name == name && i.prefecture == prefecture && i.area == area);
        if !same {
            let info = SiteInfo {
                name: name.to_owned(),
                prefecture: prefecture.to_owned(),
                area,
            };
            g.sites.insert(site.to_owned(), info);
        }
    }

    /// One report showing a portal code (already reduced to its label).
    pub fn count_code(&self, site: &str, code_label: &str) {
        *self
            .write()
            .codes
            .entry((site.to_owned(), code_label.to_owned()))
            .or_insert(0) += 1;
    }

    /// Appends the families in Prometheus text format.
    pub fn render(&self, view: &FleetView, out: &mut String) {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut sites = view.all();
        sites.sort_by(|a, b| a.site.cmp(&b.site));
        let label = |c: &str| -> String {
            if g.known_codes.iter().any(|k| k == c) {
                c.to_owned()
            } else {
                "other".to_owned()
            }
        };
        // Writing to a String cannot fail.
        let _ = (|| -> std::fmt::Result {
            let help = format!(
                "1 when the check passed on the terminal's latest report, else 0. check: {}.",
                Check::names()
            );
            header(out, "oqs_check_success", "gauge", &help)?;
            for ((site, term), t) in &g.terminals {
                for (i, c) in Check::ALL.iter().enumerate() {
                    if let Some((ok, _)) = t.checks[i] {
                        writeln!(out, "oqs_check_success{{check=\"{}\",site=\"{site}\",terminal=\"{term}\"}} {}", c.as_str(), u8::from(ok))?;
                    }
                }
            }
            header(
                out,
                "oqs_check_duration_seconds",
                "gauge",
                "How long the check took on the terminal's latest report (its slowest probe).",
            )?;
            for ((site, term), t) in &g.terminals {
                for (i, c) in Check::ALL.iter().enumerate() {
                    if let Some((_, ms)) = t.checks[i] {
                        writeln!(out, "oqs_check_duration_seconds{{check=\"{}\",site=\"{site}\",terminal=\"{term}\"}} {}", c.as_str(), f64::from(ms) / 1000.0)?;
                    }
                }
            }
            header(
                out,
                "oqs_agent_last_report_timestamp_seconds",
                "gauge",
                "When the collector last stored a report of the terminal (Unix seconds).",
            )?;
            for ((site, term), t) in &g.terminals {
                if t.last_report_ms > 0 {
                    writeln!(out, "oqs_agent_last_report_timestamp_seconds{{site=\"{site}\",terminal=\"{term}\"}} {}", t.last_report_ms as f64 / 1000.0)?;
                }
            }
            header(
                out,
                "oqs_agent_info",
                "gauge",
                "1 for each terminal, labelled with its agent's version and OS family (windows, \
                 linux, other): version drift is count by (version) (oqs_agent_info).",
            )?;
            for ((site, term), t) in &g.terminals {
                if let Some(v) = &t.version {
                    writeln!(out, "oqs_agent_info{{os=\"{}\",site=\"{site}\",terminal=\"{term}\",version=\"{v}\"}} 1", t.os)?;
                }
            }
            header(
                out,
                "oqs_site_info",
                "gauge",
                "1 for each site its agents introduced, labelled with its name, prefecture and area \
                 (east, west) as their Hellos say: for joins and the alerts' site_name.",
            )?;
            for (site, i) in &g.sites {
                writeln!(
                    out,
                    "oqs_site_info{{area=\"{}\",prefecture=\"{}\",site=\"{site}\",site_name=\"{}\"}} 1",
                    i.area,
                    escape(&i.prefecture),
                    escape(&i.name)
                )?;
            }
            let in_use = g.terminals.values().filter_map(|t| t.version.as_deref());
            if let Some(newest) = crate::inventory::newest(in_use) {
                header(
                    out,
                    "oqs_agent_newest_version_info",
                    "gauge",
                    "1, labelled with the newest agent version among the terminals: those that \
                     lag are oqs_agent_info unless on (version) oqs_agent_newest_version_info.",
                )?;
                writeln!(
                    out,
                    "oqs_agent_newest_version_info{{version=\"{newest}\"}} 1"
                )?;
            }
            let help = format!(
                "1 while the flag is raised for the site, else 0. flag: {}.",
                Flag::names()
            );
            header(out, "oqs_site_flag", "gauge", &help)?;
            for st in &sites {
                for f in Flag::ALL {
                    writeln!(
                        out,
                        "oqs_site_flag{{flag=\"{}\",site=\"{}\"}} {}",
                        f.as_str(),
                        st.site,
                        u8::from(st.flags.contains_key(&f))
                    )?;
                }
            }
            let help = format!(
                "1 for a raised flag's bounded detail (absent otherwise): dns_failing {}; \
                 lineauth_error the portal code when known (P11019, P32031) or other; \
                 cert_expiring the days left as 90, 30 (30 or fewer) or 7 (7 or fewer, or expired).",
                flags::DNS_CAUSES.join("|")
            );
            header(out, "oqs_site_flag_detail", "gauge", &help)?;
            for st in &sites {
                if let Some(d) = st
                    .flags
                    .get(&Flag::DnsFailing)
                    .and_then(|f| f.detail.as_deref())
                {
                    if flags::DNS_CAUSES.contains(&d) {
                        writeln!(out, "oqs_site_flag_detail{{detail=\"{d}\",flag=\"dns_failing\",site=\"{}\"}} 1", st.site)?;
                    }
                }
                if let Some(c) = st
                    .flags
                    .get(&Flag::LineauthError)
                    .and_then(|f| f.detail.as_deref())
                {
                    writeln!(out, "oqs_site_flag_detail{{detail=\"{}\",flag=\"lineauth_error\",site=\"{}\"}} 1", label(c), st.site)?;
                }
                if let Some(days) = st
                    .flags
                    .get(&Flag::CertExpiring)
                    .and_then(|f| f.detail.as_deref())
                    .and_then(|d| d.parse::<i64>().ok())
                {
                    writeln!(out, "oqs_site_flag_detail{{detail=\"{}\",flag=\"cert_expiring\",site=\"{}\"}} 1", flags::cert_bucket(days), st.site)?;
                }
            }
            header(out, "oqs_site_diagnosis_step", "gauge", "The connection guide's troubleshooting step (1-6) the site fails first; 0 when healthy.")?;
            for st in &sites {
                let step = flags::site_finding(st)
                    .and_then(|(_, f, _)| oqs_guide::diagnosis::verdict(f).step)
                    .unwrap_or(0);
                writeln!(
                    out,
                    "oqs_site_diagnosis_step{{site=\"{}\"}} {step}",
                    st.site
                )?;
            }
            header(
                out,
                "oqs_ipv6_prefix_changes_total",
                "counter",
                "Changes of the site's line IPv6 /64 prefix (temporary-address rotation excluded).",
            )?;
            for st in &sites {
                writeln!(
                    out,
                    "oqs_ipv6_prefix_changes_total{{site=\"{}\"}} {}",
                    st.site, st.prefix_changes_total
                )?;
            }
            header(out, "oqs_lineauth_code_total", "counter", "Reports whose line-authentication page showed an error code, since the collector started. code: a known code (P11019, P32031) or other.")?;
            for ((site, code), n) in &g.codes {
                writeln!(
                    out,
                    "oqs_lineauth_code_total{{code=\"{code}\",site=\"{site}\"}} {n}"
                )?;
            }
            Ok(())
        })();
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_info_escapes_its_free_text() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        let m = FleetMetrics::default();
        m.set_site("s1", "山田\"クリニック", "東京都", "east");
        let mut out = String::new();
        m.render(&FleetView::default(), &mut out);
        assert!(
            out.contains(r#"oqs_site_info{area="east",prefecture="東京都",site="s1",site_name="山田\"クリニック"} 1"#),
            "{out}"
        );
    }
}
