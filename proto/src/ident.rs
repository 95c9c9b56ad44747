//! Identities carried on the wire — site, terminal, customer ID, area — parsed once at the edge and
//! trusted inside. Both the agent (on its configuration) and the collector (on every `Hello`) use
//! these rules, so an identity the agent accepts is one the collector accepts.
//!
//! Must never log or display a full customer ID: `CustomerId`'s `Display`/`Debug` mask it.

use std::fmt;
use thiserror::Error;

/// The longest site or terminal id accepted.
pub const MAX_ID_LEN: usize = 64;

/// Why an identity was refused. Each message names the field, the value's problem and the rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdentError {
    #[error("{field} is empty; it must be 1..={MAX_ID_LEN} characters of [A-Za-z0-9._-]")]
    Empty { field: &'static str },
    #[error("{field} is {len} characters; the limit is {MAX_ID_LEN}")]
    TooLong { field: &'static str, len: usize },
    #[error("{field} contains {ch:?} at position {pos}; only [A-Za-z0-9._-] is allowed")]
    BadChar {
        field: &'static str,
        ch: char,
        pos: usize,
    },
    #[error(
        "customer_id {masked} is not valid: it must be \"CAF\" + 10 digits or \"COP\" + 8 digits, \
         upper-case half-width (guide P4)"
    )]
    CustomerIdFormat { masked: String },
    #[error(
        "customer_id {masked} starts with COP, which exists only in NTT East; in the West it must be \
         \"CAF\" + 10 digits (guide FAQ Q5)"
    )]
    CustomerIdNotInWest { masked: String },
    #[error("area {0:?} is not known; use \"east\" or \"west\"")]
    Area(String),
    #[error(
        "connection {0:?} is not known; use \"flets_ipoe\" (the guide's method), \"ipv4_pppoe\" \
         or \"ipsec\""
    )]
    Connection(String),
}

fn check_id(field: &'static str, s: &str) -> Result<(), IdentError> {
    if s.is_empty() {
        return Err(IdentError::Empty { field });
    }
    let len = s.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdentError::TooLong { field, len });
    }
    if let Some((pos, ch)) = s
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdentError::BadChar { field, ch, pos });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an id: 1..=64 characters of `[A-Za-z0-9._-]`.
            pub fn parse(s: &str) -> Result<Self, IdentError> {
                check_id($field, s)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = IdentError;
            fn from_str(s: &str) -> Result<Self, IdentError> {
                Self::parse(s)
            }
        }
    };
}

id_type!(
    /// A clinic or pharmacy as the NOC names it.
    SiteId,
    "site_id"
);
id_type!(
    /// One OQS terminal within a site.
    TerminalId,
    "terminal_id"
);

/// The NTT area of a line (guide FAQ Q18/Q19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    East,
    West,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::East => "east",
            Area::West => "west",
        }
    }
    pub fn from_wire(a: crate::v1::Area) -> Option<Self> {
        match a {
            crate::v1::Area::East => Some(Area::East),
            crate::v1::Area::West => Some(Area::West),
            crate::v1::Area::Unspecified => None,
        }
    }
    pub fn to_wire(self) -> crate::v1::Area {
        match self {
            Area::East => crate::v1::Area::East,
            Area::West => crate::v1::Area::West,
        }
    }
}

impl std::str::FromStr for Area {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<Self, IdentError> {
        match s.to_ascii_lowercase().as_str() {
            "east" | "東日本" => Ok(Area::East),
            "west" | "西日本" => Ok(Area::West),
            _ => Err(IdentError::Area(s.to_owned())),
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a clinic reaches the OQS network. The guide (IP-VPN接続方式) covers FLET'S IPoE: IPv6,
/// the NW-base and NGN DNS servers, line authentication. IPv4 (PPPoE) closed networks and
/// IPsec+IKE over any ISP exist too (DOMAIN.md §12); there the IPv6 and line-authentication
/// checks do not apply, and neither do the guide's steps about them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    #[default]
    FletsIpoe,
    Ipv4Pppoe,
    Ipsec,
}

impl Connection {
    pub const ALL: [Connection; 3] = [
        Connection::FletsIpoe,
        Connection::Ipv4Pppoe,
        Connection::Ipsec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Connection::FletsIpoe => "flets_ipoe",
            Connection::Ipv4Pppoe => "ipv4_pppoe",
            Connection::Ipsec => "ipsec",
        }
    }

    /// What the NOC and the engineer read.
    pub fn label_ja(self) -> &'static str {
        match self {
            Connection::FletsIpoe => "フレッツ IPv6 IPoE（IP-VPN接続方式）",
            Connection::Ipv4Pppoe => "IPv4 閉域網（PPPoE）",
            Connection::Ipsec => "IPsec+IKE",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Connection::FletsIpoe => "FLET'S IPv6 IPoE (IP-VPN method)",
            Connection::Ipv4Pppoe => "IPv4 closed network (PPPoE)",
            Connection::Ipsec => "IPsec+IKE",
        }
    }

    /// Whether the guide's IPv6, NW-base/NGN DNS and line-authentication checks apply.
    pub fn is_guides(self) -> bool {
        self == Connection::FletsIpoe
    }

    /// Unspecified (an older agent) is the guide's method.
    pub fn from_wire(c: crate::v1::ConnectionMethod) -> Self {
        match c {
            crate::v1::ConnectionMethod::Unspecified | crate::v1::ConnectionMethod::FletsIpoe => {
                Connection::FletsIpoe
            }
            crate::v1::ConnectionMethod::Ipv4Pppoe => Connection::Ipv4Pppoe,
            crate::v1::ConnectionMethod::Ipsec => Connection::Ipsec,
        }
    }

    /// A report's method (an unknown number from a newer agent is the guide's method too).
    pub fn of_report(r: &crate::v1::Report) -> Self {
        Self::from_wire(
            crate::v1::ConnectionMethod::try_from(r.connection)
                .unwrap_or(crate::v1::ConnectionMethod::Unspecified),
        )
    }

    pub fn to_wire(self) -> crate::v1::ConnectionMethod {
        match self {
            Connection::FletsIpoe => crate::v1::ConnectionMethod::FletsIpoe,
            Connection::Ipv4Pppoe => crate::v1::ConnectionMethod::Ipv4Pppoe,
            Connection::Ipsec => crate::v1::ConnectionMethod::Ipsec,
        }
    }
}

impl std::str::FromStr for Connection {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<Self, IdentError> {
        Connection::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| IdentError::Connection(s.to_owned()))
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A お客さまID: `CAF` + 10 digits, or `COP` + 8 digits (East only) (guide P4, FAQ Q5).
///
/// Displays masked (`CAF******789`): only [`CustomerId::reveal`] gives the full value, for the
/// places that are allowed to show it (an authorised viewer, the support-call bundle).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CustomerId(String);

impl CustomerId {
    /// Parses a customer ID, checking the area rule when the area is known.
    pub fn parse(s: &str, area: Option<Area>) -> Result<Self, IdentError> {
        let masked = mask(s);
        let digits =
            |rest: &str, n: usize| rest.len() == n && rest.bytes().all(|b| b.is_ascii_digit());
        let ok = match s.get(..3) {
            Some("CAF") => digits(&s[3..], 10),
            Some("COP") => digits(&s[3..], 8),
            _ => false,
        };
        if !ok {
            return Err(IdentError::CustomerIdFormat { masked });
        }
        if area == Some(Area::West) && s.starts_with("COP") {
            return Err(IdentError::CustomerIdNotInWest { masked });
        }
        Ok(Self(s.to_owned()))
    }

    /// The full value. Call only where showing it is allowed; never in logs.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// The masked form: the 3-letter kind and the last 3 characters.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks any would-be customer ID so that an invalid one in an error message leaks nothing either.
fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerId({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_charset_and_refuse_others() {
        assert!(SiteId::parse("clinic-001.tokyo_A").is_ok());
        assert_eq!(
            SiteId::parse(""),
            Err(IdentError::Empty { field: "site_id" })
        );
        let long = "a".repeat(65);
        assert!(matches!(
            TerminalId::parse(&long),
            Err(IdentError::TooLong { len: 65, .. })
        ));
        let e = SiteId::parse("a/b").unwrap_err();
        assert!(e.to_string().contains("'/'"), "{e}");
        assert!(SiteId::parse("クリニック").is_err());
    }

    #[test]
    fn customer_id_follows_the_guide_rules() {
        assert!(CustomerId::parse("CAF0123456789", None).is_ok());
        assert!(CustomerId::parse("COP01234567", Some(Area::East)).is_ok());
        assert!(matches!(
            CustomerId::parse("COP01234567", Some(Area::West)),
            Err(IdentError::CustomerIdNotInWest { .. })
        ));
        for bad in [
            "caf0123456789",
            "CAF012345678",
            "COP0123456",
            "XYZ0123456789",
            "CAF01234567890",
        ] {
            assert!(CustomerId::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn customer_id_never_displays_in_full() {
        let id = CustomerId::parse("CAF0123456789", None).unwrap();
        assert_eq!(id.to_string(), "CAF*******789");
        assert!(!format!("{id:?}").contains("0123456"));
        let e = CustomerId::parse("CAF01234567", None)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("01234567"), "{e}");
    }
}
