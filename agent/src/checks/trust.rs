//! Which certificates the portal and OQS web probes trust: what the operating system trusts, and,
//! when `oqs_ca` names a PEM bundle, those roots as well.
//!
//! On Windows "the system" is the machine's certificate store through CryptoAPI, the very check
//! Edge makes: the guide's 証明書 installation puts the OQS connection certificate there, so
//! "certificate not installed" (FAQ Q8) means here what Edge shows as 「接続がプライベートでは
//! ありません」. On Linux it is the system roots (rustls-platform-verifier reads them). The PEM
//! bundle is tried only after the system could not chain the certificate to a root it trusts
//! (never after a final verdict: expired, another name, revoked), so an installed certificate
//! always counts and a bundle can only add trust.
//!
//! Why not reqwest's own extra roots: with extra roots, rustls-platform-verifier builds a
//! CryptoAPI chain engine with an exclusive root store at client construction; where that call is
//! refused (Wine; some locked-down Windows images) every probe client failed to build ("HTTPS
//! client: builder error") and the agent stopped. Here the bundle is checked by webpki, which has
//! no such dependency.
//!
//! Must never weaken verification: every path ends in a full chain, name and time check by one of
//! the two verifiers.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// Why the trust could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the system certificate store cannot be used: {0}")]
    System(String),
    #[error("no usable root certificate in the bundle: {0}")]
    Bundle(String),
}

/// The system's verdict first, then the bundle's.
#[derive(Debug)]
pub struct SystemThenBundle {
    /// `None` only where the system has no roots at all (a Linux without ca-certificates) and a
    /// bundle was given: the bundle alone decides then.
    system: Option<rustls_platform_verifier::Verifier>,
    bundle: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl SystemThenBundle {
    /// `roots`: DER certificates of the `oqs_ca` bundle (none: the system's roots only).
    pub fn new(roots: Vec<CertificateDer<'static>>) -> Result<Self, TrustError> {
        let system = rustls_platform_verifier::Verifier::new(provider())
            .map_err(|e| TrustError::System(e.to_string()));
        let bundle = if roots.is_empty() {
            None
        } else {
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(roots);
            if added == 0 {
                return Err(TrustError::Bundle(
                    "none of its certificates parses as a CA certificate".into(),
                ));
            }
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
                    .build()
                    .map_err(|e| TrustError::Bundle(e.to_string()))?,
            )
        };
        let system = match (system, &bundle) {
            (Ok(v), _) => Some(v),
            (Err(_), Some(_)) => None,
            (Err(e), None) => return Err(e),
        };
        Ok(Self {
            system,
            bundle,
            provider: provider(),
        })
    }

    /// A rustls client configuration trusting this (for reqwest's preconfigured TLS).
    pub fn client_config(self) -> Result<rustls::ClientConfig, TrustError> {
        let mut c = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::System(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(self))
            .with_no_client_auth();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(c)
    }
}

/// A verdict about the certificate itself, which no extra root can change: expired, another
/// name, revoked, the wrong purpose. Anything else (an unknown issuer, a chain CryptoAPI could not
/// build to a root it trusts: CERT_E_UNTRUSTEDROOT, CERT_E_CHAINING) is where a bundle can help.
fn final_verdict(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidCertificate(
            CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }
                | CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. }
                | CertificateError::Revoked
                | CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. }
        )
    )
}

impl ServerCertVerifier for SystemThenBundle {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let system = match &self.system {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
        };
        match system {
            Ok(v) => Ok(v),
            Err(system) => match &self.bundle {
                Some(bundle) if !final_verdict(&system) => bundle.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ),
                // Expired, wrong name, revoked: the system's verdict stands.
                _ => Err(system),
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
