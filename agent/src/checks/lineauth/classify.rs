//! Classifies a line-authentication portal page into the guide's states (DOMAIN.md §6) with a
//! table of text patterns: the guide's texts are the built-in defaults, and configuration may put
//! more patterns in front of them (the portal's wording can change without a new agent).
//!
//! Pages are read as a person reads them (`page.rs`: charset, visible text, NFKC) and matched with
//! all whitespace removed; patterns are normalised the same way, so a configured pattern is
//! written as a person reads the page, whatever its markup, width or line breaks.
//!
//! Pure: text in, classification out. Must never drop what it does not know: an unknown page keeps
//! its error code and a short excerpt.

use super::page;
use serde::Deserialize;

/// What a portal page says (the transport-level states — unreachable, certificate untrusted — are
/// decided by the fetch, not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    /// 「希望する」/「希望しない」: not authenticated, or the IPv6 address changed (P16, Q17).
    Consent,
    /// 「回線認証に成功しました。」 (P17).
    Success,
    /// 「回線認証済みです。」/「認証済みです。」 (Q16, Q17).
    AlreadyAuthenticated,
    /// 「時間を置いて再度試してください」 (P17).
    RetryLater,
    /// 「回線認証に失敗しました。」 (P17, Q12).
    Failed,
    /// 希望しない was chosen (Q10).
    Declined,
    /// The browser's back button was used (Q10).
    NotFromPortal,
    /// 「システムエラーが発生しました。」 (Q13).
    SystemError,
    /// 「回線情報通知処理を中断しました」, P11019 (Q9).
    IneligibleLine,
    /// 「サービス提供者からの応答がありません」, P32031 (Q11).
    NoResponse,
    /// None of the patterns matched.
    UnknownPage,
}

impl PageState {
    /// The wire enum.
    pub fn to_wire(self) -> oqs_proto::v1::LineAuthState {
        use oqs_proto::v1::LineAuthState as W;
        match self {
            PageState::Consent => W::Consent,
            PageState::Success => W::Success,
            PageState::AlreadyAuthenticated => W::AlreadyAuthenticated,
            PageState::RetryLater => W::RetryLater,
            PageState::Failed => W::Failed,
            PageState::Declined => W::Declined,
            PageState::NotFromPortal => W::NotFromPortal,
            PageState::SystemError => W::SystemError,
            PageState::IneligibleLine => W::IneligibleLine,
            PageState::NoResponse => W::NoResponse,
            PageState::UnknownPage => W::UnknownPage,
        }
    }
}

/// A portal error code: `P` + 5 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorCode(String);

impl ErrorCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One pattern: the page is in `state` when its text contains every string of `all_of`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    pub state: PageState,
    pub all_of: Vec<String>,
}

/// Why a configured pattern cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("lineauth pattern {index} ({state:?}) has an empty all_of; give at least one text")]
    Empty { index: usize, state: PageState },
    #[error("lineauth pattern {index} ({state:?}) has an empty string in all_of")]
    EmptyText { index: usize, state: PageState },
}

/// The result of classifying a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub state: PageState,
    /// The `P`+5-digit code the page shows, if any.
    pub code: Option<ErrorCode>,
    /// The page's visible text, whitespace-collapsed, at most [`EXCERPT_CHARS`] characters.
    pub excerpt: String,
}

/// The longest excerpt kept.
pub const EXCERPT_CHARS: usize = 200;

fn pat(state: PageState, all_of: &[&str]) -> Pattern {
    Pattern {
        state,
        all_of: all_of.iter().map(|s| s.to_string()).collect(),
    }
}

/// The guide's texts, most specific first (the first match wins).
pub fn default_patterns() -> Vec<Pattern> {
    use PageState::*;
    vec![
        // Q10's page also says 「回線認証に失敗しました。」, so it comes before Failed.
        pat(Declined, &["回線認証に失敗しました", "通知意思確認画面"]),
        pat(IneligibleLine, &["回線情報通知処理を中断しました"]),
        pat(NoResponse, &["サービス提供者からの応答がありません"]),
        pat(
            NotFromPortal,
            &["回線認証ポータルサイトからアクセスしてください"],
        ),
        pat(SystemError, &["システムエラーが発生しました"]),
        pat(RetryLater, &["時間を置いて再度試してください"]),
        pat(Failed, &["回線認証に失敗しました"]),
        pat(Success, &["回線認証に成功しました"]),
        // The guide's FAQ Q17 words it this way.
        pat(Success, &["回線認証が成功しました"]),
        // Also matches 「回線認証済みです。」.
        pat(AlreadyAuthenticated, &["認証済みです"]),
        pat(Consent, &["希望する", "希望しない"]),
    ]
}

/// A pattern table: configured patterns first, then the guide's.
#[derive(Debug, Clone)]
pub struct Classifier {
    patterns: Vec<Pattern>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self {
            patterns: default_patterns().into_iter().map(squeezed).collect(),
        }
    }
}

/// A pattern as it is matched: normalised and without whitespace, like the page.
fn squeezed(mut p: Pattern) -> Pattern {
    p.all_of = p
        .all_of
        .iter()
        .map(|s| page::squeeze(&page::normalize(s)))
        .collect();
    p
}

impl Classifier {
    /// The guide's patterns with `extra` checked first.
    pub fn with_extra(extra: Vec<Pattern>) -> Result<Self, PatternError> {
        for (index, p) in extra.iter().enumerate() {
            if p.all_of.is_empty() {
                return Err(PatternError::Empty {
                    index,
                    state: p.state,
                });
            }
            if p.all_of.iter().any(|s| s.trim().is_empty()) {
                return Err(PatternError::EmptyText {
                    index,
                    state: p.state,
                });
            }
        }
        let mut patterns = extra;
        patterns.extend(default_patterns());
        Ok(Self {
            patterns: patterns.into_iter().map(squeezed).collect(),
        })
    }

    /// Classifies a page's bytes as served (`content_type`: the response's header, if any).
    pub fn classify_bytes(&self, body: &[u8], content_type: Option<&str>) -> Classification {
        self.classify(&page::decode(body, content_type).0)
    }

    /// Classifies a page (HTML or text, already decoded).
    pub fn classify(&self, page: &str) -> Classification {
        let text = page::normalize(&page::visible_text(page));
        let code = find_code(&text);
        let flat = page::squeeze(&text);
        let by_text = self
            .patterns
            .iter()
            .find(|p| p.all_of.iter().all(|s| flat.contains(s.as_str())))
            .map(|p| p.state);
        let state = by_text.unwrap_or(match code.as_ref().map(|c| c.as_str()) {
            Some("P11019") => PageState::IneligibleLine,
            Some("P32031") => PageState::NoResponse,
            _ => PageState::UnknownPage,
        });
        Classification {
            state,
            code,
            excerpt: text.chars().take(EXCERPT_CHARS).collect(),
        }
    }
}

/// The first `P` + 5 digits that stands alone (not inside a longer word or number).
fn find_code(text: &str) -> Option<ErrorCode> {
    let chars: Vec<char> = text.chars().collect();
    for i in 0..chars.len() {
        if chars[i] != 'P' || i + 6 > chars.len() {
            continue;
        }
        let before_ok = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        let digits_ok = chars[i + 1..i + 6].iter().all(|c| c.is_ascii_digit());
        let after_ok = chars.get(i + 6).is_none_or(|c| !c.is_ascii_alphanumeric());
        if before_ok && digits_ok && after_ok {
            return Some(ErrorCode(chars[i..i + 6].iter().collect()));
        }
    }
    None
}

#[cfg(test)]
#[path = "classify_variants.rs"]
mod variants;

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/lineauth/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_guide_fixture_gets_its_state_and_code() {
        use PageState::*;
        let c = Classifier::default();
        let cases = [
            ("consent.html", Consent, None),
            ("success.html", Success, None),
            ("success_variant_q17.html", Success, None),
            ("already_authenticated.html", AlreadyAuthenticated, None),
            (
                "already_authenticated_short.html",
                AlreadyAuthenticated,
                None,
            ),
            ("retry_later.html", RetryLater, None),
            ("failed.html", Failed, None),
            ("declined.html", Declined, None),
            ("not_from_portal.html", NotFromPortal, None),
            ("system_error.html", SystemError, None),
            ("p11019.html", IneligibleLine, Some("P11019")),
            ("p32031.html", NoResponse, Some("P32031")),
            ("unknown_code.html", UnknownPage, Some("P40401")),
            ("unknown_page.html", UnknownPage, None),
        ];
        for (file, state, code) in cases {
            let got = c.classify(&fixture(file));
            assert_eq!(got.state, state, "{file}: {got:?}");
            assert_eq!(got.code.as_ref().map(|c| c.as_str()), code, "{file}");
        }
    }

    #[test]
    fn unknown_pages_keep_a_short_excerpt() {
        let got = Classifier::default().classify(&fixture("unknown_page.html"));
        assert!(got.excerpt.contains("メンテナンス中"), "{}", got.excerpt);
        assert!(!got.excerpt.contains('<'));
        let long = format!("<p>{}</p>", "あ".repeat(1000));
        assert_eq!(
            Classifier::default()
                .classify(&long)
                .excerpt
                .chars()
                .count(),
            EXCERPT_CHARS
        );
    }

    #[test]
    fn a_bare_code_decides_when_no_text_matches() {
        let c = Classifier::default();
        assert_eq!(
            c.classify("エラーコード：P11019").state,
            PageState::IneligibleLine
        );
        assert_eq!(
            c.classify("エラーコード： P32031").state,
            PageState::NoResponse
        );
        assert_eq!(
            c.classify("HTTP500123 XP12345").code,
            None,
            "codes stand alone"
        );
    }

    #[test]
    fn configured_patterns_come_first_and_are_checked() {
        let c = Classifier::with_extra(vec![Pattern {
            state: PageState::RetryLater,
            all_of: vec!["メンテナンス中".into()],
        }])
        .unwrap();
        assert_eq!(
            c.classify(&fixture("unknown_page.html")).state,
            PageState::RetryLater
        );
        assert!(matches!(
            Classifier::with_extra(vec![Pattern {
                state: PageState::Consent,
                all_of: vec![]
            }]),
            Err(PatternError::Empty { index: 0, .. })
        ));
    }

    #[test]
    fn scripts_and_styles_are_not_page_text() {
        let page = "<script>var s='回線認証に失敗しました';</script><style>.x{}</style><p>認証済みです。</p>";
        assert_eq!(
            Classifier::default().classify(page).state,
            PageState::AlreadyAuthenticated
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        let c = Classifier::default();
        for page in [
            "<",
            "<script",
            "P",
            "P1234",
            "Ｐ",
            "&amp;<<>>",
            "\u{0}\u{FFFF}",
            "",
        ] {
            let _ = c.classify(page);
        }
    }
}
