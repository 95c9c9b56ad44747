//! `oqs-runtime`: what the agent's and the collector's processes both need from the OS, once —
//! the shutdown signal and reading a PEM file with an error that names it.
//!
//! Must never hold product logic (checks, protocol rules, storage): only process plumbing.

use std::path::{Path, PathBuf};

/// Resolves on Ctrl-C, or SIGTERM on Unix (what systemd and `docker stop` send). On Windows the
/// service's stop comes through the Service Control Manager instead (the agent's `winservice`).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Why a PEM file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a PEM file (no -----BEGIN line)", path.display())]
    NotPem { path: PathBuf },
}

/// The bytes of a PEM file (a certificate, a key, a CA bundle); refuses a file without a PEM
/// block, so a DER file or a wrong path fails with its name rather than deep inside TLS.
pub fn read_pem(path: &Path) -> Result<Vec<u8>, PemError> {
    let pem = std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_owned(),
        source,
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN ") {
        return Err(PemError::NotPem {
            path: path.to_owned(),
        });
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_file_is_read_and_others_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_pem(&good).unwrap().starts_with(b"-----BEGIN"));
        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01]).unwrap();
        let e = read_pem(&der).unwrap_err().to_string();
        assert!(e.contains("ca.der") && e.contains("not a PEM file"), "{e}");
        let e = read_pem(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.pem") && e.starts_with("cannot read"),
            "{e}"
        );
    }
}
