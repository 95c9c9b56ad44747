//! `POST /api/sites/{id}/run-now` and `POST /api/sites/{id}/config`: commands to a site's
//! connected agents, through [`crate::presence::Presence`].
//!
//! Must never queue a command for an agent that is not connected: the caller is told (409).

use super::error::{ApiError, JsonBody, SitePath};
use super::{read, ApiState};
use axum::extract::State;
use axum::Json;
use oqs_proto::ident::SiteId;
use serde::{Deserialize, Serialize};

/// Whether the site has ever reported ([`ApiError::UnknownSite`] otherwise).
async fn known_site(s: &ApiState, site: &SiteId) -> Result<(), ApiError> {
    let store = s.store.clone();
    let id = site.clone();
    if read(move || store.site_terminals(id.as_str()))
        .await?
        .is_empty()
    {
        return Err(ApiError::UnknownSite(site.clone()));
    }
    Ok(())
}

#[derive(Serialize)]
pub struct RunNowAnswer {
    request_id: String,
    /// The terminals the command went to.
    sent_to: Vec<String>,
}

#[derive(Serialize)]
pub struct SentTo {
    sent_to: Vec<String>,
}

/// `POST /api/sites/{id}/run-now`: every connected agent of the site runs a round now; its
/// report arrives like any other (poll the site, or its history).
pub(super) async fn run_now(
    State(s): State<ApiState>,
    SitePath(site_id): SitePath,
) -> Result<Json<RunNowAnswer>, ApiError> {
    known_site(&s, &site_id).await?;
    let request_id = format!("run-{}", crate::clock::now_ms());
    let sent = s.presence.send_to_site(
        site_id.as_str(),
        oqs_proto::v1::collector_message::Body::RunNow(oqs_proto::v1::RunNow {
            request_id: request_id.clone(),
        }),
    );
    if sent.is_empty() {
        return Err(ApiError::NotConnected(site_id));
    }
    tracing::info!(site = %site_id, terminals = sent.len(), "run now sent");
    Ok(Json(RunNowAnswer {
        request_id,
        sent_to: sent,
    }))
}

/// `POST /api/sites/{id}/config` body: what to change on the site's connected agents (each field
/// optional; the agent validates again and keeps it until it restarts).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    interval_seconds: Option<u32>,
    probe_timeout_ms: Option<u32>,
    lineauth_url: Option<String>,
}

pub(super) async fn config_update(
    State(s): State<ApiState>,
    SitePath(site_id): SitePath,
    JsonBody(b): JsonBody<ConfigBody>,
) -> Result<Json<SentTo>, ApiError> {
    if let Some(i) = b.interval_seconds {
        if !oqs_proto::INTERVAL_SECS.contains(&u64::from(i)) {
            return Err(ApiError::bad_request(format!(
                "interval_seconds {i}: must be {:?}",
                oqs_proto::INTERVAL_SECS
            )));
        }
    }
    if let Some(t) = b.probe_timeout_ms {
        if !oqs_proto::PROBE_TIMEOUT_MS.contains(&u64::from(t)) {
            return Err(ApiError::bad_request(format!(
                "probe_timeout_ms {t}: must be {:?}",
                oqs_proto::PROBE_TIMEOUT_MS
            )));
        }
    }
    if let Some(u) = &b.lineauth_url {
        // The rule the agent and every report hold the URL to: an update that passes here is
        // one the agent takes and whose reports are stored.
        oqs_proto::check_probe_url(u, false)
            .map_err(|e| ApiError::bad_request(format!("lineauth_url {u:?} {e}")))?;
    }
    if b.interval_seconds.is_none() && b.probe_timeout_ms.is_none() && b.lineauth_url.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give interval_seconds, probe_timeout_ms or lineauth_url",
        ));
    }
    known_site(&s, &site_id).await?;
    let update = oqs_proto::v1::ConfigUpdate {
        interval_seconds: b.interval_seconds.unwrap_or(0),
        probe_timeout_ms: b.probe_timeout_ms.unwrap_or(0),
        lineauth_url: b.lineauth_url.unwrap_or_default(),
        ..Default::default()
    };
    let sent = s.presence.send_to_site(
        site_id.as_str(),
        oqs_proto::v1::collector_message::Body::ConfigUpdate(update),
    );
    if sent.is_empty() {
        return Err(ApiError::NotConnected(site_id));
    }
    tracing::info!(site = %site_id, terminals = sent.len(), "config update sent");
    Ok(Json(SentTo { sent_to: sent }))
}
