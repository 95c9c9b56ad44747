//! The `lineauth` check (guide steps 1, 5, 6): the line-authentication portal's page, its state
//! and its code.

use super::{outcome, sample_of, text};
use crate::catalog::Check;
use crate::config::Limits;
use crate::samples::Sample;
use oqs_proto::v1::Report;
use oqs_proto::wire_name;
use serde_json::json;

pub fn validate(r: &Report, l: &Limits) -> Result<(), String> {
    let Some(p) = &r.lineauth else {
        return Ok(());
    };
    outcome("lineauth", p.outcome)?;
    text("lineauth.error", &p.error, l.max_text_chars)?;
    text("lineauth.url", &p.url, l.max_url_chars)?;
    text("lineauth.excerpt", &p.excerpt, l.max_text_chars)?;
    let code = p.error_code.as_bytes();
    let well_formed =
        code.len() == 6 && code[0] == b'P' && code[1..].iter().all(u8::is_ascii_digit);
    if !code.is_empty() && !well_formed {
        return Err(format!(
            "lineauth.error_code {:?} is not \"P\" + 5 digits",
            p.error_code
        ));
    }
    Ok(())
}

pub fn sample(r: &Report) -> Option<Sample> {
    let la = r.lineauth.as_ref()?;
    let sig = json!({
        "state": wire_name!(LineAuthState, la.state),
        "code": la.error_code,
        "http_status": la.http_status,
        "tls_trusted": la.tls_trusted,
        "unverified_page_state": wire_name!(LineAuthState, la.unverified_page_state),
    });
    let extra = json!({ "excerpt": la.excerpt, "error": la.error });
    Some(sample_of(
        Check::Lineauth,
        la.outcome,
        la.latency_ms,
        sig,
        extra,
    ))
}

/// The portal chart's state: the page's state and its code.
pub fn chart(full: &serde_json::Value) -> serde_json::Value {
    json!({ "state": full["state"], "code": full["code"].as_str().filter(|c| !c.is_empty()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oqs_proto::v1::{LineAuthProbe, Outcome};

    #[test]
    fn a_code_is_p_and_five_digits_and_the_state_is_signed() {
        let l = Limits::default();
        let mut r = Report {
            lineauth: Some(LineAuthProbe {
                outcome: Outcome::Ok as i32,
                error_code: "P11019".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        validate(&r, &l).unwrap();
        let a = sample(&r).unwrap();
        assert_eq!(a.detail["code"], "P11019");
        r.lineauth.as_mut().unwrap().error_code = "P1101".into();
        assert!(validate(&r, &l)
            .unwrap_err()
            .contains("lineauth.error_code"));
        r.lineauth.as_mut().unwrap().error_code = "P32031".into();
        assert_ne!(sample(&r).unwrap().signature, a.signature);
    }
}
