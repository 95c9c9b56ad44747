//! The config file an installer writes from its properties (`oqs-agent write-config`, run by the
//! MSI with `SITE_ID=… ENROLLMENT_TOKEN=…`): composed as TOML by the toml crate (no quoting by
//! hand), validated by the same parser the agent starts with, written atomically.
//!
//! An error names the installer property (and the config key), so a failed silent install says
//! which property to fix. Must never overwrite an existing config unless told to (an upgrade
//! keeps the NOC's edits), and never print the enrollment token.

use crate::config::{AgentConfig, ConfigError};
use std::path::{Path, PathBuf};

/// What an installer knows; `None` and empty strings are "not given" (MSI properties are empty
/// when unset).
#[derive(Debug, Default, Clone)]
pub struct Properties {
    pub site_id: Option<String>,
    pub terminal_id: Option<String>,
    pub area: Option<String>,
    pub prefecture: Option<String>,
    pub site_name: Option<String>,
    pub collector_url: Option<String>,
    pub collector_ca: Option<PathBuf>,
    pub enrollment_token: Option<String>,
    pub spool_dir: Option<PathBuf>,
    pub insecure: bool,
}

/// Why the config was not written.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{property} ({key}): {message}")]
    Property {
        property: &'static str,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Config(ConfigError),
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// The installer property a config key comes from.
fn property_of(key: &str) -> &'static str {
    match key {
        "site_id" => "SITE_ID",
        "terminal_id" => "TERMINAL_ID",
        "area" => "AREA",
        "prefecture" => "PREFECTURE",
        "site_name" => "SITE_NAME",
        k if k.starts_with("collector.ca") => "COLLECTOR_CA",
        k if k.starts_with("collector.enrollment_token") => "ENROLLMENT_TOKEN",
        k if k.starts_with("collector") => "COLLECTOR_URL",
        k if k.starts_with("spool") => "SPOOL_DIR",
        _ => "a property",
    }
}

fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The TOML text for `p`, validated as the agent will read it.
pub fn compose(p: &Properties) -> Result<String, InstallError> {
    let required = |v: &Option<String>, property: &'static str, key: &str| {
        given(v)
            .map(str::to_owned)
            .ok_or_else(|| InstallError::Property {
                property,
                key: key.into(),
                message: "is required".into(),
            })
    };
    let mut top = toml::Table::new();
    top.insert(
        "site_id".into(),
        required(&p.site_id, "SITE_ID", "site_id")?.into(),
    );
    top.insert(
        "terminal_id".into(),
        required(&p.terminal_id, "TERMINAL_ID", "terminal_id")?.into(),
    );
    match (given(&p.area), given(&p.prefecture)) {
        (None, None) => {
            return Err(InstallError::Property {
                property: "AREA",
                key: "area".into(),
                message: "AREA (east / west) or PREFECTURE (e.g. 東京都) is required".into(),
            })
        }
        (a, pref) => {
            if let Some(a) = a {
                top.insert("area".into(), a.to_ascii_lowercase().into());
            }
            if let Some(pref) = pref {
                top.insert("prefecture".into(), pref.into());
            }
        }
    }
    if let Some(n) = given(&p.site_name) {
        top.insert("site_name".into(), n.into());
    }
    let mut collector = toml::Table::new();
    collector.insert(
        "url".into(),
        required(&p.collector_url, "COLLECTOR_URL", "collector.url")?.into(),
    );
    if let Some(ca) = &p.collector_ca {
        collector.insert("ca".into(), ca.display().to_string().into());
    }
    if let Some(t) = given(&p.enrollment_token) {
        collector.insert("enrollment_token".into(), t.into());
    }
    if p.insecure {
        collector.insert("insecure".into(), true.into());
    }
    top.insert("collector".into(), collector.into());
    if let Some(d) = &p.spool_dir {
        let mut spool = toml::Table::new();
        spool.insert("dir".into(), d.display().to_string().into());
        top.insert("spool".into(), spool.into());
    }
    let text = format!(
        "# Written by the installer (oqs-agent write-config). Every setting: agent.example.toml.\n{}",
        toml::to_string(&top).map_err(|e| InstallError::Property {
            property: "a property",
            key: String::new(),
            message: e.to_string(),
        })?
    );
    match AgentConfig::from_toml(&text) {
        Ok(_) => Ok(text),
        Err(ConfigError::Invalid { key, message }) => Err(InstallError::Property {
            property: property_of(key),
            key: key.into(),
            message,
        }),
        Err(e) => Err(InstallError::Config(e)),
    }
}

/// An installer property's yes/no value: empty (unset), 0/false/no, 1/true/yes.
pub fn flag(property: &'static str, value: Option<&str>) -> Result<bool, InstallError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(InstallError::Property {
            property,
            key: "collector.insecure".into(),
            message: format!("{other:?} is not 1 or 0"),
        }),
    }
}

/// `C:\dir\.` → `C:\dir` (an installer passes directories that way: a trailing `\` before a
/// closing quote would escape it).
pub fn without_trailing_dot(p: PathBuf) -> PathBuf {
    let s = p.to_string_lossy();
    match s.strip_suffix("\\.").or_else(|| s.strip_suffix("/.")) {
        Some(t) if !t.is_empty() => PathBuf::from(t),
        _ => p,
    }
}

/// What [`write`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    New,
    KeptExisting,
}

/// Writes the config to `path` unless one is there (and `replace` is false): an upgrade keeps
/// the existing file whatever the properties say. A first install validates everything.
pub fn write(path: &Path, p: &Properties, replace: bool) -> Result<Written, InstallError> {
    if path.exists() && !replace {
        return Ok(Written::KeptExisting);
    }
    let text = compose(p)?;
    let werr = |e: std::io::Error| InstallError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)?;
    Ok(Written::New)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Properties {
        Properties {
            site_id: Some("clinic-0001".into()),
            terminal_id: Some("oqs-pc-1".into()),
            prefecture: Some("東京都".into()),
            collector_url: Some("https://noc.example.jp:50051".into()),
            collector_ca: Some(PathBuf::from(r"C:\ProgramData\OQS Agent\collector-ca.pem")),
            enrollment_token: Some("oqs-enroll-\"quoted\"\\back".into()),
            spool_dir: Some(PathBuf::from(r"C:\ProgramData\OQS Agent\spool")),
            ..Properties::default()
        }
    }

    #[test]
    fn properties_become_a_config_the_agent_reads_back() {
        let text = compose(&good()).unwrap();
        let cfg = AgentConfig::from_toml(&text).unwrap();
        assert_eq!(cfg.site.as_str(), "clinic-0001");
        assert_eq!(cfg.area, oqs_proto::ident::Area::East);
        // Backslashes and quotes survive (Windows paths, odd tokens): TOML quoting by the crate.
        assert_eq!(
            cfg.spool_dir,
            PathBuf::from(r"C:\ProgramData\OQS Agent\spool"),
            "{text}"
        );
        assert_eq!(
            cfg.collector_ca,
            Some(PathBuf::from(r"C:\ProgramData\OQS Agent\collector-ca.pem"))
        );
    }

    #[test]
    fn a_bad_property_fails_naming_the_property() {
        type Spoil = fn(&mut Properties);
        let cases: [(&str, Spoil); 6] = [
            ("SITE_ID", |p| p.site_id = None),
            ("SITE_ID", |p| {
                p.site_id = Some("a clinic/with spaces".into())
            }),
            ("TERMINAL_ID", |p| p.terminal_id = Some(" ".into())),
            ("PREFECTURE", |p| p.prefecture = Some("東京".into())),
            ("AREA", |p| p.prefecture = None),
            ("COLLECTOR_URL", |p| {
                p.collector_url = Some("ftp://noc".into())
            }),
        ];
        for (property, spoil) in cases {
            let mut p = good();
            spoil(&mut p);
            let e = compose(&p).unwrap_err().to_string();
            assert!(e.starts_with(property), "{property}: {e}");
            assert!(!e.contains("oqs-enroll"), "never prints the token: {e}");
        }
    }

    #[test]
    fn an_installer_directory_loses_its_trailing_dot() {
        assert_eq!(
            without_trailing_dot(PathBuf::from(r"C:\ProgramData\OQS Agent\spool\.")),
            PathBuf::from(r"C:\ProgramData\OQS Agent\spool")
        );
        assert_eq!(
            without_trailing_dot(PathBuf::from("/var/lib/x/.")),
            PathBuf::from("/var/lib/x")
        );
        assert_eq!(without_trailing_dot(PathBuf::from(".")), PathBuf::from("."));
    }

    #[test]
    fn a_yes_no_property_takes_the_installer_s_spellings() {
        assert!(!flag("X", None).unwrap());
        assert!(!flag("X", Some("")).unwrap());
        assert!(!flag("X", Some("0")).unwrap());
        assert!(flag("X", Some("1")).unwrap());
        assert!(flag("X", Some(" Yes ")).unwrap());
        assert!(flag("COLLECTOR_INSECURE", Some("maybe"))
            .unwrap_err()
            .to_string()
            .starts_with("COLLECTOR_INSECURE"));
    }

    #[test]
    fn an_upgrade_keeps_the_existing_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("OQS Agent").join("agent.toml");
        assert_eq!(write(&path, &good(), false).unwrap(), Written::New);
        std::fs::write(&path, "# the NOC's edit\n").unwrap();
        // An upgrade without properties (or with bad ones) leaves the file alone.
        assert_eq!(
            write(&path, &Properties::default(), false).unwrap(),
            Written::KeptExisting
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# the NOC's edit\n"
        );
        assert!(write(&path, &Properties::default(), true).is_err());
    }
}
