//! Which terminals may report for which site. A site's enrollment token (made and revoked by the
//! NOC through the admin API or `oqs-collector admin`) is exchanged, on a terminal's first
//! contact, for a secret of that terminal; from then on the terminal proves itself with its secret.
//! Both are stored as SHA-256 only (`N site` → token hash, `K site NUL terminal` → secret hash).
//! A token or secret is bound to its site: an agent cannot report for another site.
//! Revoking a site removes its token and every terminal secret; open streams are refused at their
//! next message. A token expires (`enrollment.token_ttl_hours`, or the NOC's choice per token) and
//! may be limited in uses; it never re-enrolls a terminal that already holds a secret (that would
//! let anyone with the site's token cut the real agent off): the NOC replaces a terminal
//! explicitly (`admin enroll SITE --replace TERMINAL`). Failed attempts are counted by reason and
//! limited per source, site and terminal; a valid credential always passes.
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
    /// Too many failures for this source, site and terminal in the last minute.
    RateLimited,
    /// The site's token, for a terminal that is already enrolled (only the NOC re-enrolls one).
    AlreadyEnrolled,
    /// The site's token, past its expiry.
    TokenExpired,
    /// The site's token, with no uses left.
    TokenUsedUp,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 8] = [
        AuthFailure::Missing,
        AuthFailure::NotEnrolled,
        AuthFailure::Wrong,
        AuthFailure::Revoked,
        AuthFailure::RateLimited,
        AuthFailure::AlreadyEnrolled,
        AuthFailure::TokenExpired,
        AuthFailure::TokenUsedUp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::NotEnrolled => "not_enrolled",
            AuthFailure::Wrong => "wrong_credential",
            AuthFailure::Revoked => "revoked",
            AuthFailure::RateLimited => "rate_limited",
            AuthFailure::AlreadyEnrolled => "already_enrolled",
            AuthFailure::TokenExpired => "token_expired",
            AuthFailure::TokenUsedUp => "token_used_up",
        }
    }

    /// What the agent is told (it names the fix, never the secret).
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "this collector requires enrollment: set collector.enrollment_token in the agent's config (the NOC makes one with `oqs-collector admin enroll SITE`)",
            AuthFailure::NotEnrolled => "the site is not enrolled (or was revoked): ask the NOC for a new enrollment token",
            AuthFailure::Wrong => "the credential is not valid for this site and terminal (a terminal secret this collector does not know: if its enrollments were restored from an older backup, the NOC issues a new enrollment token with `oqs-collector admin enroll SITE`; the agent keeps its secret meanwhile)",
            AuthFailure::Revoked => "this terminal's credential was revoked",
            AuthFailure::RateLimited => "too many failed attempts for this site and terminal from this address: wait a minute",
            AuthFailure::AlreadyEnrolled => "this terminal is already enrolled: a token cannot enroll it again (a second machine with its ids?). If the PC was replaced, the NOC re-enrolls it with `oqs-collector admin enroll SITE --replace TERMINAL`",
            AuthFailure::TokenExpired => "the site's enrollment token has expired: ask the NOC for a new one (`oqs-collector admin enroll SITE`)",
            AuthFailure::TokenUsedUp => "the site's enrollment token has enrolled as many terminals as it may: ask the NOC for a new one",
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

/// A site's enrollment token as stored (`N site`): its hash, its expiry and the uses it has left.
/// Stored before expiry and uses existed, the value is the bare hash: no expiry, any number.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    pub hash: String,
    /// Unix ms after which it enrolls nobody (0: never).
    #[serde(default)]
    pub expires_ms: i64,
    /// Terminals it may still enroll (None: any number).
    #[serde(default)]
    pub uses_left: Option<u32>,
}

impl TokenRecord {
    fn parse(v: &[u8]) -> TokenRecord {
        serde_json::from_slice(v).unwrap_or_else(|_| TokenRecord {
            hash: String::from_utf8_lossy(v).into_owned(),
            expires_ms: 0,
            uses_left: None,
        })
    }
}

/// What the NOC chooses for one new token (else the settings' defaults).
#[derive(Debug, Clone, Default)]
pub struct TokenOptions {
    /// Hours it works (Some(0): until revoked).
    pub expires_in_hours: Option<u64>,
    /// Terminals it may enroll (Some(0): any number).
    pub max_uses: Option<u32>,
    /// A terminal to re-enroll: its secret is removed now, so the token enrolls it again (a
    /// replaced PC); the old machine is cut off.
    pub replace: Option<String>,
}

#[derive(Default)]
struct Credentials {
    tokens: HashMap<String, TokenRecord>,
    secrets: HashMap<TerminalKey, String>,
}

/// Where wrong credentials are counted: the source, and the site and terminal they were for.
type FailureKey = (IpAddr, TerminalKey);

/// Shared by ingest (checks) and the admin API (changes).
#[derive(Clone)]
pub struct Enrollment {
    store: Store,
    settings: EnrollmentSettings,
    creds: Arc<RwLock<Credentials>>,
    failures: FailureLimit<FailureKey>,
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
            c.tokens.insert(site, TokenRecord::parse(&v));
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

    /// Checks a Hello's credential; enrolls the terminal when it presents the site's token. A valid
    /// credential always passes; wrong ones are counted per source, site and terminal, and past
    /// `max_failures_per_minute` distinct ones answered "try later" (so a device guessing from a
    /// shared address locks out nobody else).
    pub async fn admit(
        &self,
        key: &TerminalKey,
        credential: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Admitted, AuthFailure> {
        let now = crate::clock::now_ms();
        let fp = fingerprint(&token_hash(credential.unwrap_or("")));
        let fkey = peer.map(|p| (crate::failure_limit::source(p), key.clone()));
        let result = self.check(key, credential, now).await;
        // Only a failure is ever limited: a valid credential always passes.
        if result.is_err() {
            if self.failures.key_limited(fkey.as_ref(), fp, now) {
                return Err(AuthFailure::RateLimited);
            }
            self.failures.key_failed(fkey.as_ref(), fp, now);
        }
        result
    }

    async fn check(
        &self,
        key: &TerminalKey,
        credential: Option<&str>,
        now: i64,
    ) -> Result<Admitted, AuthFailure> {
        let Some(cred) = credential.filter(|c| !c.is_empty()) else {
            return Err(AuthFailure::Missing);
        };
        let h = token_hash(cred);
        let (is_secret, token, enrolled, has_secret) = {
            let c = self.read();
            (
                c.secrets
                    .get(key)
                    .is_some_and(|s| hash_listed(std::slice::from_ref(s), &h)),
                c.tokens
                    .get(&key.site)
                    .filter(|t| hash_listed(std::slice::from_ref(&t.hash), &h))
                    .cloned(),
                c.tokens.contains_key(&key.site),
                c.secrets.contains_key(key),
            )
        };
        if is_secret {
            return Ok(Admitted {
                secret_hash: h,
                new_secret: None,
            });
        }
        let Some(token) = token else {
            return Err(if enrolled || has_secret {
                AuthFailure::Wrong
            } else {
                AuthFailure::NotEnrolled
            });
        };
        if token.expires_ms > 0 && now >= token.expires_ms {
            return Err(AuthFailure::TokenExpired);
        }
        if token.uses_left == Some(0) {
            return Err(AuthFailure::TokenUsedUp);
        }
        // A terminal with a secret is enrolled: a token holder is not to take its place (the NOC
        // removes its secret first, `--replace`).
        if has_secret {
            tracing::warn!(site = %key.site, terminal = %key.terminal, "the site's token presented for a terminal already enrolled: refused");
            return Err(AuthFailure::AlreadyEnrolled);
        }
        // The site's token: issue this terminal's secret, durably before anyone is told it; the
        // token's use is counted in the same write.
        let secret = random("oqs-term-");
        let secret_hash = token_hash(&secret);
        let mut writes = vec![(secret_key(key), secret_hash.clone().into_bytes())];
        let used = TokenRecord {
            uses_left: token.uses_left.map(|n| n - 1),
            ..token.clone()
        };
        if used != token {
            writes.push((site_key(&key.site), json_bytes(&used)));
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.raw_put_all_flush(&writes))
            .await
            .map_err(|_| AuthFailure::Wrong)?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot store a terminal secret");
                AuthFailure::Wrong
            })?;
        {
            let mut c = self.write();
            c.secrets.insert(key.clone(), secret_hash.clone());
            if let Some(t) = c.tokens.get_mut(&key.site).filter(|t| t.hash == used.hash) {
                *t = used;
            }
        }
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
    /// clear — and when it expires. Terminals already enrolled keep their secrets, except the one
    /// `options.replace` names: its secret is removed, so the token enrolls it again.
    pub async fn create_token(
        &self,
        site: &str,
        options: &TokenOptions,
    ) -> Result<(String, TokenRecord), StoreError> {
        let token = random("oqs-enroll-");
        let hours = options
            .expires_in_hours
            .unwrap_or(self.settings.token_ttl_hours);
        let uses = options.max_uses.unwrap_or(self.settings.token_max_uses);
        let rec = TokenRecord {
            hash: token_hash(&token),
            expires_ms: if hours == 0 {
                0
            } else {
                crate::clock::now_ms().saturating_add(
                    i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000) * 3_600_000,
                )
            },
            uses_left: (uses > 0).then_some(uses),
        };
        let store = self.store.clone();
        let k = site_key(site);
        let v = json_bytes(&rec);
        tokio::task::spawn_blocking(move || store.raw_put_flush(&k, &v))
            .await
            .map_err(|e| StoreError::Io(sled::Error::ReportableBug(e.to_string())))??;
        if let Some(t) = &options.replace {
            let key = TerminalKey::new(site, t);
            let store = self.store.clone();
            let k = secret_key(&key);
            tokio::task::spawn_blocking(move || store.raw_remove_flush(&[k]))
                .await
                .map_err(|e| StoreError::Io(sled::Error::ReportableBug(e.to_string())))??;
            self.write().secrets.remove(&key);
            tracing::warn!(site, terminal = %t, "terminal secret removed for re-enrollment");
        }
        self.write().tokens.insert(site.to_owned(), rec.clone());
        tracing::info!(site, expires_ms = rec.expires_ms, uses = ?rec.uses_left, "enrollment token created");
        Ok((token, rec))
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

    /// Sites with an enrollment token or enrolled terminals: their token (if any) and how many
    /// terminals of each hold a secret.
    pub fn list(&self) -> Vec<(String, Option<TokenRecord>, usize)> {
        let c = self.read();
        let mut sites: std::collections::BTreeMap<String, (Option<TokenRecord>, usize)> =
            Default::default();
        for (s, t) in &c.tokens {
            sites.entry(s.clone()).or_default().0 = Some(t.clone());
        }
        for k in c.secrets.keys() {
            sites.entry(k.site.clone()).or_default().1 += 1;
        }
        sites.into_iter().map(|(s, (t, n))| (s, t, n)).collect()
    }
}

fn json_bytes(t: &TokenRecord) -> Vec<u8> {
    serde_json::to_vec(t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_works_until_it_expires_and_an_old_bare_hash_never_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let e = Enrollment::load(store.clone(), EnrollmentSettings::default()).unwrap();
        let (token, rec) = e
            .create_token("clinic-x", &TokenOptions::default())
            .await
            .unwrap();
        let now = crate::clock::now_ms();
        let day = 86_400_000;
        assert!(
            (13 * day..=14 * day + 1000).contains(&(rec.expires_ms - now)),
            "14 days"
        );
        let key = TerminalKey::new("clinic-x", "pc-1");
        assert_eq!(
            e.check(&key, Some(&token), rec.expires_ms).await.err(),
            Some(AuthFailure::TokenExpired)
        );
        e.check(&key, Some(&token), rec.expires_ms - 1)
            .await
            .unwrap();
        // A token stored before expiry existed (the bare hash) loads as never expiring.
        store
            .raw_put_flush(
                &site_key("clinic-old"),
                token_hash("oqs-enroll-old").as_bytes(),
            )
            .unwrap();
        let e = Enrollment::load(store, EnrollmentSettings::default()).unwrap();
        let old = TerminalKey::new("clinic-old", "pc-1");
        e.check(&old, Some("oqs-enroll-old"), i64::MAX / 2)
            .await
            .unwrap();
    }
}
