// OQS Fleet Monitor dashboard: the fleet overview, the site page and the fleet inventory. Plain JavaScript, no build
// step; it reads only the collector's JSON API and draws its charts as SVG. Text from the API is
// always inserted as text (never as HTML).
'use strict';

const LANG = (() => {
  const q = new URLSearchParams(location.search).get('lang');
  if (q === 'en' || q === 'ja') { try { localStorage.setItem('oqs-lang', q); } catch (_) {} return q; }
  try { return localStorage.getItem('oqs-lang') || 'ja'; } catch (_) { return 'ja'; }
})();

const T = {
  ja: {
    sites: '拠点一覧', site: '拠点', all: 'すべて', flagged_only: '異常のみ', search: '拠点ID・名称・お客さまID',
    area: '地域', prefecture: '都道府県', flag: 'フラグ', east: '東日本', west: '西日本', name: '名称',
    flags: 'フラグ', step: '切り分け手順', last_report: '最終報告', terminals: '端末', connected: '接続',
    total: '拠点数', flagged_n: '要対応', healthy: '正常', prev: '前へ', next: '次へ', updated: '更新',
    of: '件中', diagnosis: '診断（接続ガイド 切り分け方法）', remedy: '対処', page: 'ガイド',
    failing_since: '発生', healthy_msg: '問題は見つかりませんでした。', contact: 'お問合せ情報',
    copy: 'コピー', copied: 'コピーしました', customer_id: 'お客さまID', ipv6: 'IPv6アドレス',
    prefix: 'プレフィックス', last_code: '直近のエラーコード', desk: 'ネットワークサポートデスク',
    open_now: '受付中', closed_now: '受付時間外', hours_today: '本日の受付', closed_today: '本日休業',
    active_flags: '発生中のフラグ', none: 'なし', events: 'イベント履歴', time: '日時', action: '種別',
    detail: '詳細', terminal: '端末', checks: 'チェック', run_now: '今すぐ実行', running: '実行中…',
    fresh: '新しい結果を受信', no_agent: '接続中のエージェントがありません', range: '期間',
    prefix_hist: 'IPv6プレフィックス履歴', lineauth_hist: '回線認証の状態', dns_lat: 'DNS応答時間（サーバー別）',
    web_hist: 'オンライン資格確認Web・CRL・NTP', hostname: 'ホスト名', version: 'バージョン',
    truncated: t => `点が多いため、${t} 以降のみ表示しています（期間を短くすると全体が見られます）。`,
    shares_line: '同じ回線の拠点', raised: '発生', cleared: '解消', updated_a: '更新', loading: '読み込み中…',
    step_n: n => `手順${n}`, no_data: 'データなし',
    fleet: '端末一覧（インベントリ）', newest: '最新', outdated_only: '旧バージョンのみ', os: 'OS',
    boot: '起動', clock: '時計のずれ', iface: 'インターフェース', outdated: '旧バージョン',
    fleet_search: '拠点ID・名称・ホスト名', terminals_n: '端末数', lagging: '要更新',
    maint: '休診日・メンテナンス', in_maint: '休診・メンテナンス中', closed_days: '休診日', holidays: '祝日',
    days: { sun: '日曜', mon: '月曜', tue: '火曜', wed: '水曜', thu: '木曜', fri: '金曜', sat: '土曜' },
    windows: 'メンテナンス予定', start: '開始', end: '終了', reason: '理由', by: '登録者', add_window: '追加',
    remove: '削除', no_windows: '予定なし', save: '保存', closed_hint: '例: thu:13:00-24:00, sun', quiet: 'この拠点のアラートは通知されません（フラグは表示されます）',
    until: t => `${t} まで`,
    cert: '証明書期限', days_left: n => (n < 0 ? '期限切れ' : `残り${n}日`),
    availability: '月次稼働率', ended: '終了', incident: 'エリア障害', in_incident: 'エリア障害', show_sites: '該当拠点を表示',
    stale: t => `コレクターから最新の情報を取得できません。表示は ${t} 時点のもので、現在の状態ではありません。`,
    stale_never: 'コレクターから情報を取得できません。',
    silent_title: 'エージェント無応答', last_heard: '最終受信', tell_clinic: 'クリニックへの伝え方',
    incident_title_site: 'この拠点はエリア障害に含まれています', likely_area: 'エリア障害の可能性', guide_ref: '接続ガイドの切り分け（参考）',
    checks_age: a => `${a}前の結果`, silent_badge: '無応答', last_said: '報告が途絶える前の診断',
    way: '経路', path_direct: '直接', path_proxy: 'プロキシ', path_relay: '中継PC',
    system_proxy: (src, p) => `システムプロキシ（${src}）: ${p}`, not_bypassed: d => `バイパス外: ${d}`,
    connection: '接続方式', off_guide: '接続ガイドの対象外の接続方式: IPv6・回線認証の確認は行いません',
    behind: (a, n) => `${a}遅れ・未送信${n}件`, way_failed: n => `失敗した経路 ${n}`,
    unknown: '不明', no_prefix: 'IPv6なし',
  },
  en: {
    sites: 'Sites', site: 'Site', all: 'All', flagged_only: 'Flagged only', search: 'Site id, name or customer ID',
    area: 'Area', prefecture: 'Prefecture', flag: 'Flag', east: 'East', west: 'West', name: 'Name',
    flags: 'Flags', step: 'Guide step', last_report: 'Last report', terminals: 'Terminals', connected: 'Connected',
    total: 'Sites', flagged_n: 'Flagged', healthy: 'Healthy', prev: 'Prev', next: 'Next', updated: 'Updated',
    of: 'of', diagnosis: 'Diagnosis (connection guide troubleshooting)', remedy: 'Remedy', page: 'Guide',
    failing_since: 'Since', healthy_msg: 'No problem found.', contact: 'Contact bundle',
    copy: 'Copy', copied: 'Copied', customer_id: 'Customer ID', ipv6: 'IPv6 address',
    prefix: 'Prefix', last_code: 'Last portal code', desk: 'Network support desk',
    open_now: 'open now', closed_now: 'closed now', hours_today: 'Today', closed_today: 'closed today',
    active_flags: 'Active flags', none: 'none', events: 'Event log', time: 'Time', action: 'Action',
    detail: 'Detail', terminal: 'Terminal', checks: 'Checks', run_now: 'Run now', running: 'Running…',
    fresh: 'Fresh result received', no_agent: 'No agent is connected', range: 'Range',
    prefix_hist: 'IPv6 prefix history', lineauth_hist: 'Line authentication state', dns_lat: 'DNS latency per server',
    web_hist: 'OQS web, CRL, NTP', hostname: 'Host', version: 'Version',
    truncated: t => `Too many points: showing from ${t} on (choose a shorter range to see it all).`,
    shares_line: 'Same line as', raised: 'raised', cleared: 'cleared', updated_a: 'updated', loading: 'Loading…',
    step_n: n => `step ${n}`, no_data: 'no data',
    fleet: 'Fleet inventory', newest: 'newest', outdated_only: 'Outdated only', os: 'OS',
    boot: 'Booted', clock: 'Clock offset', iface: 'Interface', outdated: 'outdated',
    fleet_search: 'Site id, name or host', terminals_n: 'Terminals', lagging: 'Outdated',
    maint: 'Closed days and maintenance', in_maint: 'Closed / in maintenance', closed_days: 'Closed', holidays: 'public holidays',
    days: { sun: 'Sun', mon: 'Mon', tue: 'Tue', wed: 'Wed', thu: 'Thu', fri: 'Fri', sat: 'Sat' },
    windows: 'Maintenance windows', start: 'Start', end: 'End', reason: 'Reason', by: 'Set by', add_window: 'Add',
    remove: 'Remove', no_windows: 'none planned', save: 'Save', closed_hint: 'e.g. thu:13:00-24:00, sun', quiet: "This site's alerts are not sent (its flags still show)",
    until: t => `until ${t}`,
    cert: 'Cert expiry', days_left: n => (n < 0 ? 'expired' : `${n} days`),
    availability: 'Monthly availability', ended: 'ended', incident: 'Area-wide incident', in_incident: 'area incident', show_sites: 'show its sites',
    incident_title: i => `${i.area === 'west' ? 'NTT West' : 'NTT East'}${i.prefecture ? ', ' + i.prefecture : ''}: ${i.site_count} sites — ${{ ipv6_lost: 'IPv6 lost', nwbase_dns_unreachable: 'NW-base DNS unreachable', agents_silent: 'agents silent' }[i.kind] || i.kind} since ${jst(new Date(i.since), { hour: '2-digit', minute: '2-digit' })}`,
    stale: t => `Cannot reach the collector: what is shown is from ${t}, not the current state.`,
    stale_never: 'Cannot reach the collector.',
    silent_title: 'Agent silent', last_heard: 'Last heard', tell_clinic: 'What to tell the clinic',
    incident_title_site: 'This site is part of an area-wide incident', likely_area: 'Likely an area-wide outage', guide_ref: "The guide's troubleshooting (for reference)",
    checks_age: a => `results from ${a} ago`, silent_badge: 'silent', last_said: 'Its diagnosis before it fell silent',
    way: 'Way', path_direct: 'direct', path_proxy: 'proxy', path_relay: 'relay PC',
    system_proxy: (src, p) => `system proxy (${src}): ${p}`, not_bypassed: d => `through the proxy: ${d}`,
    connection: 'Connection', off_guide: "Not the guide's connection method: the IPv6 and line-authentication checks are not run",
    behind: (a, n) => `${a} behind, ${n} waiting`, way_failed: n => `${n} way(s) failed`,
    unknown: 'unknown', no_prefix: 'no IPv6',
  },
}[LANG];

// The collector's catalogue (GET /api/catalog): every flag and check kind with its labels, the
// prefectures. The page keeps no list of its own; it is fetched once, before the page is drawn.
let CATALOG = { flags: [], checks: [], prefectures: [] };
let FLAGS = [];
let SEVERE = new Set();
const flagInfo = f => CATALOG.flags.find(x => x.name === f);
const flagLabel = f => { const i = flagInfo(f); return i ? (LANG === 'ja' ? i.label_ja : i.label_en) : f; };
const checkLabel = c => { const i = CATALOG.checks.find(x => x.name === c); return i ? (LANG === 'ja' ? i.label_ja : i.label_en) : c; };
const checksDrawnAs = t => CATALOG.checks.filter(c => c.timeline === t).map(c => c.name);

async function loadCatalog() {
  CATALOG = await api('/api/catalog');
  FLAGS = CATALOG.flags.map(f => f.name);
  SEVERE = new Set(CATALOG.flags.filter(f => f.severity === 'critical').map(f => f.name));
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike a style attribute
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

// A request that does not answer within this is a failed one (a collector that accepts the
// connection but never answers must not leave the page looking current).
const API_TIMEOUT_MS = 8000;

async function api(path, opts) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), API_TIMEOUT_MS);
  let res;
  try { res = await fetch(path, Object.assign({ signal: ctl.signal }, opts || {})); } finally { clearTimeout(timer); }
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) throw new Error((body && body.error) || `${res.status}`);
  return body;
}

// A time as the NOC reads it: Japan time, in the page's language.
function jst(d, opts) {
  return d.toLocaleString(LANG === 'ja' ? 'ja-JP' : 'en-GB', Object.assign({ timeZone: 'Asia/Tokyo', hour12: false }, opts || {}));
}

function when(iso) {
  if (!iso) return '-';
  const d = new Date(iso);
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  const local = jst(d);
  if (s < 0 || s > 86400) return local;
  const ago = s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : `${Math.floor(s / 3600)}h`;
  return `${local} (${LANG === 'ja' ? ago + '前' : ago + ' ago'})`;
}

// How old something is, in the page's language: "3分", "2 h".
function age(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (LANG === 'ja') return s < 60 ? `${s}秒` : s < 3600 ? `${Math.floor(s / 60)}分` : s < 86400 ? `${Math.floor(s / 3600)}時間` : `${Math.floor(s / 86400)}日`;
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86400 ? `${Math.floor(s / 3600)} h` : `${Math.floor(s / 86400)} d`;
}

// Whether what the page shows is current. Every page's refresh reports its outcome here; a failed
// refresh, or none that succeeded for twice the refresh period (a hung request, a sleeping tab),
// puts the whole page in the stale state: a banner with the time of the last good data, and
// everything below it greyed (body.stale), so nothing looks healthy that is not known to be.
const freshness = {
  lastGood: null,
  failing: false,
  period: 10000,
  banner: null,
  start(periodMs) {
    this.period = periodMs;
    this.banner = el('div', { id: 'stale-banner', class: 'banner stale', role: 'alert', hidden: 'hidden' });
    document.body.prepend(this.banner);
    setInterval(() => this.show(), 2000);
  },
  ok() { this.lastGood = Date.now(); this.failing = false; this.show(); },
  failed() { this.failing = true; this.show(); },
  show() {
    const old = this.lastGood === null || Date.now() - this.lastGood > 2 * this.period;
    const stale = this.failing || (old && this.lastGood !== null);
    document.body.classList.toggle('stale', stale);
    if (!this.banner) return;
    this.banner.hidden = !stale;
    this.banner.textContent = this.lastGood === null ? T.stale_never
      : T.stale(jst(new Date(this.lastGood), { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' }));
  },
};

function flagBadge(f, detail) {
  const cls = SEVERE.has(f) ? 'bad' : 'warn';
  return el('span', { class: `badge ${cls}`, title: detail || '' }, flagLabel(f), detail && (flagInfo(f) || {}).badge_detail ? ` ${detail}` : '');
}

function langToggle() {
  const other = LANG === 'ja' ? 'en' : 'ja';
  return el('button', { onclick: () => { const u = new URL(location.href); u.searchParams.set('lang', other); location.href = u; } },
    other === 'en' ? 'English' : '日本語');
}

// ---------- SVG charts ----------
const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children.flat()) { if (c) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); }
  return e;
}
const W = 900, PADL = 120, PADR = 10;
function xOf(t, from, to) { return PADL + (W - PADL - PADR) * Math.max(0, Math.min(1, (t - from) / Math.max(1, to - from))); }
function axis(from, to, y) {
  const g = svg('g', {});
  for (let i = 0; i <= 4; i++) {
    const t = from + (to - from) * i / 4;
    const x = xOf(t, from, to);
    const d = new Date(t);
    const label = jst(d, { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' });
    g.appendChild(svg('line', { x1: x, x2: x, y1: 0, y2: y, stroke: '#e5e7eb' }));
    g.appendChild(svg('text', { x, y: y + 11, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, label));
  }
  return g;
}

// Rows of coloured segments: rows = [{label, segments: [{from, to, color, text, state}]}], markers = [{t, text}].
// Each segment says what it draws (data-from, data-to in ms, data-state), so what the chart shows
// can be read back and checked against the site's events.
function bands(rows, from, to, markers) {
  const rowH = 18, h = rows.length * (rowH + 4) + 16;
  const root = svg('svg', { viewBox: `0 0 ${W} ${h}`, class: 'chart', role: 'img', 'data-from': from, 'data-to': to });
  root.appendChild(axis(from, to, h - 14));
  rows.forEach((r, i) => {
    const y = i * (rowH + 4) + 2;
    root.appendChild(svg('text', { x: 2, y: y + 13 }, r.label.length > 22 ? r.label.slice(0, 21) + '…' : r.label));
    for (const s of r.segments) {
      const x1 = xOf(s.from, from, to), x2 = Math.max(x1 + 2, xOf(s.to, from, to));
      const rect = svg('rect', { x: x1, y, width: x2 - x1, height: rowH, fill: s.color, rx: 2,
        'data-row': r.label, 'data-from': Math.max(from, s.from), 'data-to': Math.min(to, s.to), 'data-state': s.state === undefined ? s.text : s.state });
      rect.appendChild(svg('title', {}, s.text || ''));
      root.appendChild(rect);
      if (s.text && x2 - x1 > 60) root.appendChild(svg('text', { x: x1 + 3, y: y + 13, fill: '#fff' }, s.text));
    }
  });
  for (const m of markers || []) {
    const x = xOf(m.t, from, to);
    root.appendChild(svg('line', { x1: x, x2: x, y1: 0, y2: h - 14, stroke: '#c62828', 'stroke-dasharray': '3,2' }));
    const tx = svg('text', { x: x + 3, y: h - 18, fill: '#c62828' }, m.text);
    root.appendChild(tx);
  }
  return root;
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
// Line chart: series = [{label, points: [[t, v]]}] in milliseconds.
function lines(series, from, to, unit) {
  const h = 170, top = 8, bottom = h - 16;
  const max = Math.max(1, ...series.flatMap(s => s.points.map(p => p[1])));
  const yOf = v => bottom - (bottom - top) * (v / max);
  const root = svg('svg', { viewBox: `0 0 ${W} ${h}`, class: 'chart', role: 'img' });
  root.appendChild(axis(from, to, bottom));
  for (const v of [0, max / 2, max]) {
    root.appendChild(svg('text', { x: PADL - 4, y: yOf(v) + 3, 'text-anchor': 'end' }, `${Math.round(v)} ${unit}`));
  }
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${xOf(p[0], from, to).toFixed(1)},${yOf(p[1]).toFixed(1)}`).join(' ');
    root.appendChild(svg('path', { d, fill: 'none', stroke: PALETTE[i % PALETTE.length], 'stroke-width': 1.5 }));
  });
  const legend = el('div', { class: 'legend' }, series.map((s, i) => el('span', {}, el('i', { style: `background:${PALETTE[i % PALETTE.length]}` }), s.label)));
  return el('div', {}, root, legend);
}

// What a chart draws where nothing is known (before a terminal's first point): never a colour
// that means good or bad.
const UNKNOWN = '#d5d8dc';

// Segments from history points of one terminal: each point's state holds until the next point;
// points stating the same thing extend one segment. Before the first point nothing is known.
function segmentsOf(points, from, to, stateOf, colorOf, textOf) {
  const segs = [];
  const first = points.length ? points[0].at_ms : to;
  if (first > from) segs.push({ from, to: first, color: UNKNOWN, text: T.unknown, state: 'unknown' });
  points.forEach((p, i) => {
    const start = p.at_ms;
    const end = i + 1 < points.length ? points[i + 1].at_ms : to;
    const state = stateOf(p);
    const last = segs[segs.length - 1];
    if (last && last.state === state && last.to === start) { last.to = end; return; }
    segs.push({ from: start, to: end, color: state === 'unknown' ? UNKNOWN : colorOf(p, state), text: state === 'unknown' ? T.unknown : textOf(p, state), state });
  });
  return segs;
}

// ---------- the overview ----------
function overviewPage() {
  const state = { flag: '', area: '', prefecture: '', q: '', flagged: false, offset: 0, limit: 100 };
  const tiles = el('div', { class: 'tiles', id: 'tiles' });
  // Open area-wide incidents (GET /api/incidents): one line each; a click lists its sites.
  const banner = el('div', { id: 'incidents' });
  const areaSel = el('select', { id: 'f-area', onchange: e => { state.area = e.target.value; state.offset = 0; load(); } },
    el('option', { value: '' }, `${T.area}: ${T.all}`), el('option', { value: 'east' }, T.east), el('option', { value: 'west' }, T.west));
  const prefSel = el('select', { id: 'f-pref', onchange: e => { state.prefecture = e.target.value; state.offset = 0; load(); } },
    el('option', { value: '' }, `${T.prefecture}: ${T.all}`), CATALOG.prefectures.map(p => el('option', { value: p }, p)));
  const flagSel = el('select', { id: 'f-flag', onchange: e => { state.flag = e.target.value; state.offset = 0; load(); } },
    el('option', { value: '' }, `${T.flag}: ${T.all}`), FLAGS.map(f => el('option', { value: f }, flagLabel(f))));
  let timer = null;
  const search = el('input', { type: 'search', id: 'f-q', placeholder: T.search,
    oninput: e => { clearTimeout(timer); timer = setTimeout(() => { state.q = e.target.value; state.offset = 0; load(); }, 250); } });
  const flaggedBox = el('label', {}, el('input', { type: 'checkbox', id: 'f-flagged', onchange: e => { state.flagged = e.target.checked; state.offset = 0; load(); } }), ' ', T.flagged_only);
  const rows = el('tbody', { id: 'rows' });
  const info = el('span', { class: 'muted', id: 'info' }, T.loading);
  const pager = el('div', { class: 'pager' },
    el('button', { id: 'prev', onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, T.prev),
    el('button', { id: 'next', onclick: () => { state.offset += state.limit; load(); } }, T.next), info);
  document.body.append(
    el('header', {}, el('h1', {}, `OQS Fleet Monitor — ${T.sites}`), el('span', { class: 'spacer' }),
      el('a', { href: '/fleet', id: 'to-fleet' }, T.fleet), el('span', { id: 'updated', class: 'muted' }), langToggle()),
    el('main', {}, banner, tiles, el('div', { class: 'filters' }, areaSel, prefSel, flagSel, search, flaggedBox),
      el('table', {}, el('thead', {}, el('tr', {}, [T.site, T.name, T.prefecture, T.flags, T.step, T.cert, T.last_report, T.terminals].map(h => el('th', {}, h)))), rows),
      pager));

  async function load() {
    const p = new URLSearchParams({ offset: state.offset, limit: state.limit });
    for (const k of ['flag', 'area', 'prefecture', 'q']) if (state[k]) p.set(k, state[k]);
    if (state.flagged) p.set('state', 'flagged');
    let data, inc = { incidents: [] };
    try { [data, inc] = await Promise.all([api('/api/sites?' + p), api('/api/incidents?state=open')]); } catch (e) { info.textContent = e.message; freshness.failed(); return; }
    freshness.ok();
    banner.replaceChildren(...inc.incidents.map(i => el('div', { class: 'incident', 'data-incident': i.id },
      el('strong', {}, T.incident), ' ', el('span', { class: 'title' }, T.incident_title ? T.incident_title(i) : i.title_ja), ' ',
      el('button', { onclick: () => {
        Object.assign(state, { area: i.area, prefecture: i.prefecture, flag: i.flag, offset: 0 });
        areaSel.value = i.area; prefSel.value = i.prefecture; flagSel.value = i.flag; load();
      } }, T.show_sites))));
    const inIncident = new Set(inc.incidents.flatMap(i => i.sites));
    const sc = data.state_counts || {};
    const all = (sc.flagged || 0) + (sc.healthy || 0);
    const flaggedBoxEl = document.getElementById('f-flagged');
    tiles.replaceChildren(
      el('div', { class: `tile ${!state.flag && !state.flagged ? 'active' : ''}`, onclick: () => { state.flag = ''; flagSel.value = ''; state.flagged = false; flaggedBoxEl.checked = false; state.offset = 0; load(); } },
        el('div', { class: 'n', id: 'n-total' }, all), T.total),
      el('div', { class: `tile bad ${state.flagged ? 'active' : ''}`, onclick: () => { state.flagged = true; flaggedBoxEl.checked = true; state.offset = 0; load(); } },
        el('div', { class: 'n', id: 'n-flagged' }, sc.flagged || 0), T.flagged_n),
      el('div', { class: 'tile ok' }, el('div', { class: 'n', id: 'n-healthy' }, sc.healthy || 0), T.healthy),
      ...FLAGS.filter(f => data.flag_counts[f]).map(f => el('div', {
        class: `tile ${SEVERE.has(f) ? 'bad' : 'warn'} ${state.flag === f ? 'active' : ''}`,
        onclick: () => { state.flag = state.flag === f ? '' : f; flagSel.value = state.flag; state.offset = 0; load(); },
      }, el('div', { class: 'n' }, data.flag_counts[f]), flagLabel(f))));
    rows.replaceChildren(...data.sites.map(s => {
      const sev = s.flags.some(f => SEVERE.has(f)) ? 'bad' : s.flags.length ? 'warn' : 'ok';
      return el('tr', { class: `sev-${sev}`, 'data-site': s.site_id },
        el('td', {}, el('a', { href: `/sites/${encodeURIComponent(s.site_id)}` }, s.site_id)),
        el('td', {}, s.site_name || ''),
        el('td', {}, `${s.prefecture || ''} ${s.area ? '(' + T[s.area] + ')' : ''}`),
        el('td', {}, s.in_maintenance ? el('span', { class: 'badge maint' }, T.in_maint) : '',
          inIncident.has(s.site_id) ? el('span', { class: 'badge incident' }, T.in_incident) : '',
          s.flags.length ? s.flags.map(f => flagBadge(f)) : el('span', { class: 'badge ok' }, T.healthy)),
        el('td', {}, s.diagnosis_step ? T.step_n(s.diagnosis_step) : '-'),
        el('td', { class: `cert ${s.cert_days_left === null ? '' : s.cert_days_left <= 7 ? 'bad' : s.cert_days_left <= 30 ? 'warn' : ''}`, 'data-cert-days': s.cert_days_left === null ? '' : String(s.cert_days_left) },
          s.cert_days_left === null ? '-' : T.days_left(s.cert_days_left)),
        el('td', {}, when(s.last_report_at)),
        el('td', {}, `${s.connected_terminals}/${s.terminal_count}`));
    }));
    const end = Math.min(data.total, state.offset + data.sites.length);
    info.textContent = `${data.total ? state.offset + 1 : 0}–${end} ${T.of} ${data.total}`;
    document.getElementById('prev').disabled = state.offset === 0;
    document.getElementById('next').disabled = end >= data.total;
    document.getElementById('updated').textContent = `${T.updated} ${jst(new Date(), { hour: '2-digit', minute: '2-digit', second: '2-digit' })}`;
  }
  freshness.start(10000);
  load();
  setInterval(load, 10000);
}

// ---------- the fleet inventory ----------
// Every terminal with its agent version, OS, boot time and clock offset; the versions in use with
// their counts (the newest marked), so a NOC sees who lags behind a rollout. Filters are in the
// URL (?version=, ?os=, ?outdated=true, ?q=) so a filtered list can be linked.
function fleetPage() {
  const url = new URLSearchParams(location.search);
  const state = { version: url.get('version') || '', os: url.get('os') || '', outdated: url.get('outdated') === 'true', q: url.get('q') || '' };
  const tiles = el('div', { class: 'tiles', id: 'versions' });
  const osTiles = el('div', { class: 'tiles', id: 'os-families' });
  const rows = el('tbody', { id: 'fleet-rows' });
  const info = el('span', { class: 'muted', id: 'info' }, T.loading);
  let timer = null;
  const search = el('input', { type: 'search', id: 'f-q', placeholder: T.fleet_search, value: state.q,
    oninput: e => { clearTimeout(timer); timer = setTimeout(() => { state.q = e.target.value; load(); }, 250); } });
  const outdatedBox = el('label', {}, el('input', { type: 'checkbox', id: 'f-outdated', checked: state.outdated ? 'checked' : null,
    onchange: e => { state.outdated = e.target.checked; load(); } }), ' ', T.outdated_only);
  document.body.append(
    el('header', {}, el('a', { href: '/' }, `← ${T.sites}`), el('h1', {}, T.fleet), el('span', { class: 'spacer' }), langToggle()),
    el('main', {}, tiles, osTiles, el('div', { class: 'filters' }, search, outdatedBox, info),
      el('table', {}, el('thead', {}, el('tr', {}, [T.site, T.terminal, T.version, T.os, T.hostname, T.boot, T.clock, T.last_report, T.iface, T.connected].map(h => el('th', {}, h)))), rows)));
  const offset = ms => ms == null ? '-' : Math.abs(ms) < 50 ? '0.0 s' : `${ms > 0 ? '+' : '−'}${(Math.abs(ms) / 1000).toFixed(1)} s`;

  async function load() {
    const f = new URLSearchParams();
    for (const k of ['version', 'os', 'q']) if (state[k]) f.set(k, state[k]);
    if (state.outdated) f.set('outdated', 'true');
    history.replaceState(null, '', f.toString() ? `/fleet?${f}` : '/fleet');
    let d;
    try { d = await api(`/api/inventory?limit=5000${f.toString() ? '&' + f : ''}`); } catch (e) { info.textContent = e.message; freshness.failed(); return; }
    freshness.ok();
    tiles.replaceChildren(
      el('div', { class: `tile ${!state.version && !state.outdated ? 'active' : ''}`, onclick: () => { state.version = ''; state.outdated = false; document.getElementById('f-outdated').checked = false; load(); } },
        el('div', { class: 'n', id: 'n-terminals' }, d.terminals_total), T.terminals_n),
      el('div', { class: `tile ${d.outdated_total ? 'warn' : 'ok'} ${state.outdated ? 'active' : ''}`, onclick: () => { state.outdated = true; document.getElementById('f-outdated').checked = true; load(); } },
        el('div', { class: 'n', id: 'n-outdated' }, d.outdated_total), T.lagging),
      ...d.versions.map(v => el('div', { class: `tile ${v.newest ? 'ok' : 'warn'} ${state.version === v.version ? 'active' : ''}`, 'data-version': v.version,
        onclick: () => { state.version = state.version === v.version ? '' : v.version; load(); } },
        el('div', { class: 'n', id: `v-${v.version}` }, v.terminals), `${v.version || '?'}${v.newest ? ` (${T.newest})` : ''}`)));
    osTiles.replaceChildren(...Object.entries(d.os_families).map(([f, n]) => el('div', { class: `tile ${state.os === f ? 'active' : ''}`, 'data-os': f,
      onclick: () => { state.os = state.os === f ? '' : f; load(); } }, el('div', { class: 'n' }, n), f)));
    rows.replaceChildren(...d.terminals.map(t => el('tr', { class: t.outdated ? 'sev-warn' : '', 'data-terminal': `${t.site_id}/${t.terminal_id}`, 'data-outdated': String(t.outdated) },
      el('td', {}, el('a', { href: `/sites/${encodeURIComponent(t.site_id)}` }, t.site_id), t.site_name ? ` ${t.site_name}` : ''),
      el('td', {}, t.terminal_id),
      el('td', {}, t.agent_version || '?', t.outdated ? el('span', { class: 'badge warn' }, T.outdated) : ''),
      el('td', {}, t.os), el('td', {}, t.hostname), el('td', {}, when(t.boot_time)), el('td', {}, offset(t.clock_offset_ms)),
      el('td', {}, when(t.last_report_at)), el('td', {}, t.interface || '-'), el('td', {}, t.connected ? '●' : '○'))));
    info.textContent = `${d.matched} / ${d.terminals_total}`;
  }
  freshness.start(30000);
  load();
  setInterval(load, 30000);
}

// ---------- the site page ----------
function sitePage() {
  const raw = location.pathname.split('/').pop();
  let id;
  try { id = decodeURIComponent(raw); } catch (_) { id = raw; } // a mangled link still gets the API's 404
  const ranges = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };
  let range = '24h';
  let rangeChosen = false;
  let lastSeqs = null;
  const toast = el('span', { id: 'toast' });
  const runBtn = el('button', { id: 'run-now', onclick: runNow }, T.run_now);
  const rangeSel = el('select', { id: 'range', onchange: e => { range = e.target.value; rangeChosen = true; load(); } },
    Object.keys(ranges).map(r => el('option', { value: r, selected: r === range ? 'selected' : null }, r)));
  const body = el('div', { id: 'site' }, T.loading);
  // Outside `body`, which is redrawn every refresh: the form keeps what is being typed.
  const maint = el('div', { class: 'panel', id: 'maintenance' }, T.loading);
  document.body.append(
    el('header', {}, el('a', { href: '/' }, `← ${T.sites}`), el('h1', { id: 'title' }, `${T.site} ${id}`), el('span', { class: 'spacer' }),
      el('a', { href: `/sites/${encodeURIComponent(id)}/availability`, id: 'to-availability' }, T.availability),
      el('span', { class: 'actions' }, toast, runBtn), langToggle()),
    el('main', {}, el('div', { class: 'filters' }, `${T.range}: `, rangeSel), body, maint));

  // A time typed in a datetime-local field, read as Japan time (the clinics' and the NOC's).
  const jstInput = v => (v && v.length === 16 ? `${v}:00+09:00` : v);

  async function loadMaint() {
    const path = `/api/sites/${encodeURIComponent(id)}/maintenance`;
    let m;
    try { m = await api(path); } catch (e) { maint.replaceChildren(el('h2', {}, T.maint), e.message); return; }
    const msg = el('span', { class: 'muted', id: 'maint-msg' });
    const start = el('input', { type: 'datetime-local', id: 'mw-start' });
    const end = el('input', { type: 'datetime-local', id: 'mw-end' });
    const reason = el('input', { id: 'mw-reason', placeholder: T.reason });
    const by = el('input', { id: 'mw-by', placeholder: T.by });
    const send = async (url, method, payload) => {
      try {
        await api(url, { method, headers: { 'content-type': 'application/json' }, body: payload ? JSON.stringify(payload) : undefined });
        await loadMaint();
        load();
      } catch (e) { msg.textContent = e.message; }
    };
    const add = el('button', { id: 'mw-add', onclick: () => send(`${path}/windows`, 'POST',
      { start: jstInput(start.value), end: jstInput(end.value), reason: reason.value, by: by.value }) }, T.add_window);
    const closed = m.closed.map(c => `${T.days[c.day] || c.day} ${c.from}–${c.to}`);
    if (m.holidays) closed.push(T.holidays);
    // The closed hours as the admin command writes them: DAY or DAY:HH:MM-HH:MM, comma-separated.
    const spans = el('input', { id: 'mc-spans', size: 40, placeholder: T.closed_hint,
      value: m.closed.map(c => c.from === '00:00' && c.to === '24:00' ? c.day : `${c.day}:${c.from}-${c.to}`).join(', ') });
    const hol = el('input', { type: 'checkbox', id: 'mc-holidays', checked: m.holidays ? 'checked' : null });
    const parse = text => text.split(',').map(t => t.trim()).filter(Boolean).map(t => {
      const i = t.indexOf(':');
      if (i < 0) return { day: t };
      const [from, to] = t.slice(i + 1).split('-');
      return { day: t.slice(0, i), from, to };
    });
    const save = el('button', { id: 'mc-save', onclick: () => send(path, 'PUT', { closed: parse(spans.value), holidays: hol.checked }) }, T.save);
    maint.replaceChildren(el('h2', {}, T.maint),
      el('p', { id: 'maint-closed' }, `${T.closed_days}: ${closed.length ? closed.join('、') : T.none}`),
      el('div', { class: 'filters' }, spans, el('label', {}, hol, ' ', T.holidays), save),
      el('h3', {}, T.windows),
      m.windows.length ? el('table', { id: 'maint-windows' },
        el('thead', {}, el('tr', {}, [T.start, T.end, T.reason, T.by, ''].map(h => el('th', {}, h)))),
        el('tbody', {}, m.windows.map(w => el('tr', { 'data-window': String(w.id), class: w.ended ? 'muted' : '' },
          el('td', {}, when(w.start)), el('td', {}, when(w.end), w.ended ? ` (${T.ended})` : ''), el('td', {}, w.reason), el('td', {}, w.by),
          el('td', {}, el('button', { class: 'mw-remove', onclick: () => send(`${path}/windows/${w.id}`, 'DELETE') }, T.remove))))))
        : el('p', { class: 'muted' }, T.no_windows),
      el('div', { class: 'filters' }, start, end, reason, by, add, msg));
  }
  loadMaint();

  async function runNow() {
    runBtn.disabled = true;
    toast.textContent = T.running;
    try {
      await api(`/api/sites/${encodeURIComponent(id)}/run-now`, { method: 'POST' });
      const before = JSON.stringify(lastSeqs);
      for (let i = 0; i < 30; i++) {
        await new Promise(r => setTimeout(r, 1000));
        await load();
        if (JSON.stringify(lastSeqs) !== before) { toast.textContent = `${T.fresh} ${jst(new Date(), { hour: '2-digit', minute: '2-digit', second: '2-digit' })}`; break; }
      }
    } catch (e) {
      toast.textContent = e.message.includes('connected') ? T.no_agent : e.message;
    }
    runBtn.disabled = false;
  }

  async function load() {
    const to = Date.now(), from = to - ranges[range];
    const q = `from=${from}&to=${to}`;
    let site, events, hist;
    try {
      [site, events, ...hist] = await Promise.all([
        api(`/api/sites/${encodeURIComponent(id)}`),
        api(`/api/events?site=${encodeURIComponent(id)}&since=${to - 30 * 86400e3}&limit=200`),
        ...CATALOG.checks.map(c => api(`/api/sites/${encodeURIComponent(id)}/history?check=${c.name}&${q}`)),
      ]);
    } catch (e) {
      // The page keeps what it showed (greyed, under the stale banner) rather than go blank.
      if (!body.querySelector('.grid')) body.textContent = e.message;
      freshness.failed();
      return;
    }
    freshness.ok();
    lastSeqs = site.terminals.map(t => t.last_seq);
    // A site seen for less than an hour: show the last hour, not a sliver at the end of a day.
    if (!rangeChosen) {
      rangeChosen = true;
      const first = Math.min(...site.terminals.map(t => Date.parse(t.first_seen_at || 0) || Date.now()));
      if (Date.now() - first < 3600e3 && range !== '1h') { range = '1h'; rangeSel.value = '1h'; return load(); }
    }
    document.getElementById('title').textContent = `${T.site} ${site.site_id}${site.site_name ? ' — ' + site.site_name : ''}`;
    // Each check's points, by name; the charts take the checks the catalogue draws their way.
    const points = Object.fromEntries(CATALOG.checks.map((c, i) => [c.name, hist[i].points]));
    const drawn = t => checksDrawnAs(t).map(c => points[c]).flat();
    // The API keeps the newest points of an over-long window: say from when the charts are whole.
    const cut = hist.filter(h => h.truncated).map(h => Date.parse(h.complete_from)).filter(t => !isNaN(t));
    const note = cut.length ? el('p', { class: 'muted', id: 'truncated' }, T.truncated(jst(new Date(Math.max(...cut))))) : null;
    const m = site.maintenance;
    const banner = m ? el('div', { class: 'banner maint', id: 'maint-banner' }, `${T.in_maint}: `,
      m.kind === 'window' ? `${m.reason}（${m.by}）${T.until(when(new Date(m.end_ms).toISOString()))}` : m.kind === 'holiday' ? T.holidays : `${T.days[m.day] || m.day} ${m.from}–${m.to}`,
      ' — ', T.quiet) : null;
    // The area-wide incident this site is part of comes first: the likely cause is the area's.
    const inc = site.incident ? el('div', { class: 'banner incident', id: 'incident-banner' },
      el('strong', {}, T.incident_title_site), ' — ', T.incident_title ? T.incident_title(site.incident) : site.incident.title_ja) : null;
    body.replaceChildren(...(inc ? [inc] : []), ...(banner ? [banner] : []), ...(note ? [note] : []),
      el('div', { class: 'grid' }, diagnosisPanel(site), contactPanel(site), flagsPanel(site)),
      el('div', { class: 'panel' }, el('h2', {}, T.terminals), terminalsTable(site)),
      el('div', { class: 'grid' },
        el('div', { class: 'panel' }, el('h2', {}, T.prefix_hist), prefixChart(site, drawn('prefix'), from, to)),
        el('div', { class: 'panel' }, el('h2', {}, T.lineauth_hist), lineauthChart(drawn('states'), from, to))),
      el('div', { class: 'grid' },
        el('div', { class: 'panel' }, el('h2', {}, T.dns_lat), dnsChart(drawn('latency_per_server'), from, to)),
        el('div', { class: 'panel' }, el('h2', {}, T.web_hist), webChart(checksDrawnAs('up_down').map(c => [checkLabel(c), points[c]]), from, to))),
      el('div', { class: 'panel' }, el('h2', {}, T.events), eventsTable(events.events)));
  }

  // The diagnosis by its basis (the API decides it): an area-wide incident first, then the guide's
  // tree over the terminals that report, then silence; "no problem" only when none of them holds.
  function diagnosisPanel(site) {
    const d = site.diagnosis;
    const ja = LANG === 'ja';
    const remedy = el('p', { id: 'diag-remedy' }, ja ? d.remedy_ja : d.remedy_en);
    const tell = d.tell_clinic_ja ? el('div', { class: 'hint', id: 'diag-tell' }, el('strong', {}, `${T.tell_clinic}: `), ja ? d.tell_clinic_ja : d.tell_clinic_en) : null;
    const guideStep = d.step !== null && d.step !== undefined
      ? el('div', {}, el('span', { class: 'step', id: 'diag-step' }, d.step), el('strong', {}, T.step_n(d.step)), ' ', el('span', { class: 'muted' }, d.finding || '')) : null;
    // The method the verdict assumed: the guide's tree is FLET'S IPoE's; on another method only
    // what applies to it is judged, and the page says so.
    const method = el('div', { class: 'muted', id: 'diag-connection', 'data-connection': d.connection },
      `${T.connection}: ${ja ? d.connection_ja : d.connection_en}`,
      d.connection !== 'flets_ipoe' ? el('div', {}, T.off_guide) : null);
    const panel = (cls, ...children) => el('div', { class: `panel diag ${cls}`, id: 'diagnosis', 'data-basis': d.basis }, el('h2', {}, T.diagnosis), ...children, method);
    if (d.basis === 'area_incident') {
      return panel('bad', el('div', { id: 'diag-basis' }, el('strong', {}, T.likely_area)), remedy, tell,
        el('dl', { class: 'kv' }, el('dt', {}, T.failing_since), el('dd', {}, when(d.since))),
        guideStep ? el('div', { class: 'muted' }, T.guide_ref, ': ', guideStep, ' ', d.guide_page || '') : null);
    }
    if (d.basis === 'silent') {
      return panel('silent', el('div', { id: 'diag-basis' }, el('strong', {}, T.silent_title)), remedy, tell,
        el('dl', { class: 'kv' }, el('dt', {}, T.last_heard), el('dd', { id: 'diag-since' }, when(d.since)), el('dt', {}, T.terminal), el('dd', {}, d.terminal_id || '-')),
        guideStep ? el('div', { class: 'muted', id: 'diag-last' }, T.last_said, ': ', guideStep, ' ', d.guide_page || '') : null);
    }
    if (d.basis === 'guide') {
      return panel('bad', guideStep, remedy,
        d.hint_ja ? el('p', { id: 'diag-hint', class: 'hint' }, ja ? d.hint_ja : d.hint_en) : null,
        el('dl', { class: 'kv' }, el('dt', {}, T.page), el('dd', {}, d.guide_page), el('dt', {}, T.failing_since), el('dd', {}, when(d.failing_since)), el('dt', {}, T.terminal), el('dd', {}, d.terminal_id || '-')));
    }
    if (d.basis === 'off_guide') {
      return panel('bad', el('div', { id: 'diag-basis' }, el('span', { class: 'muted' }, d.finding || '')), remedy,
        el('dl', { class: 'kv' }, el('dt', {}, T.failing_since), el('dd', {}, when(d.failing_since)), el('dt', {}, T.terminal), el('dd', {}, d.terminal_id || '-')));
    }
    return panel('', el('div', { id: 'diag-step' }, T.healthy_msg));
  }

  function contactPanel(site) {
    const c = site.contact;
    const lines = [
      [T.site, `${site.site_id}${site.site_name ? ' ' + site.site_name : ''}`],
      [T.customer_id, c.customer_id || '-'],
      [T.ipv6, c.ipv6_address || '-'],
      [T.prefix, c.prefix || '-'],
      [T.failing_since, c.failing_since ? when(c.failing_since) : '-'],
      [T.last_code, c.last_lineauth_code ? `${c.last_lineauth_code.code} (${when(c.last_lineauth_code.first_seen_at)})` : '-'],
    ];
    const text = lines.map(([k, v]) => `${k}: ${v}`).join('\n');
    const copyBtn = el('button', { id: 'copy-contact', onclick: async () => {
      try { await navigator.clipboard.writeText(text); copyBtn.textContent = T.copied; } catch (_) { copyBtn.textContent = '✗'; }
    } }, T.copy);
    return el('div', { class: 'panel', id: 'contact' }, el('h2', {}, T.contact),
      // Whom to call for this problem, the desk that can act on it first.
      (c.desks || []).map(d => {
        const id = d.desk === 'network' ? 'desk' : `desk-${d.desk}`;
        return el('div', { class: 'desk-entry', 'data-desk': d.desk },
          el('div', { class: 'desk' }, `${LANG === 'ja' ? d.name_ja : d.name_en} `, el('span', { id: `${id}-number` }, d.number), ' ',
            el('span', { class: d.open_now ? 'open' : 'closed', id: `${id}-open` }, d.open_now ? T.open_now : T.closed_now)),
          el('div', { class: 'muted' }, `${LANG === 'ja' ? d.for_ja : d.for_en} · ${T.hours_today}: ${d.hours_today || T.closed_today} (JST)`));
      }),
      el('dl', { class: 'kv' }, lines.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
      el('div', { class: 'actions' }, copyBtn),
      site.shares_line_with.length ? el('p', { class: 'muted' }, `${T.shares_line}: ${site.shares_line_with.join(', ')}`) : null);
  }

  function flagsPanel(site) {
    return el('div', { class: 'panel', id: 'flags' }, el('h2', {}, T.active_flags),
      site.active_flags.length ? el('table', {}, el('tbody', {}, site.active_flags.map(f => el('tr', {},
        el('td', {}, flagBadge(f.flag)), el('td', {}, f.detail || ''), el('td', {}, when(f.raised_at)))))) : el('span', { class: 'badge ok' }, T.none));
  }

  function terminalsTable(site) {
    return el('table', { id: 'terminals' }, el('thead', {}, el('tr', {}, [T.terminal, T.hostname, T.connected, T.way, T.last_report, T.ipv6, T.checks, T.version].map(h => el('th', {}, h)))),
      el('tbody', {}, site.terminals.map(t => {
        // A silent terminal's checks are its last, not its state: grey, with their age.
        const old = t.silent || (t.checks_age_seconds !== null && t.interval_seconds && t.checks_age_seconds > 3 * t.interval_seconds);
        return el('tr', { class: t.silent ? 'silent' : '', 'data-terminal': t.terminal_id },
          el('td', {}, t.terminal_id, t.silent ? el('span', { class: 'badge warn' }, T.silent_badge) : ''), el('td', {}, t.hostname), el('td', {}, t.connected ? '●' : '○'),
          wayCell(t.uplink), el('td', {}, when(t.last_report_at)), el('td', {}, (t.ipv6_addresses || []).join(' ')),
          el('td', { class: old ? 'checks old' : 'checks' },
            old && t.checks_age_seconds !== null ? el('div', { class: 'muted checks-age' }, T.checks_age(age(t.checks_age_seconds))) : null,
            t.checks.map(c => el('span', { class: `badge ${old ? 'none' : c.ok ? 'ok' : 'bad'}`, title: JSON.stringify(c.detail) }, `${checkLabel(c.check)} ${c.ok ? '✓' : '✗'} ${c.latency_ms}ms`)),
            t.lineauth_state ? el('span', { class: 'badge none' }, t.lineauth_state) : null),
          el('td', {}, t.agent_version));
      })));
  }

  // How the terminal's reports come: "via relay-pc, 3 h behind", the failed ways in the title.
  function wayCell(u) {
    if (!u) return el('td', { class: 'way muted' }, T.unknown);
    const path = T[`path_${u.path}`] || u.path;
    const errors = (u.way_errors || []).map(w => `#${w.way_index + 1} ${w.url}: ${w.error}`).join('\n');
    return el('td', { class: 'way', 'data-path': u.path, title: errors },
      u.via ? `${path} ${u.via}` : path,
      u.backlog_reports > 0 ? el('span', { class: 'badge warn' }, T.behind(age(u.oldest_unsent_age_seconds), u.backlog_reports)) : null,
      u.way_errors && u.way_errors.length ? el('span', { class: 'badge none' }, T.way_failed(u.way_errors.length)) : null,
      systemProxy(u.system_proxy));
  }

  // The machine's proxy (WinHTTP, HTTPS_PROXY) as a fact: the OQS domains its bypass list misses
  // are named, judged by no flag.
  function systemProxy(p) {
    if (!p) return null;
    const through = (p.domains || []).filter(d => !d.bypassed).map(d => d.domain);
    return el('div', { class: 'muted system-proxy', 'data-proxy': p.proxy, title: p.problem || '' },
      T.system_proxy(p.source, p.proxy || '-'),
      through.length ? el('span', { class: 'badge none' }, T.not_bypassed(through.join(', '))) : null);
  }

  function byTerminal(points) {
    const m = new Map();
    for (const p of points) { if (!m.has(p.terminal_id)) m.set(p.terminal_id, []); m.get(p.terminal_id).push(p); }
    return m;
  }

  // The line's /64 per terminal: a colour per prefix, grey where the terminal had none, the
  // unknown colour before anything was known; a marker at each recorded change.
  function prefixChart(site, points, from, to) {
    if (!points.length) return el('div', { class: 'muted', id: 'chart-prefix' }, T.no_data);
    const colors = new Map();
    const colorOf = pfx => { if (!colors.has(pfx)) colors.set(pfx, PALETTE[colors.size % PALETTE.length]); return colors.get(pfx); };
    const stateOf = p => !p.state ? 'unknown' : (p.state.prefix || 'none');
    const rows = [...byTerminal(points)].map(([term, ps]) => ({ label: term, segments: segmentsOf(ps, from, to, stateOf,
      (p, st) => st === 'none' ? '#9e9e9e' : colorOf(st), (p, st) => st === 'none' ? T.no_prefix : st) }));
    const markers = site.prefix_history.filter(c => Date.parse(c.at) >= from).map(c => ({ t: Date.parse(c.at), text: c.to }));
    const chart = bands(rows, from, to, markers);
    chart.id = 'chart-prefix';
    return chart;
  }

  // The portal's page per terminal: green authenticated, amber the consent page, red any other
  // page or none; the unknown colour where nothing is known.
  function lineauthChart(points, from, to) {
    if (!points.length) return el('div', { class: 'muted', id: 'chart-lineauth' }, T.no_data);
    const color = s => ['already_authenticated', 'success'].includes(s) ? '#2e7d32' : s === 'consent' ? '#b26a00' : '#c62828';
    const stateOf = p => (p.state && p.state.state && p.state.state !== 'unspecified') ? p.state.state : 'unknown';
    const rows = [...byTerminal(points)].map(([term, ps]) => ({ label: term, segments: segmentsOf(ps, from, to, stateOf,
      (p, st) => color(st), (p, st) => `${st}${p.state && p.state.code ? ' ' + p.state.code : ''}`) }));
    const chart = bands(rows, from, to, []);
    chart.id = 'chart-lineauth';
    return chart;
  }

  function dnsChart(points, from, to) {
    if (!points.length) return el('div', { class: 'muted', id: 'chart-dns' }, T.no_data);
    // Each point's state lists [server name, ms] for the servers asked straight.
    const series = new Map();
    for (const p of points) {
      for (const [key, ms] of (p.state && p.state.series) || []) {
        if (!series.has(key)) series.set(key, []);
        series.get(key).push([Math.max(from, p.at_ms), ms]);
      }
    }
    if (!series.size) return el('div', { class: 'muted', id: 'chart-dns' }, T.no_data);
    const chart = lines([...series].slice(0, 10).map(([label, pts]) => ({ label, points: pts })), from, to, 'ms');
    chart.id = 'chart-dns';
    return chart;
  }

  function webChart(checks, from, to) {
    const stateOf = p => p.ok ? 'ok' : p.outcome;
    const rows = checks.filter(([, ps]) => ps.length).map(([label, ps]) => ({ label, segments: segmentsOf(ps, from, to, stateOf,
      p => p.ok ? '#2e7d32' : '#c62828', p => p.outcome) }));
    if (!rows.length) return el('div', { class: 'muted', id: 'chart-web' }, T.no_data);
    // A carried point repeats the state in force: it has no latency of its own.
    const lat = checks.filter(([, ps]) => ps.length).map(([label, ps]) => ({ label,
      points: ps.filter(p => p.kind !== 'carried').map(p => [p.at_ms, p.rollup.latency_avg_ms]) }));
    return el('div', { id: 'chart-web' }, bands(rows, from, to, []), lines(lat, from, to, 'ms'));
  }

  function eventsTable(events) {
    if (!events.length) return el('span', { class: 'muted' }, T.none);
    const act = { raised: T.raised, cleared: T.cleared, updated: T.updated_a };
    return el('table', { id: 'events' }, el('thead', {}, el('tr', {}, [T.time, T.flag, T.action, T.detail, T.terminal].map(h => el('th', {}, h)))),
      el('tbody', {}, events.map(e => el('tr', {}, el('td', {}, when(e.at)), el('td', {}, flagBadge(e.flag)),
        el('td', {}, act[e.action] || e.action), el('td', {}, e.detail || ''), el('td', {}, e.terminal || '')))));
  }

  freshness.start(15000);
  load();
  setInterval(load, 15000);
}

// ---------- the monthly availability report ----------
// 月次稼働率報告書: one site, one month (?month=YYYY-MM, the current one by default), in Japanese
// for the clinic whatever the dashboard's language; the browser prints it (print CSS: A4, no
// navigation). Every figure and text is the API's (GET /api/sites/{id}/availability).
function availabilityPage() {
  const raw = location.pathname.split('/')[2] || '';
  let id;
  try { id = decodeURIComponent(raw); } catch (_) { id = raw; }
  const q = new URLSearchParams(location.search);
  const now = new Date(Date.now() + 9 * 3600e3);
  const month = q.get('month') || `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
  const shift = (m, d) => {
    const [y, mo] = m.split('-').map(Number);
    const t = new Date(Date.UTC(y, mo - 1 + d, 1));
    return `${t.getUTCFullYear()}-${String(t.getUTCMonth() + 1).padStart(2, '0')}`;
  };
  const go = m => `/sites/${encodeURIComponent(id)}/availability?month=${m}`;
  const body = el('main', { id: 'report', class: 'report' }, '読み込み中…');
  document.body.append(
    el('header', { class: 'noprint' }, el('a', { href: `/sites/${encodeURIComponent(id)}` }, `← 拠点 ${id}`),
      el('h1', {}, 'OQS Fleet Monitor — 月次稼働率'), el('span', { class: 'spacer' }),
      el('a', { href: go(shift(month, -1)), id: 'prev-month' }, '← 前月'), el('a', { href: go(shift(month, 1)), id: 'next-month' }, '翌月 →'),
      el('a', { href: `/api/availability.csv?month=${month}`, id: 'fleet-csv' }, '全拠点CSV'),
      el('button', { id: 'print', onclick: () => window.print() }, '印刷・PDF保存')),
    body);
  const hm = min => {
    const m = Math.round(min);
    return `${Math.floor(m / 60)}時間${m % 60}分`;
  };
  const at = iso => (iso ? jst(new Date(iso), { year: 'numeric', month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' }) : '');
  api(`/api/sites/${encodeURIComponent(id)}/availability?month=${encodeURIComponent(month)}`).then(r => {
    const [y, mo] = r.month.split('-').map(Number);
    const carrier = r.area === 'west' ? 'NTT西日本' : r.area === 'east' ? 'NTT東日本' : '';
    body.replaceChildren(
      el('h1', {}, 'オンライン資格確認 接続状況 月次稼働率報告書'),
      el('table', { class: 'meta' }, el('tbody', {},
        el('tr', {}, el('th', {}, '拠点'), el('td', { id: 'r-site' }, `${r.site_name || ''}（${r.site_id}）`)),
        el('tr', {}, el('th', {}, '所在地・回線'), el('td', {}, `${r.prefecture || ''} ${carrier}`)),
        el('tr', {}, el('th', {}, '対象月'), el('td', { id: 'r-month' }, `${y}年${mo}月（${at(r.from)} ～ ${at(r.to)}、日本時間）`)),
        el('tr', {}, el('th', {}, '作成日時'), el('td', {}, at(new Date().toISOString()))))),
      el('div', { class: 'figure', id: 'r-availability' }, r.availability_percent === null
        ? el('span', { class: 'nodata' }, 'データなし（この月の稼働率は算出できません）')
        : [el('span', { class: 'label' }, '稼働率 '), el('span', { class: 'value' }, `${r.availability_percent.toFixed(3)}%`)]),
      el('table', { class: 'summary' }, el('tbody', {},
        el('tr', {}, el('th', {}, '稼働時間'), el('td', { id: 'r-up' }, hm(r.up_minutes))),
        el('tr', {}, el('th', {}, '停止時間'), el('td', { id: 'r-down' }, hm(r.down_minutes))),
        el('tr', {}, el('th', {}, '休診日・メンテナンス（除外）'), el('td', { id: 'r-maint' }, hm(r.maintenance_minutes))),
        el('tr', {}, el('th', {}, 'データなし（除外）'), el('td', { id: 'r-nodata' }, hm(r.no_data_minutes))))),
      el('h2', {}, `停止の記録（${r.outages.length}件）`),
      r.outages.length
        ? el('table', { id: 'r-outages', class: 'outages' },
          el('thead', {}, el('tr', {}, ['開始', '終了', '時間', '原因', '接続ガイド'].map(h => el('th', {}, h)))),
          el('tbody', {}, r.outages.map(o => el('tr', { 'data-outage': o.cause },
            el('td', {}, at(o.start)), el('td', {}, o.ongoing ? `${at(o.end)}（継続中）` : at(o.end)), el('td', {}, hm(o.minutes)),
            el('td', {}, o.causes.map(c => (flagInfo(c) || { label_ja: c }).label_ja).join('、')),
            el('td', {}, `${o.guide_step ? `手順${o.guide_step} ` : ''}${o.guide_page}`)))))
        : el('p', { id: 'r-no-outage' }, 'この月の停止はありませんでした。'),
      el('h2', {}, '算出方法'),
      el('p', { class: 'definition' }, r.definition_ja),
      r.known_from ? el('p', { class: 'muted' }, `監視データの開始: ${at(r.known_from)}`) : '',
      el('p', { class: 'muted footer' }, 'OQS Fleet Monitor により作成'));
    document.title = `月次稼働率 ${r.site_name || r.site_id} ${y}年${mo}月`;
  }, e => { body.textContent = e.message; });
}

document.documentElement.lang = LANG;
loadCatalog().then(() => {
  const page = document.body.dataset.page;
  if (page === 'site') sitePage(); else if (page === 'fleet') fleetPage();
  else if (page === 'availability') availabilityPage(); else overviewPage();
},
  e => { document.body.textContent = `${T.loading} /api/catalog: ${e.message}`; });
