//! Monthly availability (月次稼働率): `GET /api/sites/{id}/availability?month=YYYY-MM` (one site,
//! with its outages) and `GET /api/availability.csv?month=YYYY-MM` (the fleet, a row per site).
//!
//! Must never decide what counts as up or down (that is `crate::availability` and the
//! catalogue); this gathers each site's stored events, its terminals' first Hello, its flags
//! now and its maintenance spans, and shows the account.

use super::error::{ApiError, Query, SitePath};
use super::{area_name, first_non_empty, read, when, ApiState};
use crate::availability::{account, Account, Month, SiteInput};
use crate::catalog::Flag;
use crate::store::{TerminalKey, TerminalRecord};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

/// How each moment counts (the page prints it under the figures).
const DEFINITION_JA: &str =
    "稼働率 = 稼働時間 ÷（稼働時間 + 停止時間）。停止時間は接続ガイドの切り分けで\
異常となるフラグ（回線認証エラー、IPv6未取得、DNS異常、証明書未導入など）が発生していた時間です。\
休診日・メンテナンス中の時間と、データのない時間（エージェント無応答、監視開始前、保存期間より前、\
これから先）は除外します。データのない月は稼働率を表示しません。";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MonthQuery {
    /// YYYY-MM in Japan time; the current month when absent.
    month: Option<String>,
}

#[derive(Serialize)]
struct OutageView {
    start: Option<String>,
    end: Option<String>,
    minutes: f64,
    /// Still going at the end of what was accounted (now, or the month's end).
    ongoing: bool,
    /// The flag that made it (the first raised), with its label and the guide's step.
    cause: &'static str,
    cause_ja: &'static str,
    cause_en: &'static str,
    guide_step: Option<u8>,
    guide_page: &'static str,
    /// Every flag that was part of it, in the order they were raised.
    causes: Vec<&'static str>,
}

#[derive(Serialize)]
pub struct AvailabilityPage {
    site_id: String,
    site_name: Option<String>,
    prefecture: Option<String>,
    area: Option<&'static str>,
    month: String,
    from: Option<String>,
    to: Option<String>,
    /// Null when the month holds no measured time (no data), never 100% then.
    availability_percent: Option<f64>,
    up_minutes: f64,
    down_minutes: f64,
    maintenance_minutes: f64,
    no_data_minutes: f64,
    /// Nothing is known before this (the first Hello, or the start of the kept event log).
    known_from: Option<String>,
    outages: Vec<OutageView>,
    definition_ja: &'static str,
}

fn minutes(ms: i64) -> f64 {
    (ms as f64 / 60_000.0 * 100.0).round() / 100.0
}

fn percent(acc: &Account) -> Option<f64> {
    acc.availability().map(|a| (a * 100_000.0).floor() / 1000.0)
}

fn month_of(q: &MonthQuery, now: i64) -> Result<Month, ApiError> {
    let m = match q.month.as_deref() {
        Some(s) => s.parse::<Month>().map_err(ApiError::BadRequest)?,
        None => Month::of(now),
    };
    if m.bounds().0 > now {
        return Err(ApiError::BadRequest(format!(
            "month {m} has not begun: nothing to account yet"
        )));
    }
    Ok(m)
}

/// Since when anything is known of the site: its terminals' earliest report or first Hello
/// (never: `i64::MAX`, the whole month no data).
fn known_since(terms: &[(TerminalKey, TerminalRecord)]) -> i64 {
    terms
        .iter()
        .map(|(_, r)| r.known_since_ms())
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(i64::MAX)
}

/// One site's account, from the store (blocking).
fn site_account(
    s: &ApiState,
    site: &str,
    terms: &[(TerminalKey, TerminalRecord)],
    month: Month,
    now: i64,
) -> Result<Account, crate::store::StoreError> {
    // Events recorded from a day before the month on (a terminal's clock somewhat ahead puts
    // its events' times after their recording): a flag raised earlier shows as a first event
    // that clears it, or as raised now, and counts from the month's start either way.
    let (month_start, _) = month.bounds();
    let events = s.store.flag_changes(site, month_start - 86_400_000)?;
    let active: Vec<(Flag, i64)> = s
        .view
        .get(site)
        .map(|st| st.flags.iter().map(|(f, a)| (*f, a.raised_at_ms)).collect())
        .unwrap_or_default();
    let first_known = known_since(terms);
    let log_start = now - s.history.event_retention_ms();
    let (start, end) = month.bounds();
    let spans = s
        .maintenance
        .get(site)
        .map(|sched| sched.spans(start, end))
        .unwrap_or_default();
    Ok(account(
        month,
        now,
        &SiteInput {
            events: &events,
            active_now: &active,
            known_from_ms: first_known.max(log_start),
            maintenance: &spans,
        },
    ))
}

pub(super) async fn site(
    State(s): State<ApiState>,
    SitePath(id): SitePath,
    Query(q): Query<MonthQuery>,
) -> Result<Json<AvailabilityPage>, ApiError> {
    let now = crate::clock::now_ms();
    let month = month_of(&q, now)?;
    let st = s.clone();
    let site = id.clone();
    let (terms, acc) = read(move || {
        let terms = st.store.site_terminals(site.as_str())?;
        let acc = site_account(&st, site.as_str(), &terms, month, now)?;
        Ok((terms, acc))
    })
    .await?;
    if terms.is_empty() {
        return Err(ApiError::UnknownSite(id));
    }
    let (from, to) = month.bounds();
    let known = known_since(&terms);
    let known = (known < i64::MAX).then(|| known.max(now - s.history.event_retention_ms()));
    Ok(Json(AvailabilityPage {
        site_id: id.to_string(),
        site_name: first_non_empty(&terms, |r| &r.site_name),
        prefecture: first_non_empty(&terms, |r| &r.prefecture),
        area: terms.first().and_then(|(_, r)| area_name(r.area)),
        month: month.to_string(),
        from: when(from),
        to: when(to),
        availability_percent: percent(&acc),
        up_minutes: minutes(acc.up_ms),
        down_minutes: minutes(acc.down_ms),
        maintenance_minutes: minutes(acc.maintenance_ms),
        no_data_minutes: minutes(acc.no_data_ms),
        known_from: known.and_then(when),
        outages: acc
            .outages
            .iter()
            .map(|o| {
                let cause = o
                    .causes
                    .first()
                    .copied()
                    .unwrap_or(Flag::LineauthUnreachable);
                let info = cause.info();
                let (guide_step, guide_page) = info.guide.step_and_page();
                OutageView {
                    start: when(o.start_ms),
                    end: when(o.end_ms),
                    minutes: minutes(o.end_ms - o.start_ms),
                    ongoing: o.ongoing,
                    cause: info.name,
                    cause_ja: info.label_ja,
                    cause_en: info.label_en,
                    guide_step,
                    guide_page,
                    causes: o.causes.iter().map(|f| f.as_str()).collect(),
                }
            })
            .collect(),
        definition_ja: DEFINITION_JA,
    }))
}

/// A CSV field: quoted when it holds a comma, a quote or a line break; and a text a spreadsheet
/// would take for a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return: a site
/// name `=HYPERLINK(…)` from an agent's Hello) is prefixed with `'`, which Excel and LibreOffice
/// show as text (OWASP's advice for CSV injection).
fn csv(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The UTF-8 byte order mark: without it Japanese Excel opens a CSV as Shift_JIS and the site
/// names come out garbled.
const UTF8_BOM: &str = "\u{feff}";

pub(super) async fn fleet_csv(
    State(s): State<ApiState>,
    Query(q): Query<MonthQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let now = crate::clock::now_ms();
    let month = month_of(&q, now)?;
    let st = s.clone();
    let body = read(move || {
        let mut by_site: std::collections::BTreeMap<String, Vec<(TerminalKey, TerminalRecord)>> =
            Default::default();
        for (k, r) in st.store.terminals()? {
            by_site.entry(k.site.clone()).or_default().push((k, r));
        }
        let sites: Vec<(&String, &Vec<(TerminalKey, TerminalRecord)>)> = by_site.iter().collect();
        // The sites split over the cores (each site's account is independent); rows keep the
        // sites' order.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        let chunk = sites.len().div_ceil(workers).max(1);
        let parts: Vec<Result<String, crate::store::StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = sites
                .chunks(chunk)
                .map(|part| scope.spawn(|| csv_rows(&st, part, month, now)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(crate::store::StoreError::CorruptValue {
                            key: "availability".into(),
                            reason: "a worker panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut out = String::from(UTF8_BOM);
        out.push_str(
            "site_id,site_name,prefecture,area,month,availability_percent,up_minutes,\
             down_minutes,maintenance_minutes,no_data_minutes,outages,longest_outage_minutes,\
             main_cause\n",
        );
        for p in parts {
            out.push_str(&p?);
        }
        Ok(out)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"oqs-availability-{month}.csv\""),
            ),
        ],
        body,
    ))
}

/// The CSV rows of some sites, in order (blocking).
fn csv_rows(
    st: &ApiState,
    sites: &[(&String, &Vec<(TerminalKey, TerminalRecord)>)],
    month: Month,
    now: i64,
) -> Result<String, crate::store::StoreError> {
    let mut out = String::new();
    {
        for (site, terms) in sites {
            let acc = site_account(st, site, terms, month, now)?;
            let longest = acc.outages.iter().max_by_key(|o| o.end_ms - o.start_ms);
            let row = [
                csv(site),
                csv(&first_non_empty(terms, |r| &r.site_name).unwrap_or_default()),
                csv(&first_non_empty(terms, |r| &r.prefecture).unwrap_or_default()),
                terms
                    .first()
                    .and_then(|(_, r)| area_name(r.area))
                    .unwrap_or("")
                    .to_owned(),
                month.to_string(),
                percent(&acc).map(|p| format!("{p:.3}")).unwrap_or_default(),
                minutes(acc.up_ms).to_string(),
                minutes(acc.down_ms).to_string(),
                minutes(acc.maintenance_ms).to_string(),
                minutes(acc.no_data_ms).to_string(),
                acc.outages.len().to_string(),
                longest
                    .map(|o| minutes(o.end_ms - o.start_ms).to_string())
                    .unwrap_or_else(|| "0".into()),
                longest
                    .and_then(|o| o.causes.first())
                    .map(|f| f.as_str())
                    .unwrap_or("")
                    .to_owned(),
            ];
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::csv;

    #[test]
    fn a_field_a_spreadsheet_would_take_for_a_formula_stays_text() {
        assert_eq!(csv("山田クリニック"), "山田クリニック");
        assert_eq!(
            csv("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        for bad in ["+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv(bad).trim_start_matches('"').starts_with('\''), "{bad}");
        }
        assert_eq!(csv("a,b"), "\"a,b\"");
    }
}
