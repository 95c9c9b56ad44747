//! A portal page as a person reads it: the bytes decoded by the charset the server declares
//! (Content-Type), else a `<meta charset>` / `<meta http-equiv>` in the first KiB, else sniffed
//! (UTF-8, ISO-2022-JP, Shift_JIS/CP932, EUC-JP); the HTML turned into the text a browser shows
//! by html5ever's tokenizer (the WHATWG tokenizer: character references, comments, raw-text
//! elements and odd spacing as browsers handle them); then Unicode NFKC.
//!
//! Why html5ever: it is the spec's tokenizer (Servo's), so `<script >`, `<!-- -->` inside
//! attributes, unclosed tags and entities come out as a browser's would, and its tokenizer alone
//! (no tree) is enough for text. Why NFKC: full-width ＡＢＣ/１２３, half-width ｶﾅ and compatibility
//! forms are one character each afterwards, so the guide's words match however the page is
//! typed.
//!
//! Must never lose a code to decoding: a page whose declared charset does not fit its bytes is
//! decoded by what does fit (codes are ASCII and survive any of them), and nothing here panics on
//! any input.

use encoding_rs::{Encoding, EUC_JP, ISO_2022_JP, SHIFT_JIS, UTF_8};
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, EndTag, StartTag, Tag, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use std::cell::{Cell, RefCell};

/// The charset label of a Content-Type header (`text/html; charset=Shift_JIS`).
fn content_type_charset(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("charset"))
            .then(|| Encoding::for_label(v.trim().trim_matches(['"', '\'']).as_bytes()))
            .flatten()
    })
}

/// A `<meta charset=…>` or `<meta http-equiv="Content-Type" content="…charset=…">` in the first
/// 1024 bytes (the HTML standard's prescan window).
fn meta_charset(body: &[u8]) -> Option<&'static Encoding> {
    let head: Vec<u8> = body[..body.len().min(1024)].to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = find(&head[at..], b"<meta") {
        let start = at + i;
        let end = head[start..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(head.len(), |e| start + e);
        let tag = &head[start..end];
        if let Some(c) = find(tag, b"charset") {
            let rest = &tag[c + 7..];
            let rest = trim_start(rest);
            if let Some(rest) = rest.strip_prefix(b"=") {
                let rest = trim_start(rest);
                let rest = rest
                    .strip_prefix(b"\"")
                    .or_else(|| rest.strip_prefix(b"'"))
                    .unwrap_or(rest);
                let label: Vec<u8> = rest
                    .iter()
                    .take_while(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')
                    })
                    .copied()
                    .collect();
                if let Some(e) = Encoding::for_label(&label) {
                    return Some(e);
                }
            }
        }
        at = end.max(start + 1);
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Decodes `body` with `enc` if its bytes fit it exactly.
fn clean(enc: &'static Encoding, body: &[u8]) -> Option<String> {
    enc.decode_without_bom_handling_and_without_replacement(body)
        .map(|s| s.into_owned())
}

/// What the bytes fit, for a page that declares nothing (or declares what does not fit).
fn sniff(body: &[u8]) -> Option<(&'static Encoding, String)> {
    if let Some(s) = clean(UTF_8, body) {
        return Some((UTF_8, s));
    }
    // ISO-2022-JP announces itself with escape sequences (ESC $ B, ESC $ @, ESC ( J).
    if find(body, b"\x1b$B").is_some() || find(body, b"\x1b$@").is_some() {
        if let Some(s) = clean(ISO_2022_JP, body) {
            return Some((ISO_2022_JP, s));
        }
    }
    [SHIFT_JIS, EUC_JP]
        .into_iter()
        .find_map(|e| clean(e, body).map(|s| (e, s)))
}

/// The page's text: decoded as the module doc says. Returns the encoding used, for the excerpt.
pub fn decode(body: &[u8], content_type: Option<&str>) -> (String, &'static Encoding) {
    if let Some((enc, bom)) = Encoding::for_bom(body) {
        let (s, _) = enc.decode_without_bom_handling(&body[bom..]);
        return (s.into_owned(), enc);
    }
    let declared = content_type
        .and_then(content_type_charset)
        .or_else(|| meta_charset(body));
    if let Some(enc) = declared {
        if let Some(s) = clean(enc, body) {
            return (s, enc);
        }
        // The declaration does not fit the bytes: what fits them wins, else the least broken
        // reading (a lead byte eaten by the wrong charset would glue its trail byte to a code).
        if let Some((e, s)) = sniff(body) {
            return (s, e);
        }
        return least_broken(body, Some(enc));
    }
    match sniff(body) {
        Some((e, s)) => (s, e),
        None => least_broken(body, None),
    }
}

/// The reading with the fewest replacement characters (the declared charset first on a tie).
fn least_broken(body: &[u8], declared: Option<&'static Encoding>) -> (String, &'static Encoding) {
    declared
        .into_iter()
        .chain([UTF_8, SHIFT_JIS, EUC_JP, ISO_2022_JP])
        .map(|e| {
            let (s, _) = e.decode_without_bom_handling(body);
            let broken = s.chars().filter(|c| *c == '\u{FFFD}').count();
            (broken, s.into_owned(), e)
        })
        .min_by_key(|(broken, _, _)| *broken)
        .map(|(_, s, e)| (s, e))
        .unwrap_or_else(|| (String::from_utf8_lossy(body).into_owned(), UTF_8))
}

/// Elements whose boundaries do not break a phrase (a phrase split by `<span>`/`<b>`/`<ruby>` is
/// one phrase); every other tag is a word break for the excerpt. Matching ignores whitespace
/// anyway.
const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd",
    "mark", "nobr", "q", "rb", "ruby", "s", "samp", "small", "span", "strong", "sub", "sup",
    "time", "tt", "u", "var", "wbr",
];

/// Whose text a person does not see: scripts, styles, templates, ruby annotations (the reading
/// above the characters would split the phrase).
const HIDDEN: &[&str] = &[
    "script", "style", "template", "rt", "rp", "noembed", "noframes",
];

#[derive(Default)]
struct TextSink {
    out: RefCell<String>,
    /// Open hidden elements (a `<template>` may nest).
    hidden: Cell<u32>,
}

impl TextSink {
    fn push(&self, s: &str) {
        self.out.borrow_mut().push_str(s);
    }

    fn tag(&self, tag: &Tag) -> TokenSinkResult<()> {
        let name: &str = &tag.name;
        let attr = |n: &str| {
            tag.attrs
                .iter()
                .find(|a| &*a.name.local == n)
                .map(|a| a.value.to_string())
        };
        if HIDDEN.contains(&name) {
            match tag.kind {
                StartTag if !tag.self_closing => self.hidden.set(self.hidden.get() + 1),
                EndTag => self.hidden.set(self.hidden.get().saturating_sub(1)),
                StartTag => {}
            }
        }
        if !INLINE.contains(&name) {
            self.push(" ");
        }
        if tag.kind == StartTag && self.hidden.get() == 0 {
            match name {
                // Buttons and their labels are part of the page (the consent page's 希望する).
                "input" => {
                    let kind = attr("type").unwrap_or_default().to_ascii_lowercase();
                    if !matches!(kind.as_str(), "hidden" | "password") {
                        if let Some(v) = attr("value").or_else(|| attr("alt")) {
                            self.push(&v);
                            self.push(" ");
                        }
                    }
                }
                "img" | "area" => {
                    if let Some(v) = attr("alt") {
                        self.push(&v);
                    }
                }
                _ => {}
            }
        }
        if tag.kind == StartTag {
            match name {
                "script" => {
                    return TokenSinkResult::RawData(
                        html5ever::tokenizer::states::RawKind::ScriptData,
                    )
                }
                "style" | "noembed" | "noframes" | "xmp" | "iframe" => {
                    return TokenSinkResult::RawData(html5ever::tokenizer::states::RawKind::Rawtext)
                }
                "title" | "textarea" => {
                    return TokenSinkResult::RawData(html5ever::tokenizer::states::RawKind::Rcdata)
                }
                "plaintext" => return TokenSinkResult::Plaintext,
                _ => {}
            }
        }
        TokenSinkResult::Continue
    }
}

impl TokenSink for TextSink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::TagToken(tag) => return self.tag(&tag),
            Token::CharacterTokens(t) if self.hidden.get() == 0 => self.push(&t),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// The text a browser shows for `html` (whitespace as the page has it).
pub fn visible_text(html: &str) -> String {
    let sink = TextSink::default();
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tok = Tokenizer::new(sink, TokenizerOpts::default());
    let _ = tok.feed(&input);
    tok.end();
    tok.sink.out.take()
}

/// NFKC, then every run of whitespace one space (U+3000 included: NFKC makes it a space).
pub fn normalize(s: &str) -> String {
    let nfkc = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(s);
    let mut out = String::with_capacity(nfkc.len());
    for w in nfkc.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// [`normalize`]d text without any whitespace: what patterns are matched against (Japanese has
/// no word spaces, so a line break inside a phrase must not break it).
pub fn squeeze(normalized: &str) -> String {
    let flat: String = normalized.chars().filter(|c| !c.is_whitespace()).collect();
    // NFKC turns a spacing sound mark (゜ after ホ) into a space and a combining mark; without the
    // space the pair composes again (ポ), as a person reads it.
    icu_normalizer::ComposingNormalizerBorrowed::new_nfc()
        .normalize(&flat)
        .into_owned()
}
