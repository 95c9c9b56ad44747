//! The certificate check: the certificates the OQS connection depends on and when they expire —
//! the OQS connection certificate (the trust anchor: the `oqs_ca` bundle and any PEM file named
//! in `[certs] pem_paths`; on Windows also the machine's Trusted Root store, by subject) and the
//! terminal's electronic certificate (Windows: the machine's Personal store, picked by the
//! `[certs]` match rules on the issuer or subject). Its electronic certificate is valid 3 years 3
//! months and the MPKI client warns from 90 days: the NOC should know first.
//!
//! Reads files and the certificate store on a blocking thread; must never fail the round: what
//! cannot be read is said in `error` (the outcome fails), the rest is still reported.

use super::Context;
use oqs_proto::text_limits::{CERTS, CERT_TEXT};
use oqs_proto::v1::{CertCheck, CertInfo, CertSource, Outcome};
use std::path::{Path, PathBuf};

/// Which certificates to read (`[certs]` in the agent's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRules {
    /// PEM files of trust anchors to watch (the `oqs_ca` bundle is added to these).
    pub pem_paths: Vec<PathBuf>,
    /// Windows: a Personal-store certificate whose issuer or subject contains one of these is
    /// the terminal's electronic certificate.
    pub client_contains: Vec<String>,
    /// Windows: a Trusted Root certificate whose subject contains one of these is the OQS
    /// connection certificate.
    pub anchor_contains: Vec<String>,
}

impl Default for CertRules {
    fn default() -> Self {
        Self {
            pem_paths: Vec::new(),
            client_contains: [
                "オンライン請求",
                "オンライン資格確認",
                "Online Claims",
                "MEDIS",
                "MPKI",
            ]
            .map(String::from)
            .to_vec(),
            anchor_contains: ["オンライン資格確認", "OQS", "oqs-pdl"]
                .map(String::from)
                .to_vec(),
        }
    }
}

fn cut(s: &str) -> String {
    s.chars().take(CERT_TEXT).collect()
}

/// Subject, issuer and notAfter (Unix ms) of one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<(String, String, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let not_after = cert.validity().not_after.timestamp().saturating_mul(1000);
    Ok((
        cut(&cert.subject().to_string()),
        cut(&cert.issuer().to_string()),
        not_after,
    ))
}

/// Every certificate of a PEM file, as trust anchors.
fn pem_file(path: &Path) -> Result<Vec<CertInfo>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let blocks = pem::parse_many(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for b in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
        let (subject, issuer, not_after_ms) =
            parse_der(b.contents()).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(CertInfo {
            source: CertSource::TrustAnchor as i32,
            subject,
            issuer,
            not_after_ms,
            location: cut(&path.display().to_string()),
            matched_by: String::new(),
        });
    }
    if out.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(out)
}

/// The first rule `text` matches, as "contains …".
pub fn matched(rules: &[String], fields: &[(&str, &str)]) -> Option<String> {
    rules.iter().find_map(|r| {
        fields
            .iter()
            .find(|(_, v)| v.contains(r.as_str()))
            .map(|(name, _)| cut(&format!("{name} contains {r:?}")))
    })
}

/// Reads every configured place (blocking).
pub fn read(rules: &CertRules, oqs_ca: Option<&Path>) -> CertCheck {
    let mut certs = Vec::new();
    let mut errors = Vec::new();
    for p in oqs_ca
        .into_iter()
        .chain(rules.pem_paths.iter().map(PathBuf::as_path))
    {
        match pem_file(p) {
            Ok(mut c) => certs.append(&mut c),
            Err(e) => errors.push(e),
        }
    }
    #[cfg(windows)]
    {
        for (store, source, contains) in [
            ("MY", CertSource::Client, &rules.client_contains),
            ("ROOT", CertSource::TrustAnchor, &rules.anchor_contains),
        ] {
            match store::machine(store, source, contains) {
                Ok(mut c) => certs.append(&mut c),
                Err(e) => errors.push(e),
            }
        }
    }
    certs.truncate(CERTS);
    CertCheck {
        outcome: if errors.is_empty() {
            Outcome::Ok as i32
        } else {
            Outcome::Failed as i32
        },
        error: cut(&errors.join("; ")),
        certs,
    }
}

pub async fn run(ctx: &Context<'_>) -> CertCheck {
    let rules = ctx.probes.certs.clone();
    let ca = ctx.probes.oqs_ca.clone();
    tokio::task::spawn_blocking(move || read(&rules, ca.as_deref()))
        .await
        .unwrap_or_else(|e| CertCheck {
            outcome: Outcome::Failed as i32,
            error: cut(&format!("the certificate check stopped: {e}")),
            certs: Vec::new(),
        })
}

/// The machine's certificate stores through CryptoAPI (what certlm.msc shows).
#[cfg(windows)]
#[allow(unsafe_code)]
mod store {
    use super::{cut, matched, parse_der};
    use oqs_proto::v1::{CertInfo, CertSource};
    use windows_sys::Win32::Security::Cryptography::{
        CertCloseStore, CertEnumCertificatesInStore, CertOpenStore, CERT_CONTEXT,
        CERT_STORE_OPEN_EXISTING_FLAG, CERT_STORE_PROV_SYSTEM_W, CERT_STORE_READONLY_FLAG,
        CERT_SYSTEM_STORE_LOCAL_MACHINE,
    };

    /// The certificates of `LocalMachine\{name}` that a rule matches.
    pub fn machine(
        name: &str,
        source: CertSource,
        rules: &[String],
    ) -> Result<Vec<CertInfo>, String> {
        let wide: Vec<u16> = name.encode_utf16().chain(Some(0)).collect();
        // SAFETY: a system store opened read-only by a NUL-terminated name; closed below.
        let store = unsafe {
            CertOpenStore(
                CERT_STORE_PROV_SYSTEM_W,
                0,
                0,
                CERT_SYSTEM_STORE_LOCAL_MACHINE
                    | CERT_STORE_READONLY_FLAG
                    | CERT_STORE_OPEN_EXISTING_FLAG,
                wide.as_ptr().cast(),
            )
        };
        if store.is_null() {
            return Err(format!(
                "LocalMachine\\{name}: cannot open the store ({})",
                std::io::Error::last_os_error()
            ));
        }
        let mut out = Vec::new();
        let mut ctx: *mut CERT_CONTEXT = std::ptr::null_mut();
        loop {
            // SAFETY: the previous context is handed back (freed by the call), as documented.
            ctx = unsafe { CertEnumCertificatesInStore(store, ctx) };
            if ctx.is_null() {
                break;
            }
            // SAFETY: a context from the store holds its encoded certificate for its lifetime.
            let der = unsafe {
                std::slice::from_raw_parts((*ctx).pbCertEncoded, (*ctx).cbCertEncoded as usize)
            };
            let Ok((subject, issuer, not_after_ms)) = parse_der(der) else {
                continue;
            };
            let fields: &[(&str, &str)] = match source {
                CertSource::Client => &[("issuer", &issuer), ("subject", &subject)],
                _ => &[("subject", &subject)],
            };
            if let Some(rule) = matched(rules, fields) {
                out.push(CertInfo {
                    source: source as i32,
                    subject,
                    issuer,
                    not_after_ms,
                    location: cut(&format!("LocalMachine\\{name}")),
                    matched_by: rule,
                });
            }
        }
        // SAFETY: the store opened above; enumeration ended, so no context is held.
        unsafe { CertCloseStore(store, 0) };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_pem(cn: &str, days: i64) -> String {
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn pem_files_give_each_certificates_expiry_and_unreadable_ones_are_said() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("oqs-ca.pem");
        std::fs::write(
            &ca,
            cert_pem("OQS Connection Root CA", 20) + &cert_pem("Second", 400),
        )
        .unwrap();
        let missing = dir.path().join("gone.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let rules = CertRules {
            pem_paths: vec![missing.clone(), junk.clone()],
            ..CertRules::default()
        };
        let c = read(&rules, Some(&ca));
        assert_eq!(c.certs.len(), 2, "{c:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let days = (c.certs[0].not_after_ms - now) / 86_400_000;
        assert!((19..=20).contains(&days), "{days}");
        assert!(
            c.certs[0].subject.contains("OQS Connection Root CA"),
            "{:?}",
            c.certs[0]
        );
        assert_eq!(c.certs[0].source, CertSource::TrustAnchor as i32);
        assert_eq!(c.outcome, Outcome::Failed as i32);
        assert!(
            c.error.contains("gone.pem") && c.error.contains("junk.pem"),
            "{}",
            c.error
        );
        // Nothing configured: nothing read, nothing wrong.
        let c = read(&CertRules::default(), None);
        #[cfg(not(windows))]
        assert!(c.certs.is_empty() && c.outcome == Outcome::Ok as i32);
        let _ = c;
    }

    #[test]
    fn the_match_rules_name_what_matched() {
        let rules = CertRules::default();
        assert_eq!(
            matched(
                &rules.client_contains,
                &[
                    ("issuer", "CN=MEDIS-DC Online Claims CA"),
                    ("subject", "CN=x")
                ]
            )
            .as_deref(),
            Some("issuer contains \"Online Claims\"")
        );
        assert_eq!(
            matched(&rules.client_contains, &[("issuer", "CN=Let's Encrypt")]),
            None
        );
    }
}
