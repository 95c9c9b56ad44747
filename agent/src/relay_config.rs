//! `oqs-agent relay`'s settings: a TOML file (`--config`, what an installer or a service runs
//! with) and the command line over it, checked into [`RelaySettings`] with errors that name the
//! key.
//!
//! Must never take a setting it cannot honour: unknown keys, a relay without collectors, a limit
//! of 0 are errors, never defaults in disguise. Must never hold a proxy password inline (only
//! `proxy_auth_file`).

use crate::relay::{Allow, RelaySettings, Target};
use crate::uplink::proxy::parse_proxy_url;
use crate::uplink::ProxyCredentials;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The relay's options as a file or the command line gives them (nothing checked yet).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayOptions {
    /// ADDR:PORT (port 0 picks one).
    pub listen: Option<String>,
    /// Collectors' gRPC addresses, HOST:PORT as the agents' URLs name them.
    #[serde(default)]
    pub collectors: Vec<String>,
    /// Source prefixes allowed to use the relay (empty: the default ranges).
    #[serde(default)]
    pub allow: Vec<String>,
    /// A proxy the relay itself reaches the collectors through (http://HOST:PORT).
    pub proxy: Option<String>,
    /// A file of one line user:password for that proxy.
    pub proxy_auth_file: Option<PathBuf>,
    pub max_tunnels: Option<u64>,
    pub idle_secs: Option<u64>,
    pub max_tunnel_bytes: Option<u64>,
}

/// Why the relay's settings are not usable.
#[derive(Debug, thiserror::Error)]
pub enum RelayConfigError {
    #[error("cannot read the relay config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the relay config {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("relay {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> RelayConfigError {
    RelayConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl RelayOptions {
    /// The options of a TOML file (keys as [`RelayOptions`]'s fields).
    pub fn from_file(path: &Path) -> Result<Self, RelayConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| RelayConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| RelayConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    /// These options with `over`'s where it has them (the command line over the file; a list
    /// given on the command line replaces the file's).
    pub fn overlaid(self, over: RelayOptions) -> Self {
        let list = |mine: Vec<String>, theirs: Vec<String>| {
            if theirs.is_empty() {
                mine
            } else {
                theirs
            }
        };
        Self {
            listen: over.listen.or(self.listen),
            collectors: list(self.collectors, over.collectors),
            allow: list(self.allow, over.allow),
            proxy: over.proxy.or(self.proxy),
            proxy_auth_file: over.proxy_auth_file.or(self.proxy_auth_file),
            max_tunnels: over.max_tunnels.or(self.max_tunnels),
            idle_secs: over.idle_secs.or(self.idle_secs),
            max_tunnel_bytes: over.max_tunnel_bytes.or(self.max_tunnel_bytes),
        }
    }

    /// The checked settings; every error names its key.
    pub fn settings(&self) -> Result<RelaySettings, RelayConfigError> {
        let listen = self
            .listen
            .as_deref()
            .ok_or_else(|| invalid("listen", "where to listen is required (ADDR:PORT)"))?;
        let listen = listen
            .trim()
            .parse()
            .map_err(|_| invalid("listen", format!("{listen:?} is not ADDR:PORT")))?;
        if self.collectors.is_empty() {
            return Err(invalid(
                "collectors",
                "at least one collector (HOST:PORT) is required: the relay tunnels only to them",
            ));
        }
        let collectors = self
            .collectors
            .iter()
            .map(|c| Target::parse(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("collectors", e))?;
        let mut s = RelaySettings::new(listen, collectors);
        s.allow = self
            .allow
            .iter()
            .map(|a| Allow::parse(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("allow", e))?;
        s.upstream = match (&self.proxy, &self.proxy_auth_file) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid("proxy_auth_file", "is for a proxy: set proxy too"));
            }
            (Some(p), auth) => {
                let addr =
                    parse_proxy_url(p).map_err(|e| invalid("proxy", format!("{p:?}: {e}")))?;
                let credentials = auth
                    .as_deref()
                    .map(ProxyCredentials::from_file)
                    .transpose()
                    .map_err(|e| invalid("proxy_auth_file", e))?;
                Some((addr, credentials))
            }
        };
        let above_zero = |key: &'static str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(invalid(key, "must be above 0")),
            v => Ok(v.unwrap_or(default)),
        };
        s.max_tunnels = above_zero("max_tunnels", self.max_tunnels, s.max_tunnels)?;
        s.idle = Duration::from_secs(above_zero("idle_secs", self.idle_secs, s.idle.as_secs())?);
        s.max_tunnel_bytes = above_zero(
            "max_tunnel_bytes",
            self.max_tunnel_bytes,
            s.max_tunnel_bytes,
        )?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_the_settings_and_the_command_line_goes_over_it() {
        let file = RelayOptions::from_toml(
            "listen = \"[::]:3128\"\ncollectors = [\"noc.example.jp:50051\"]\n\
             allow = [\"192.168.10.0/24\"]\nmax_tunnels = 200\n",
        )
        .unwrap();
        let s = file.clone().settings().unwrap();
        assert_eq!(s.listen.to_string(), "[::]:3128");
        assert_eq!(s.max_tunnels, 200);
        assert_eq!(s.idle, Duration::from_secs(300), "the default");
        assert_eq!(s.allow.len(), 1);
        let over = RelayOptions {
            listen: Some("127.0.0.1:0".into()),
            max_tunnels: Some(50),
            ..Default::default()
        };
        let s = file.overlaid(over).settings().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:0");
        assert_eq!(s.max_tunnels, 50);
        assert_eq!(s.collectors[0].host, "noc.example.jp", "kept from the file");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/relay.example.toml");
        let s = RelayOptions::from_file(Path::new(path))
            .unwrap()
            .settings()
            .unwrap();
        assert_eq!(s.listen.port(), 3128);
        assert_eq!(s.max_tunnels, 1000);
    }

    #[test]
    fn each_bad_setting_names_its_key() {
        let base = "listen = \"[::]:3128\"\ncollectors = [\"noc.example.jp:50051\"]\n";
        for (extra, key) in [
            ("max_tunnels = 0\n", "max_tunnels"),
            ("idle_secs = 0\n", "idle_secs"),
            ("allow = [\"10.0.0.0/99\"]\n", "allow"),
            ("proxy = \"socks5://p:1080\"\n", "proxy"),
            ("proxy_auth_file = \"/nonexistent\"\n", "proxy_auth_file"),
        ] {
            let e = RelayOptions::from_toml(&format!("{base}{extra}"))
                .unwrap()
                .settings()
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = RelayOptions::from_toml("listen = \"[::]:3128\"\n")
            .unwrap()
            .settings()
            .unwrap_err()
            .to_string();
        assert!(e.contains("collectors"), "{e}");
        let e = RelayOptions::from_toml("collectors = [\"noc:1\"]\nlisten = \"relay-pc\"\n")
            .unwrap()
            .settings()
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let e = RelayOptions::from_toml("listn = \"[::]:1\"\n").unwrap_err();
        assert!(e.contains("listn"), "{e}");
    }
}
