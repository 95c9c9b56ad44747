//! Which terminals may report for which site. A site's enrollment token (made and revoked by the
//! NOC through the admin API or `oqs-collector admin`) is exchanged, on a terminal's first
//! contact, for a secret of that terminal; from then on the terminal proves itself with its secret.
//! Both are stored as SHA-256 only (`N site` → token hash, `K site NUL terminal` → secret hash).
//! A token or secret is bound to its site: an agent cannot report for another site.
//! Revoking a site removes its token and every terminal secret; open streams are refused at their
//! next message. Failed attempts are counted by reason and limited per peer address.
//!
//! Must never log or keep a token or secret in clear, and never accept a credential for a site
//! other than the one it was issued for.

use crate::config::EnrollmentSettings;
use crate::failure_limit::{fingerprint, FailureLimit};
use crate::http_auth::{hash_listed, token_hash};
use crate::store::{Store, StoreError, TerminalKey};
use base64::Engine;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// Why a terminal was not admitted. `label` is the metric's bounded `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Hello carried no credential.
    Missing,
    /// The site has no enrollment (never enrolled, or revoked).
    NotEnrolled,
    /// The credential is neither the site's token nor this terminal's secret.
    Wrong,
    /// The terminal's secret was revoked while its stream was open.
    Revoked,
    /// Too many failures from this address in the last minute.
    RateLimited,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 5] = [
        AuthFailure::Missing,
        AuthFailure::NotEnrolled,
        AuthFailure::Wrong,
        AuthFailure::Revoked,
        AuthFailure::RateLimited,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::NotEnrolled => "not_enrolled",
            AuthFailure::Wrong => "wrong_credential",
            AuthFailure::Revoked => "revoked",
            AuthFailure::RateLimited => "rate_limited",
        }
    }

    /// What the agent is told (it names the fix, never the secret).
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "this collector requires enrollment: set collector.enrollment_token in the agent's config (the NOC makes one with `oqs-collector admin enroll SITE`)",
            AuthFailure::NotEnrolled => "the site is not enrolled (or was revoked): ask the NOC for a new enrollment token",
            AuthFailure::Wrong => "the credential is not valid for this site and terminal (a terminal secret this collector does not know: if its enrollments were restored from an older backup, the NOC issues a new enrollment token with `oqs-collector admin enroll SITE`; the agent keeps its secret meanwhile)",
            AuthFailure::Revoked => "this terminal's credential was revoked",
            AuthFailure::RateLimited => "too many failed attempts from this address: wait a minute",
        }
    }
}

/// A terminal let in: the hash of its secret (checked again on every message), and the secret
/// itself when it was just issued (sent once, in Welcome).
#[derive(Debug)]
pub struct Admitted {
    pub secret_hash: String,
    pub new_secret: Option<String>,
}

#[derive(Default)]
struct Credentials {
    tokens: HashMap<String, String>,
    secrets: HashMap<TerminalKey, String>,
}

/// Shared by ingest (checks) and the admin API (changes).
#[derive(Clone)]
pub struct Enrollment {
    store: Store,
    settings: EnrollmentSettings,
    creds: Arc<RwLock<Credentials>>,
    failures: FailureLimit,
}

fn site_key(site: &str) -> Vec<u8> {
    let mut k = b"N".to_vec();
    k.extend_from_slice(site.as_bytes());
    k
}

fn secret_key(key: &TerminalKey) -> Vec<u8> {
    let mut k = b"K".to_vec();
    k.extend_from_slice(key.site.as_bytes());
    k.push(0);
    k.extend_from_slice(key.terminal.as_bytes());
    k
}

/// 32 random bytes, base64url, with a prefix saying what it is.
fn random(prefix: &str) -> String {
    let mut b = [0u8; 32];
    // The system RNG failing is not something a collector can work around.
    aws_lc_rs::rand::fill(&mut b).expect("the system random number generator works");
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

impl Enrollment {
    /// Loads every token and secret hash. Blocking.
    pub fn load(store: Store, settings: EnrollmentSettings) -> Result<Self, StoreError> {
        let mut c = Credentials::default();
        for (k, v) in store.raw_scan(b"N")? {
            let site = String::from_utf8_lossy(&k[1..]).into_owned();
            c.tokens
                .insert(site, String::from_utf8_lossy(&v).into_owned());
        }
        for (k, v) in store.raw_scan(b"K")? {
            let rest = &k[1..];
            if let Some(nul) = rest.iter().position(|b| *b == 0) {
                let key = TerminalKey::new(
                    &String::from_utf8_lossy(&rest[..nul]),
                    &String::from_utf8_lossy(&rest[nul + 1..]),
                );
                c.secrets
                    .insert(key, String::from_utf8_lossy(&v).into_owned());
            }
        }
        Ok(Self {
            store,
            creds: Arc::new(RwLock::new(c)),
            failures: FailureLimit::new(settings.max_failures_per_minute),
            settings,
        })
    }

    pub fn required(&self) -> bool {
        self.settings.required
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Credentials> {
        self.creds.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Credentials> {
        self.creds.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a Hello's credential; enrolls the terminal when it presents the site's token.
    pub async fn admit(
        &self,
        key: &TerminalKey,
        credential: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Admitted, AuthFailure> {
        let now = crate::clock::now_ms();
        let fp = fingerprint(&token_hash(credential.unwrap_or("")));
        if self.failures.is_limited(peer, fp, now) {
            return Err(AuthFailure::RateLimited);
        }
        let result = self.check(key, credential).await;
        match &result {
            Ok(a) => {
                self.failures.succeeded(peer, fp, now);
                // A secret issued just now will come back from the same place.
                self.failures
                    .succeeded(peer, fingerprint(&a.secret_hash), now);
            }
            Err(_) => self.failures.record(peer, fp, now),
        }
        result
    }

    async fn check(
        &self,
        key: &TerminalKey,
        credential: Option<&str>,
    ) -> Result<Admitted, AuthFailure> {
        let Some(cred) = credential.filter(|c| !c.is_empty()) else {
            return Err(AuthFailure::Missing);
        };
        let h = token_hash(cred);
        let (is_secret, is_token, enrolled) = {
            let c = self.read();
            (
                c.secrets
                    .get(key)
                    .is_some_and(|s| hash_listed(std::slice::from_ref(s), &h)),
                c.tokens
                    .get(&key.site)
                    .is_some_and(|t| hash_listed(std::slice::from_ref(t), &h)),
                c.tokens.contains_key(&key.site),
            )
        };
        if is_secret {
            return Ok(Admitted {
                secret_hash: h,
                new_secret: None,
            });
        }
        if !is_token {
            return Err(if enrolled {
                AuthFailure::Wrong
            } else {
                AuthFailure::NotEnrolled
            });
        }
        // The site's token: issue this terminal's secret, durably before anyone is told it.
        let secret = random("oqs-term-");
        let secret_hash = token_hash(&secret);
        let store = self.store.clone();
        let k = secret_key(key);
        let v = secret_hash.clone();
        tokio::task::spawn_blocking(move || store.raw_put_flush(&k, v.as_bytes()))
            .await
            .map_err(|_| AuthFailure::Wrong)?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot store a terminal secret");
                AuthFailure::Wrong
            })?;
        self.write()
            .secrets
            .insert(key.clone(), secret_hash.clone());
        tracing::info!(site = %key.site, terminal = %key.terminal, "terminal enrolled");
        Ok(Admitted {
            secret_hash,
            new_secret: Some(secret),
        })
    }

    /// Whether a terminal admitted with `secret_hash` still may report (checked per message).
    pub fn still_valid(&self, key: &TerminalKey, secret_hash: &str) -> bool {
        self.read()
            .secrets
            .get(key)
            .is_some_and(|s| s == secret_hash)
    }

    /// Makes (or replaces) the site's enrollment token; returns it — the only time it exists in
    /// clear. Terminals already enrolled keep their secrets.
    pub async fn create_token(&self, site: &str) -> Result<String, StoreError> {
        let token = random("oqs-enroll-");
        let h = token_hash(&token);
        let store = self.store.clone();
        let k = site_key(site);
        let v = h.clone();
        tokio::task::spawn_blocking(move || store.raw_put_flush(&k, v.as_bytes()))
            .await
            .map_err(|e| StoreError::Io(sled::Error::ReportableBug(e.to_string())))??;
        self.write().tokens.insert(site.to_owned(), h);
        tracing::info!(site, "enrollment token created");
        Ok(token)
    }

    /// Removes the site's token and every terminal secret; returns how many secrets went.
    pub async fn revoke(&self, site: &str) -> Result<usize, StoreError> {
        let keys: Vec<TerminalKey> = {
            let mut c = self.write();
            c.tokens.remove(site);
            let keys: Vec<TerminalKey> = c
                .secrets
                .keys()
                .filter(|k| k.site == site)
                .cloned()
                .collect();
            for k in &keys {
                c.secrets.remove(k);
            }
            keys
        };
        let store = self.store.clone();
        let mut remove: Vec<Vec<u8>> = keys.iter().map(secret_key).collect();
        remove.push(site_key(site));
        tokio::task::spawn_blocking(move || store.raw_remove_flush(&remove))
            .await
            .map_err(|e| StoreError::Io(sled::Error::ReportableBug(e.to_string())))??;
        tracing::info!(site, terminals = keys.len(), "enrollment revoked");
        Ok(keys.len())
    }

    /// Sites with an enrollment token, and how many terminals of each hold a secret.
    pub fn list(&self) -> Vec<(String, bool, usize)> {
        let c = self.read();
        let mut sites: std::collections::BTreeMap<String, (bool, usize)> = Default::default();
        for s in c.tokens.keys() {
            sites.entry(s.clone()).or_default().0 = true;
        }
        for k in c.secrets.keys() {
            sites.entry(k.site.clone()).or_default().1 += 1;
        }
        sites.into_iter().map(|(s, (t, n))| (s, t, n)).collect()
    }
}
