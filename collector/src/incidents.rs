//! Area-wide incidents: when many sites of one area and prefecture fail the same way within
//! minutes (an NTT outage: IPv6 lost; the NW-base DNS unreachable; agents silent), one incident
//! ("NTT東日本 東京都: 37拠点でIPv6未取得（10:06から）") instead of a page per clinic.
//!
//! Pure: the sites' places, flags and maintenance in, the incidents that opened, changed or ended
//! out. An incident opens when at least `min_sites` sites of a group (area + prefecture, sites in
//! maintenance left out) raised the kind's flag within `within_secs` of each other and they are at
//! least `min_share_percent` of the group; it lists every site of the group failing that way while
//! it lasts, and ends when fewer than `close_below_sites` still do. Must never read the clock, the
//! store or the metrics ([`crate::derived`] stages and persists what this decides; the API and
//! `/metrics` read [`IncidentBook`]).

use crate::catalog::Flag;
use crate::flags::ActiveFlag;
use crate::small_map::SmallMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How a group of sites fails together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// `ipv6_missing`: the line's IPv6 (IPoE) is gone.
    Ipv6Lost,
    /// `dns_failing` with detail `upstream`: the NW-base DNS servers answer nobody.
    NwbaseDnsUnreachable,
    /// `agent_silent`: the agents stopped reporting (power, the line, the path to the collector).
    AgentsSilent,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 3] = [
        IncidentKind::Ipv6Lost,
        IncidentKind::NwbaseDnsUnreachable,
        IncidentKind::AgentsSilent,
    ];

    /// The name in the API, the `kind` label and the config.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Ipv6Lost => "ipv6_lost",
            IncidentKind::NwbaseDnsUnreachable => "nwbase_dns_unreachable",
            IncidentKind::AgentsSilent => "agents_silent",
        }
    }

    /// What the sites have, in Japanese (the incident's title).
    pub fn label_ja(self) -> &'static str {
        match self {
            IncidentKind::Ipv6Lost => "IPv6未取得",
            IncidentKind::NwbaseDnsUnreachable => "NW基盤DNS不達",
            IncidentKind::AgentsSilent => "エージェント無応答",
        }
    }

    /// What most likely causes this kind when many sites of an area show it at once, and what
    /// the NOC does about it (Japanese, English): the site page of a site inside such an
    /// incident says this before any per-site remedy.
    pub fn likely_cause(self) -> (&'static str, &'static str) {
        match self {
            IncidentKind::Ipv6Lost => (
                "同じ地域の多数の拠点で同時にIPv6が失われています。拠点の設定ではなく、地域のフレッツ光（NGN）の障害・工事の可能性が高いです。NTT東日本/西日本の工事・故障情報を確認してください。端末のIPv6設定の確認やフレッツの窓口への個別の問い合わせは、障害の終了後も解消しない場合に行ってください。",
                "Many sites of this area lost IPv6 at the same time: most likely a FLET'S (NGN) outage or works in the area, not this site's settings. Check NTT East/West's outage and works information; check the terminal's IPv6 settings or call the FLET'S desk only if it persists after the incident ends.",
            ),
            IncidentKind::NwbaseDnsUnreachable => (
                "同じ地域の多数の拠点で同時にNW基盤のDNSサーバーに届かなくなっています。拠点のルータ設定ではなく、オンライン資格確認NW基盤側または地域の回線の障害の可能性が高いです。障害情報を確認し、ルータのDNS設定の変更は障害の終了後も解消しない場合に行ってください。",
                "Many sites of this area cannot reach the NW-base DNS servers at the same time: most likely an outage on the OQS network base or the area's line, not this site's router. Check the outage information; change the router's DNS table only if it persists after the incident ends.",
            ),
            IncidentKind::AgentsSilent => (
                "同じ地域の多数の拠点のエージェントが同時に報告を止めています。地域の停電・回線障害、または監視センターまでの経路の障害の可能性が高いです。個々の端末の確認は、障害の終了後も報告が戻らない場合に行ってください。",
                "Many agents of this area stopped reporting at the same time: most likely a power or line outage in the area, or the path to the NOC. Check individual terminals only if they do not come back after the incident ends.",
            ),
        }
    }

    /// What the NOC tells a clinic of such an incident on the phone (Japanese, English).
    pub fn tell_clinic(self) -> (&'static str, &'static str) {
        (
            "地域の回線で障害が発生している可能性があり、監視センターで状況を確認しています。端末やルータの設定は変更せず、そのままお待ちください。オンライン資格確認が使えない間は、通常の代替手順で受付を続けてください。",
            "There may be a line outage in your area; the NOC is following it. Please do not change the terminal's or the router's settings, and keep receiving patients with the usual fallback while online qualification checks are unavailable.",
        )
    }

    /// The per-site alert an open incident of this kind inhibits in its area and prefecture
    /// (`deploy/alertmanager/alertmanager.yml`; the rule carries `area` and `prefecture`).
    pub fn explains_alert(self) -> &'static str {
        match self {
            IncidentKind::Ipv6Lost => "Ipv6Missing",
            IncidentKind::NwbaseDnsUnreachable => "DnsResolutionFailing",
            IncidentKind::AgentsSilent => "AgentSilent",
        }
    }

    /// The site flag (and detail) that shows this kind.
    pub fn flag(self) -> (Flag, Option<&'static str>) {
        match self {
            IncidentKind::Ipv6Lost => (Flag::Ipv6Missing, None),
            IncidentKind::NwbaseDnsUnreachable => (Flag::DnsFailing, Some("upstream")),
            IncidentKind::AgentsSilent => (Flag::AgentSilent, None),
        }
    }

    /// Whether a site's raised flags show this kind; when, if so.
    fn raised_at(self, flags: &SmallMap<Flag, ActiveFlag>) -> Option<i64> {
        let (flag, detail) = self.flag();
        flags
            .get(&flag)
            .filter(|a| detail.is_none() || a.detail.as_deref() == detail)
            .map(|a| a.raised_at_ms)
    }
}

/// When a group's failures make an incident (`[incidents]`, and `[[incidents.rules]]` for one
/// area or prefecture).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentSettings {
    /// Off: no incidents (every site pages on its own).
    pub enabled: bool,
    /// Sites that must fail the same way for an incident to open.
    pub min_sites: u32,
    /// And the share of the group's sites (not in maintenance) they must be, in percent.
    pub min_share_percent: u32,
    /// Their flags raised within this many seconds of each other ("within minutes").
    pub within_secs: u64,
    /// The incident ends when fewer sites than this still fail that way.
    pub close_below_sites: u32,
    /// Ended incidents are kept this many days (API, dashboard).
    pub retention_days: u64,
    /// And at most this many of them (the oldest go first).
    pub max_kept: usize,
    /// Other thresholds for one area, or one prefecture of it.
    pub rules: Vec<IncidentRule>,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_sites: 5,
            min_share_percent: 20,
            within_secs: 900,
            close_below_sites: 2,
            retention_days: 90,
            max_kept: 1000,
            rules: Vec::new(),
        }
    }
}

/// Thresholds for a group: `area` (east, west) and optionally one `prefecture` of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRule {
    pub area: String,
    #[serde(default)]
    pub prefecture: Option<String>,
    pub min_sites: Option<u32>,
    pub min_share_percent: Option<u32>,
    pub within_secs: Option<u64>,
    pub close_below_sites: Option<u32>,
}

impl IncidentRule {
    /// Where the rule stands in the config, for its errors: ".rules[0] (east 東京都)".
    fn at(&self, i: usize) -> String {
        match &self.prefecture {
            Some(p) => format!(".rules[{i}] ({} {p})", self.area),
            None => format!(".rules[{i}] ({})", self.area),
        }
    }
}

/// The thresholds that apply to one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub min_sites: u32,
    pub min_share_percent: u32,
    pub within_ms: i64,
    pub close_below_sites: u32,
}

/// A rule that cannot be met or makes no sense; names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("incidents{at}: {message}")]
pub struct RuleError {
    /// "" for `[incidents]`, ".rules[N] (east 東京都)" for an override.
    pub at: String,
    pub message: String,
}

impl IncidentSettings {
    /// The most specific rule for a group: its prefecture's, its area's, else the defaults.
    pub fn thresholds(&self, area: &str, prefecture: &str) -> Thresholds {
        let exact = self
            .rules
            .iter()
            .find(|r| r.area == area && r.prefecture.as_deref() == Some(prefecture));
        let whole_area = || {
            self.rules
                .iter()
                .find(|r| r.area == area && r.prefecture.is_none())
        };
        let r = exact.or_else(whole_area);
        Thresholds {
            min_sites: r.and_then(|r| r.min_sites).unwrap_or(self.min_sites),
            min_share_percent: r
                .and_then(|r| r.min_share_percent)
                .unwrap_or(self.min_share_percent),
            within_ms: (r.and_then(|r| r.within_secs).unwrap_or(self.within_secs) as i64)
                .saturating_mul(1000),
            close_below_sites: r
                .and_then(|r| r.close_below_sites)
                .unwrap_or(self.close_below_sites),
        }
    }

    /// Refuses thresholds no group could meet: fewer than 2 sites (one site is not area-wide), a
    /// share above 100%, no time span, an end above the start, an unknown area, a rule twice.
    pub fn validate(&self) -> Result<(), RuleError> {
        let check = |at: String, t: Thresholds| -> Result<(), RuleError> {
            let err = |message: String| {
                Err(RuleError {
                    at: at.clone(),
                    message,
                })
            };
            if t.min_sites < 2 {
                return err(format!(
                    "min_sites = {} cannot make an area-wide incident: it must be at least 2",
                    t.min_sites
                ));
            }
            if !(1..=100).contains(&t.min_share_percent) {
                return err(format!(
                    "min_share_percent = {} can never be met: it must be 1 to 100",
                    t.min_share_percent
                ));
            }
            if t.within_ms <= 0 {
                return err("within_secs must be at least 1".into());
            }
            if t.close_below_sites < 1 || t.close_below_sites > t.min_sites {
                return err(format!(
                    "close_below_sites = {} must be 1 to min_sites ({}): an incident would end \
                     as it opens",
                    t.close_below_sites, t.min_sites
                ));
            }
            Ok(())
        };
        check(String::new(), self.thresholds("", ""))?;
        if self.max_kept == 0 || self.retention_days == 0 {
            return Err(RuleError {
                at: String::new(),
                message: "retention_days and max_kept must be at least 1".into(),
            });
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = r.at(i);
            if !matches!(r.area.as_str(), "east" | "west") {
                return Err(RuleError {
                    at,
                    message: format!("area = {:?}: it must be east or west", r.area),
                });
            }
            if self.rules[..i]
                .iter()
                .any(|o| o.area == r.area && o.prefecture == r.prefecture)
            {
                return Err(RuleError {
                    at,
                    message: "a second rule for the same group".into(),
                });
            }
            check(
                at,
                self.thresholds(&r.area, r.prefecture.as_deref().unwrap_or("")),
            )?;
        }
        Ok(())
    }

    /// Refuses rules the fleet the store knows cannot meet: a group with fewer sites than its
    /// rule's `min_sites` (a group the store does not know yet is not judged).
    pub fn validate_for_fleet<'a>(
        &self,
        places: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), RuleError> {
        let places: Vec<(&str, &str)> = places.into_iter().collect();
        for (i, r) in self.rules.iter().enumerate() {
            let known = places
                .iter()
                .filter(|(a, p)| *a == r.area && r.prefecture.as_deref().is_none_or(|rp| rp == *p))
                .count();
            let t = self.thresholds(&r.area, r.prefecture.as_deref().unwrap_or(""));
            if known > 0 && (known as u64) < u64::from(t.min_sites) {
                return Err(RuleError {
                    at: r.at(i),
                    message: format!(
                        "min_sites = {} is more than the {known} sites this collector knows in \
                         that group: the rule could never open an incident",
                        t.min_sites
                    ),
                });
            }
        }
        Ok(())
    }
}

/// One incident, open or ended; persisted as JSON under its `N` key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub kind: IncidentKind,
    /// east, west, or "" for sites whose agents did not say.
    pub area: String,
    /// A prefecture's full name, or "" for sites whose agents did not say.
    pub prefecture: String,
    /// When the collector opened it.
    pub opened_ms: i64,
    /// The first raise among the sites that opened it.
    pub since_ms: i64,
    pub closed_ms: Option<i64>,
    /// The sites failing that way now (when it ended: the last ones), sorted.
    pub sites: Vec<String>,
    /// The most sites it listed at once.
    pub peak_sites: u32,
    /// The group's sites not in maintenance, at the last evaluation.
    pub group_sites: u32,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.closed_ms.is_none()
    }

    /// "NTT東日本 東京都: 37拠点でIPv6未取得（10:06から）" (Japan time).
    pub fn title_ja(&self) -> String {
        let carrier = match self.area.as_str() {
            "east" => "NTT東日本",
            "west" => "NTT西日本",
            _ => "地域不明",
        };
        let place = if self.prefecture.is_empty() {
            carrier.to_owned()
        } else {
            format!("{carrier} {}", self.prefecture)
        };
        let jst = self.since_ms.div_euclid(60_000) * 60_000 + 9 * 3_600_000;
        let minute = jst.rem_euclid(86_400_000) / 60_000;
        let n = if self.is_open() {
            self.sites.len() as u32
        } else {
            self.peak_sites
        };
        format!(
            "{place}: {n}拠点で{}（{:02}:{:02}から{}）",
            self.kind.label_ja(),
            minute / 60,
            minute % 60,
            if self.is_open() { "" } else { "、終了" }
        )
    }
}

/// A site's area (east, west, "") and prefecture ("" when unsaid).
pub type Place<'a> = (&'static str, &'a str);

/// Each site's area and prefecture, from its terminals' records (the one that says most; among
/// equals the first terminal by id, so the answer does not depend on map order).
///
/// Each value is (how little the chosen record says, the place): the map built is the map
/// returned, not collected into a second one (it is built every evaluation, for every site).
pub fn site_places(records: &crate::store::Records) -> HashMap<&str, (PlaceRank<'_>, Place<'_>)> {
    let mut best: HashMap<&str, (PlaceRank, Place)> = HashMap::new();
    for (k, r) in records {
        let area = crate::api::area_name(r.area).unwrap_or("");
        let rank = (
            r.prefecture.is_empty(),
            area.is_empty(),
            k.terminal.as_str(),
        );
        match best.get(k.site.as_str()) {
            Some((have, _)) if *have <= rank => {}
            _ => {
                best.insert(&k.site, (rank, (area, r.prefecture.as_str())));
            }
        }
    }
    best
}

/// How little a terminal record says of its site's place: (prefecture unsaid, area unsaid,
/// terminal id); the least wins.
pub type PlaceRank<'a> = (bool, bool, &'a str);

/// One site as the detector sees it.
pub struct SiteFacts<'a> {
    pub site: &'a str,
    pub area: &'a str,
    pub prefecture: &'a str,
    pub in_maintenance: bool,
    pub flags: &'a SmallMap<Flag, ActiveFlag>,
    /// A terminal of the site fell silent while the collector could hear it (not while the
    /// collector itself was down or starting): only such silence counts for `agents_silent`.
    pub silence_while_listening: bool,
}

/// Open and recently ended incidents, and the next id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incidents {
    /// Oldest first.
    pub list: Vec<Incident>,
    pub next_id: u64,
}

/// What one evaluation changed: incidents to write, ids to delete.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub put: Vec<Incident>,
    pub removed: Vec<u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.removed.is_empty()
    }
}

impl Incidents {
    pub fn new(mut list: Vec<Incident>) -> Self {
        list.sort_by_key(|i| i.id);
        let next_id = list.last().map_or(1, |i| i.id + 1);
        Self { list, next_id }
    }

    /// Opens, updates and ends incidents from the sites as they are at `now_ms`; drops ended
    /// ones beyond retention.
    pub fn evaluate(
        &mut self,
        settings: &IncidentSettings,
        sites: &[SiteFacts<'_>],
        now_ms: i64,
    ) -> Changes {
        let mut changes = Changes::default();
        if settings.enabled {
            // Group: (area, prefecture) → the sites not in maintenance.
            let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&SiteFacts>> =
                Default::default();
            // A site whose area no agent said belongs to no area (its alerts carry no area
            // label, so an incident among such sites would hold back every one of them).
            for s in sites
                .iter()
                .filter(|s| !s.in_maintenance && !s.area.is_empty())
            {
                groups.entry((s.area, s.prefecture)).or_default().push(s);
            }
            for ((area, prefecture), members) in &groups {
                let t = settings.thresholds(area, prefecture);
                for kind in IncidentKind::ALL {
                    let mut failing: Vec<(i64, &str)> = members
                        .iter()
                        .filter(|s| kind != IncidentKind::AgentsSilent || s.silence_while_listening)
                        .filter_map(|s| kind.raised_at(s.flags).map(|at| (at, s.site)))
                        .collect();
                    failing.sort();
                    let mut names: Vec<String> =
                        failing.iter().map(|(_, s)| (*s).to_owned()).collect();
                    names.sort();
                    let open = self.list.iter_mut().find(|i| {
                        i.is_open()
                            && i.kind == kind
                            && i.area == *area
                            && i.prefecture == *prefecture
                    });
                    match open {
                        Some(inc) => {
                            let group_sites = members.len() as u32;
                            let ends = (names.len() as u32) < t.close_below_sites;
                            if ends {
                                inc.closed_ms = Some(now_ms);
                                changes.put.push(inc.clone());
                            } else if inc.sites != names || inc.group_sites != group_sites {
                                inc.peak_sites = inc.peak_sites.max(names.len() as u32);
                                inc.sites = names;
                                inc.group_sites = group_sites;
                                changes.put.push(inc.clone());
                            }
                        }
                        None => {
                            let Some(since) = cluster(&failing, t, members.len()) else {
                                continue;
                            };
                            let inc = Incident {
                                id: self.next_id,
                                kind,
                                area: (*area).to_owned(),
                                prefecture: (*prefecture).to_owned(),
                                opened_ms: now_ms,
                                since_ms: since,
                                closed_ms: None,
                                peak_sites: names.len() as u32,
                                sites: names,
                                group_sites: members.len() as u32,
                            };
                            self.next_id += 1;
                            changes.put.push(inc.clone());
                            self.list.push(inc);
                        }
                    }
                }
            }
        }
        // A group that vanished (every site in maintenance, or gone) ends its incidents too.
        for inc in self.list.iter_mut().filter(|i| i.is_open()) {
            let present = sites
                .iter()
                .any(|s| !s.in_maintenance && s.area == inc.area && s.prefecture == inc.prefecture);
            if !present || !settings.enabled {
                inc.closed_ms = Some(now_ms);
                changes.put.push(inc.clone());
            }
        }
        let cutoff =
            now_ms.saturating_sub((settings.retention_days as i64).saturating_mul(86_400_000));
        let ended = self.list.iter().filter(|i| !i.is_open()).count();
        let mut excess = ended.saturating_sub(settings.max_kept);
        self.list.retain(|i| {
            let drop = match i.closed_ms {
                Some(c) if c < cutoff => true,
                Some(_) if excess > 0 => {
                    excess -= 1;
                    true
                }
                _ => false,
            };
            if drop {
                changes.removed.push(i.id);
            }
            !drop
        });
        changes.put.retain(|p| !changes.removed.contains(&p.id));
        changes
    }

    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.list.iter().filter(|i| i.is_open())
    }
}

/// The first raise of the largest set of raises within `within_ms` of each other, if that set is
/// big enough to open an incident in a group of `group` sites.
fn cluster(failing: &[(i64, &str)], t: Thresholds, group: usize) -> Option<i64> {
    let need = t.min_sites as usize;
    if failing.len() < need
        || (failing.len() as u64) * 100 < u64::from(t.min_share_percent) * group as u64
    {
        return None;
    }
    let mut best: Option<(usize, i64)> = None;
    let mut lo = 0;
    for hi in 0..failing.len() {
        while failing[hi].0 - failing[lo].0 > t.within_ms {
            lo += 1;
        }
        let n = hi - lo + 1;
        if best.is_none_or(|(b, _)| n > b) {
            best = Some((n, failing[lo].0));
        }
    }
    let (n, since) = best?;
    let share_ok = (n as u64) * 100 >= u64::from(t.min_share_percent) * group as u64;
    (n >= need && share_ok).then_some(since)
}

/// The incidents the collector serves: published after each durable batch (never before).
#[derive(Clone, Default)]
pub struct IncidentBook {
    inner: Arc<RwLock<Arc<Vec<Incident>>>>,
}

impl IncidentBook {
    /// Every kept incident, oldest first (cheap: an Arc).
    pub fn all(&self) -> Arc<Vec<Incident>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn publish(&self, list: Vec<Incident>) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn flags(kind: Option<(Flag, Option<&str>)>, at: i64) -> SmallMap<Flag, ActiveFlag> {
        let mut m = SmallMap::default();
        if let Some((f, d)) = kind {
            *m.get_or_insert_with(f, || ActiveFlag {
                raised_at_ms: at,
                detail: None,
                event_id: 1,
            }) = ActiveFlag {
                raised_at_ms: at,
                detail: d.map(str::to_owned),
                event_id: 1,
            };
        }
        m
    }

    struct Fleet {
        names: Vec<String>,
        prefs: Vec<&'static str>,
        maint: Vec<bool>,
        flags: Vec<SmallMap<Flag, ActiveFlag>>,
        /// Whether each site's silence began while the collector was listening.
        heard: Vec<bool>,
    }

    impl Fleet {
        /// `n` sites in 東京都 and `m` in 千葉県, all healthy.
        fn new(n: usize, m: usize) -> Self {
            let total = n + m;
            Fleet {
                names: (0..total).map(|i| format!("s{i:03}")).collect(),
                prefs: (0..total)
                    .map(|i| if i < n { "東京都" } else { "千葉県" })
                    .collect(),
                maint: vec![false; total],
                flags: (0..total).map(|_| flags(None, 0)).collect(),
                heard: vec![true; total],
            }
        }
        fn fail(&mut self, i: usize, f: Flag, d: Option<&str>, at: i64) {
            self.flags[i] = flags(Some((f, d)), at);
        }
        fn heal(&mut self, i: usize) {
            self.flags[i] = flags(None, 0);
        }
        fn facts(&self) -> Vec<SiteFacts<'_>> {
            (0..self.names.len())
                .map(|i| SiteFacts {
                    site: &self.names[i],
                    area: "east",
                    prefecture: self.prefs[i],
                    in_maintenance: self.maint[i],
                    flags: &self.flags[i],
                    silence_while_listening: self.heard[i],
                })
                .collect()
        }
    }

    #[test]
    fn many_sites_of_one_prefecture_losing_ipv6_within_minutes_open_one_incident() {
        let s = IncidentSettings::default();
        let mut fleet = Fleet::new(40, 40);
        let mut inc = Incidents::new(vec![]);
        let t0 = 1_764_500_760_000; // 2025-11-30T11:06:00Z = 20:06 JST
        for i in 0..8 {
            fleet.fail(i, Flag::Ipv6Missing, None, t0 + i as i64 * MIN);
        }
        // Four is below min_sites: nothing yet.
        let few = Fleet {
            flags: fleet.flags[..4]
                .iter()
                .cloned()
                .chain((4..80).map(|_| flags(None, 0)))
                .collect(),
            ..Fleet::new(40, 40)
        };
        assert!(inc.evaluate(&s, &few.facts(), t0 + 10 * MIN).is_empty());
        let ch = inc.evaluate(&s, &fleet.facts(), t0 + 10 * MIN);
        assert_eq!(ch.put.len(), 1, "{ch:?}");
        let i = &ch.put[0];
        assert_eq!(
            (i.kind, i.area.as_str(), i.prefecture.as_str()),
            (IncidentKind::Ipv6Lost, "east", "東京都")
        );
        assert_eq!((i.sites.len(), i.group_sites, i.since_ms), (8, 40, t0));
        assert_eq!(
            i.title_ja(),
            "NTT東日本 東京都: 8拠点でIPv6未取得（20:06から）"
        );
        // The same state again changes nothing; more sites join the same incident.
        assert!(inc.evaluate(&s, &fleet.facts(), t0 + 11 * MIN).is_empty());
        fleet.fail(20, Flag::Ipv6Missing, None, t0 + 60 * MIN);
        let ch = inc.evaluate(&s, &fleet.facts(), t0 + 61 * MIN);
        assert_eq!(
            (ch.put.len(), ch.put[0].sites.len(), ch.put[0].id),
            (1, 9, 1)
        );
        // It ends when fewer than close_below_sites (2) still fail.
        for i in (0..8).chain([20]) {
            fleet.heal(i);
        }
        fleet.fail(3, Flag::Ipv6Missing, None, t0);
        let ch = inc.evaluate(&s, &fleet.facts(), t0 + 90 * MIN);
        let ended = &ch.put[0];
        assert_eq!(
            (ended.closed_ms, ended.peak_sites),
            (Some(t0 + 90 * MIN), 9)
        );
        assert!(
            ended.title_ja().ends_with("、終了）"),
            "{}",
            ended.title_ja()
        );
        assert_eq!(inc.open().count(), 0);
    }

    #[test]
    fn silence_that_began_while_the_collector_was_down_opens_no_incident() {
        let s = IncidentSettings::default();
        let t0 = 1_000 * MIN;
        let mut fleet = Fleet::new(20, 0);
        for i in 0..10 {
            fleet.fail(i, Flag::AgentSilent, None, t0 + i as i64 * 1000);
            fleet.heard[i] = false;
        }
        let mut inc = Incidents::default();
        assert!(inc.evaluate(&s, &fleet.facts(), t0 + MIN).is_empty());
        // The same silence begun while it listened is the area's.
        fleet.heard = vec![true; 20];
        let ch = inc.evaluate(&s, &fleet.facts(), t0 + MIN);
        assert_eq!(ch.put.len(), 1, "{ch:?}");
        assert_eq!(ch.put[0].kind, IncidentKind::AgentsSilent);
    }

    #[test]
    fn raises_spread_over_hours_or_a_small_share_or_other_kinds_open_nothing() {
        let s = IncidentSettings::default();
        let t0 = 1_000 * MIN;
        // Six sites, an hour apart: never six within 15 minutes.
        let mut fleet = Fleet::new(40, 0);
        for i in 0..6 {
            fleet.fail(i, Flag::Ipv6Missing, None, t0 + i as i64 * 60 * MIN);
        }
        assert!(Incidents::default()
            .evaluate(&s, &fleet.facts(), t0 + 400 * MIN)
            .is_empty());
        // Six of 40 at once but the rule wants half the group.
        let mut fleet = Fleet::new(40, 0);
        for i in 0..6 {
            fleet.fail(i, Flag::Ipv6Missing, None, t0);
        }
        let mut strict = s.clone();
        strict.min_share_percent = 50;
        assert!(Incidents::default()
            .evaluate(&strict, &fleet.facts(), t0)
            .is_empty());
        // DNS failing for other reasons is not the NW base unreachable.
        let mut fleet = Fleet::new(10, 0);
        for i in 0..6 {
            fleet.fail(i, Flag::DnsFailing, Some("router_table"), t0);
        }
        assert!(Incidents::default()
            .evaluate(&s, &fleet.facts(), t0)
            .is_empty());
        for i in 0..6 {
            fleet.fail(i, Flag::DnsFailing, Some("upstream"), t0);
        }
        let ch = Incidents::default().evaluate(&s, &fleet.facts(), t0);
        assert_eq!(ch.put[0].kind, IncidentKind::NwbaseDnsUnreachable);
    }

    #[test]
    fn sites_in_maintenance_do_not_count_and_prefectures_are_apart() {
        let s = IncidentSettings::default();
        let t0 = 1_000 * MIN;
        let mut fleet = Fleet::new(10, 10);
        // Three silent in each prefecture: no group reaches five.
        for i in [0, 1, 2, 10, 11, 12] {
            fleet.fail(i, Flag::AgentSilent, None, t0);
        }
        assert!(Incidents::default()
            .evaluate(&s, &fleet.facts(), t0)
            .is_empty());
        for i in [3, 4] {
            fleet.fail(i, Flag::AgentSilent, None, t0);
        }
        fleet.maint[4] = true;
        assert!(Incidents::default()
            .evaluate(&s, &fleet.facts(), t0)
            .is_empty());
        fleet.maint[4] = false;
        let ch = Incidents::default().evaluate(&s, &fleet.facts(), t0);
        assert_eq!(ch.put.len(), 1);
        assert_eq!(ch.put[0].prefecture, "東京都");
        assert_eq!(ch.put[0].kind, IncidentKind::AgentsSilent);
    }

    #[test]
    fn rules_override_by_area_and_prefecture_and_impossible_ones_are_refused() {
        let s = IncidentSettings {
            rules: vec![
                IncidentRule {
                    area: "east".into(),
                    prefecture: Some("東京都".into()),
                    min_sites: Some(30),
                    min_share_percent: None,
                    within_secs: None,
                    close_below_sites: None,
                },
                IncidentRule {
                    area: "east".into(),
                    prefecture: None,
                    min_sites: Some(3),
                    min_share_percent: None,
                    within_secs: Some(60),
                    close_below_sites: None,
                },
            ],
            ..Default::default()
        };
        s.validate().unwrap();
        assert_eq!(s.thresholds("east", "東京都").min_sites, 30);
        assert_eq!(s.thresholds("east", "千葉県").min_sites, 3);
        assert_eq!(s.thresholds("east", "千葉県").within_ms, 60_000);
        assert_eq!(s.thresholds("west", "大阪府").min_sites, 5);
        let e = s
            .validate_for_fleet(vec![("east", "東京都"); 12])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rules[0] (east 東京都)") && e.contains("12 sites"),
            "{e}"
        );
        s.validate_for_fleet(vec![("east", "東京都"); 30]).unwrap();
        s.validate_for_fleet(vec![]).unwrap();
        for (bad, want) in [
            (
                IncidentSettings {
                    min_sites: 1,
                    ..Default::default()
                },
                "min_sites = 1",
            ),
            (
                IncidentSettings {
                    min_share_percent: 101,
                    ..Default::default()
                },
                "min_share_percent = 101",
            ),
            (
                IncidentSettings {
                    close_below_sites: 6,
                    ..Default::default()
                },
                "close_below_sites = 6",
            ),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let mut dup = s.clone();
        dup.rules.push(dup.rules[0].clone());
        assert!(dup
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rules[2] (east 東京都): a second rule"));
        let mut north = s.clone();
        north.rules[1].area = "north".into();
        assert!(north
            .validate()
            .unwrap_err()
            .to_string()
            .contains("east or west"));
    }

    #[test]
    fn ended_incidents_go_after_retention_or_beyond_max_kept() {
        let mut s = IncidentSettings {
            max_kept: 2,
            ..Default::default()
        };
        let mk = |id, closed| Incident {
            id,
            kind: IncidentKind::Ipv6Lost,
            area: "east".into(),
            prefecture: "東京都".into(),
            opened_ms: 0,
            since_ms: 0,
            closed_ms: closed,
            sites: vec![],
            peak_sites: 5,
            group_sites: 10,
        };
        let day = 86_400_000;
        let mut inc = Incidents::new(vec![
            mk(3, Some(9 * day)),
            mk(1, Some(day)),
            mk(2, Some(8 * day)),
            mk(4, Some(10 * day)),
        ]);
        assert_eq!(inc.next_id, 5);
        let ch = inc.evaluate(&s, &[], 10 * day);
        assert_eq!(ch.removed, vec![1, 2]);
        assert_eq!(
            inc.list.iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![3, 4]
        );
        s.retention_days = 1;
        let ch = inc.evaluate(&s, &[], 10 * day + day / 2);
        assert_eq!(ch.removed, vec![3]);
    }
}
