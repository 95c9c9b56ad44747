//! The classifier against pages with the guide's texts in markup, encodings and spacing it has
//! never seen: every state × every wrapper × every encoding (generated, not fixtures), plus
//! decoys in comments, scripts, styles and templates that must not be read.

use super::*;
use encoding_rs::{Encoding, EUC_JP, ISO_2022_JP, SHIFT_JIS, UTF_8};

/// The guide's words for each state (P17, FAQ Q9–Q17).
fn texts() -> Vec<(PageState, &'static str, Option<&'static str>)> {
    use PageState::*;
    vec![
        (Consent, "回線情報の通知について。通知を希望しますか。|希望する|希望しない", None),
        (Success, "回線認証に成功しました。", None),
        (AlreadyAuthenticated, "回線認証済みです。", None),
        (RetryLater, "時間を置いて再度試してください", None),
        (Failed, "回線認証に失敗しました。", None),
        (
            Declined,
            "回線認証に失敗しました。認証を行うには通知意思確認画面にて「希望する」を選択してください",
            None,
        ),
        (NotFromPortal, "回線認証ポータルサイトからアクセスしてください。", None),
        (SystemError, "システムエラーが発生しました。", None),
        (IneligibleLine, "回線情報通知処理を中断しました|エラーコード：P11019", Some("P11019")),
        (NoResponse, "サービス提供者からの応答がありません|エラーコード： P32031", Some("P32031")),
    ]
}

/// A decoy of another state, hidden from a person (comment, script, style, template).
fn decoy(state: PageState) -> &'static str {
    if state == PageState::Success {
        "システムエラーが発生しました。"
    } else {
        "回線認証に成功しました。"
    }
}

/// Splits a phrase after its third character with `sep`.
fn split3(t: &str, sep: &str) -> String {
    let mut out = String::new();
    for (i, c) in t.chars().enumerate() {
        if i == 3 {
            out.push_str(sep);
        }
        out.push(c);
    }
    out
}

fn half_width(t: &str) -> String {
    let map = [
        ("シ", "ｼ"),
        ("ス", "ｽ"),
        ("テ", "ﾃ"),
        ("ム", "ﾑ"),
        ("エ", "ｴ"),
        ("ラ", "ﾗ"),
        ("ー", "ｰ"),
        ("サ", "ｻ"),
        ("ビ", "ﾋﾞ"),
        ("ポ", "ﾎﾟ"),
        ("タ", "ﾀ"),
        ("ル", "ﾙ"),
        ("イ", "ｲ"),
        ("ト", "ﾄ"),
        ("コ", "ｺ"),
        ("ド", "ﾄﾞ"),
        ("ア", "ｱ"),
        ("ク", "ｸ"),
        ("セ", "ｾ"),
        ("「", "｢"),
        ("」", "｣"),
    ];
    map.iter().fold(t.to_string(), |s, (f, h)| s.replace(f, h))
}

fn full_width_ascii(t: &str) -> String {
    t.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect()
}

type Wrap = fn(PageState, &str) -> String;

/// Markup a portal might use. `|` in a text separates what the page shows apart (buttons).
fn wrappers() -> Vec<(&'static str, Wrap)> {
    vec![
        ("plain", |_, t| {
            format!("<p>{}</p>", t.replace('|', "</p><p>"))
        }),
        ("spans", |_, t| {
            t.split('|')
                .map(|p| format!("<span>{}</span>", split3(p, "</span><span class=\"em\">")))
                .collect::<Vec<_>>()
                .join("<br>")
        }),
        ("bold and line breaks", |_, t| {
            t.split('|')
                .map(|p| {
                    format!(
                        "<div>\n      <b>{}</b>\n    </div>",
                        split3(p, "\n        ")
                    )
                })
                .collect()
        }),
        ("ruby", |_, t| {
            t.split('|')
                .map(|p| {
                    let mut cs = p.chars();
                    let first = cs.next().unwrap();
                    format!(
                        "<p><ruby>{first}<rp>(</rp><rt>よみ</rt><rp>)</rp></ruby>{}</p>",
                        cs.as_str()
                    )
                })
                .collect()
        }),
        ("buttons", |_, t| {
            let mut parts = t.split('|');
            let head = parts.next().unwrap_or("");
            let rest: String = parts
                .enumerate()
                .map(|(i, p)| {
                    if i % 2 == 0 {
                        format!("<input type=\"submit\" value=\"{p}\">")
                    } else {
                        format!("<button type=\"button\">{p}</button>")
                    }
                })
                .collect();
            format!("<form><h2>{head}</h2>{rest}<input type=\"hidden\" value=\"P99999\"></form>")
        }),
        ("character references", |_, t| {
            format!(
                "<p>{}</p>",
                t.replace('認', "&#35469;")
                    .replace('回', "&#x56DE;")
                    .replace('|', "&nbsp;")
            )
        }),
        ("comments and scripts", |s, t| {
            format!(
                "<!DOCTYPE html><html><head><style type=\"text/css\" >.x::after{{content:\"{d}\"}}</style >\
                 <script >var m = \"{d}\";</script\n></head><body><!--{d}--><template><p>{d}</p></template>\
                 <p>{}</p><!-- a comment -- with -- dashes --></body></html>",
                split3(&t.replace('|', "</p><p>"), "<!-- mid -->"),
                d = decoy(s),
            )
        }),
        ("table layout", |_, t| {
            format!(
                "<table border=0><tr><td class=msg>{}</td></tr></table>",
                t.replace('|', "</td></tr><tr><td>")
            )
        }),
        ("half-width katakana and full-width codes", |_, t| {
            let t = half_width(t);
            let t = t
                .replace("P11019", &full_width_ascii("P11019"))
                .replace("P32031", &full_width_ascii("P32031"));
            format!("<p>{}</p>", t.replace('|', "\u{3000}"))
        }),
    ]
}

/// How the page reaches the agent: (name, encoding, Content-Type header, meta tag, BOM).
fn encodings() -> Vec<(
    &'static str,
    &'static Encoding,
    Option<&'static str>,
    &'static str,
    bool,
)> {
    vec![
        (
            "UTF-8 in the header",
            UTF_8,
            Some("text/html; charset=UTF-8"),
            "",
            false,
        ),
        ("UTF-8 with a BOM, nothing declared", UTF_8, None, "", true),
        (
            "Shift_JIS in a meta charset only",
            SHIFT_JIS,
            Some("text/html"),
            "<meta charset=\"Shift_JIS\">",
            false,
        ),
        (
            "CP932 in the header",
            SHIFT_JIS,
            Some("text/html;charset=windows-31j"),
            "",
            false,
        ),
        (
            "EUC-JP in a meta http-equiv",
            EUC_JP,
            None,
            "<META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=euc-jp\">",
            false,
        ),
        (
            "ISO-2022-JP in the header",
            ISO_2022_JP,
            Some("text/html; charset=ISO-2022-JP"),
            "",
            false,
        ),
        ("Shift_JIS undeclared (sniffed)", SHIFT_JIS, None, "", false),
        (
            "Shift_JIS declared as UTF-8 (a lying server)",
            SHIFT_JIS,
            Some("text/html; charset=utf-8"),
            "",
            false,
        ),
    ]
}

#[test]
fn every_state_in_every_markup_and_encoding_is_read_as_the_guide_means() {
    let c = Classifier::default();
    let mut failures = Vec::new();
    let mut n = 0;
    for (state, text, code) in texts() {
        for (wname, wrap) in wrappers() {
            let html = format!(
                "<html><head>{{meta}}<title>回線認証</title></head><body>{}</body></html>",
                wrap(state, text)
            );
            for (ename, enc, header, meta, bom) in encodings() {
                let page = html.replace("{meta}", meta);
                let (bytes, _, unmappable) = enc.encode(&page);
                assert!(!unmappable, "{ename} cannot carry {wname}");
                let mut body = if bom {
                    b"\xEF\xBB\xBF".to_vec()
                } else {
                    Vec::new()
                };
                body.extend_from_slice(&bytes);
                let got = c.classify_bytes(&body, header);
                n += 1;
                if got.state != state || got.code.as_ref().map(|c| c.as_str()) != code {
                    failures.push(format!(
                        "{state:?} / {wname} / {ename}: got {:?} {:?} ({})",
                        got.state, got.code, got.excerpt
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} variants misread:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn codes_are_found_wherever_they_stand() {
    let c = Classifier::default();
    for (page, code) in [
        ("<p>エラーコード：P11019</p>", "P11019"),
        ("<p>コード P32031</p>", "P32031"),
        ("<p>エラー<b>P40401</b>が発生</p>", "P40401"),
        ("<p>エラーコード：Ｐ４０４０２</p>", "P40402"),
        (
            "<p>エラーコード：<span>P</span><span>40403</span></p>",
            "P40403",
        ),
        ("<td>ERROR</td><td>P40404</td>", "P40404"),
    ] {
        let got = c.classify(page);
        assert_eq!(got.code.as_ref().map(|c| c.as_str()), Some(code), "{page}");
    }
    assert_eq!(c.classify("<p>HTTP500123 XP12345</p>").code, None);
    assert_eq!(
        c.classify("<input type=hidden value=P11019><p>ok</p>").code,
        None,
        "hidden inputs are not shown"
    );
}

#[test]
fn broken_bytes_never_hide_a_code() {
    let c = Classifier::default();
    // Shift_JIS text declared as EUC-JP, with stray bytes: the state may be lost, the code not.
    let (sjis, _, _) =
        SHIFT_JIS.encode("<p>回線情報通知処理を中断しました</p><p>エラーコード：P11019</p>");
    let mut body = sjis.into_owned();
    body.splice(3..3, [0xFF, 0x80, 0xFE]);
    let got = c.classify_bytes(&body, Some("text/html; charset=EUC-JP"));
    assert_eq!(
        got.code.as_ref().map(|c| c.as_str()),
        Some("P11019"),
        "{got:?}"
    );
    assert_eq!(got.state, PageState::IneligibleLine);
}

#[test]
fn configured_patterns_are_written_as_a_person_reads_them() {
    // Full-width, spaced, as typed in a config: matches the half-width, unspaced page.
    let c = Classifier::with_extra(vec![Pattern {
        state: PageState::RetryLater,
        all_of: vec!["ただいま メンテナンス中です".into(), "ＯＱＳ".into()],
    }])
    .unwrap();
    let got = c.classify("<p>ただいま<br>ﾒﾝﾃﾅﾝｽ中です</p><p>OQS</p>");
    assert_eq!(got.state, PageState::RetryLater, "{got:?}");
}
