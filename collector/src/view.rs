//! The derived fleet state the HTTP side reads: every site's flags, prefix and diagnosis, published
//! by the committer after each durable batch (never before), so the API never shows what a crash
//! could take back.
//!
//! Must never be written by anything but the committer.

use crate::flags::SiteState;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A shared, read-mostly map of site id → state.
#[derive(Clone, Default)]
pub struct FleetView {
    // A std lock: held only to clone an Arc or swap one in, never across an await.
    sites: Arc<RwLock<HashMap<String, Arc<SiteState>>>>,
}

impl FleetView {
    pub fn get(&self, site: &str) -> Option<Arc<SiteState>> {
        self.sites
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .cloned()
    }

    /// Every site's state (cheap: Arcs).
    pub fn all(&self) -> Vec<Arc<SiteState>> {
        self.sites
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Makes `st` what readers see for its site (the writer keeps sharing it until it changes).
    pub fn publish(&self, st: Arc<SiteState>) {
        self.sites
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(st.site.clone(), st);
    }

    /// Other sites on the same line: the same current /64 (FAQ Q16).
    pub fn sharing_prefix(&self, prefix: &str, except: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .sites
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.site != except && s.prefix.as_deref() == Some(prefix))
            .map(|s| s.site.clone())
            .collect();
        v.sort();
        v
    }
}
