//! Which HTTP CONNECT proxy a connection to the collector goes through, if any: a configured one
//! (`collector.proxy = "http://HOST:PORT"`), the machine's (`"system"`: on Windows the WinHTTP
//! proxy and bypass list that `netsh winhttp set proxy` sets, which is what a service sees; on
//! Linux `HTTPS_PROXY` / `NO_PROXY`), or none; and the `no_proxy` list that sends some
//! collectors direct.
//!
//! Must never hold a proxy's credentials in a URL, nor print them: they come from
//! `collector.proxy_auth_file` and are shown as `***`.

use std::fmt;
use std::net::IpAddr;

/// A proxy's address: a host name or an IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ProxyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `user:password` for a proxy's Basic authentication. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    user: String,
    password: String,
}

impl fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyCredentials(***)")
    }
}

impl ProxyCredentials {
    /// Reads the first line of a `proxy_auth_file`: `user:password`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        let Some((user, password)) = line.split_once(':') else {
            return Err("its first line must be user:password".into());
        };
        if user.is_empty() {
            return Err("its first line has no user before the ':'".into());
        }
        if line.chars().any(char::is_control) {
            return Err("its first line holds a control character".into());
        }
        Ok(Self {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Reads and parses a `proxy_auth_file`; the error names the file, never its content.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The `Proxy-Authorization` header's value.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Hosts reached without the proxy: names (`collector.example` matches it and its subdomains, as
/// does `.collector.example`), addresses and prefixes (`10.0.0.0/8`, `2001:db8::/32`), or `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<Bypass>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bypass {
    All,
    /// A name, lower case, without a leading dot.
    Suffix(String),
    Net(IpAddr, u8),
    /// WinHTTP's `<local>`: names without a dot.
    Local,
}

impl NoProxy {
    /// Parses entries, each naming what was wrong.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = Vec::new();
        for e in entries {
            let e = e.trim();
            if e.is_empty() {
                continue;
            }
            out.push(Bypass::parse(e)?);
        }
        Ok(Self { entries: out })
    }

    /// Parses a list as the environment (`,`) or WinHTTP (`;` and spaces) writes it.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        Self::parse(list.split([',', ';', ' ', '\t', '\n']))
    }

    /// Whether `host` (a name or an address, without brackets) is reached directly.
    pub fn bypasses(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        self.entries.iter().any(|b| match b {
            Bypass::All => true,
            Bypass::Local => ip.is_none() && !host.contains('.'),
            Bypass::Suffix(s) => {
                host == *s
                    || (host.len() > s.len()
                        && host.ends_with(s.as_str())
                        && host.as_bytes()[host.len() - s.len() - 1] == b'.')
            }
            Bypass::Net(net, len) => ip.is_some_and(|ip| in_prefix(ip, *net, *len)),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Bypass {
    fn parse(e: &str) -> Result<Self, String> {
        if e == "*" {
            return Ok(Self::All);
        }
        if e.eq_ignore_ascii_case("<local>") {
            return Ok(Self::Local);
        }
        if let Some((net, len)) = e.split_once('/') {
            let net: IpAddr = net
                .trim_matches(['[', ']'])
                .parse()
                .map_err(|_| format!("{e:?}: not an address prefix (such as 10.0.0.0/8)"))?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{e:?}: the prefix length must be 0 to {max}"))?;
            return Ok(Self::Net(net, len));
        }
        let bare = e.trim_matches(['[', ']']);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        // WinHTTP writes `*.example.com`; the environment `.example.com`: both mean the domain.
        let name = e.trim_start_matches("*.").trim_start_matches('.');
        let name = name.split(':').next().unwrap_or(name);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(format!(
                "{e:?}: not a host name, an address, a prefix (10.0.0.0/8) or *"
            ));
        }
        Ok(Self::Suffix(
            name.trim_end_matches('.').to_ascii_lowercase(),
        ))
    }
}

fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Parses a proxy as configured: `http://HOST:PORT` (a port is required: proxies rarely listen on
/// 80). Only `http://`: the tunnel itself carries TLS end to end, so the proxy never sees a report.
pub fn parse_proxy_url(s: &str) -> Result<ProxyAddr, String> {
    if s.chars().any(char::is_control) {
        return Err("it holds a control character".into());
    }
    let Some(rest) = s.strip_prefix("http://") else {
        return Err(match s.split_once("://") {
            Some((scheme, _)) => format!(
                "the scheme {scheme:?} is not supported: use http://HOST:PORT (an HTTP CONNECT \
                 proxy; TLS to the collector stays end to end through it), or \"system\""
            ),
            None => "use http://HOST:PORT, or \"system\"".into(),
        });
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') {
        return Err(
            "credentials do not go in the URL: put user:password in collector.proxy_auth_file"
                .into(),
        );
    }
    if rest.contains(['/', '?', '#']) {
        return Err("a proxy URL is http://HOST:PORT, without a path".into());
    }
    host_port(rest).ok_or_else(|| format!("{s:?} has no HOST:PORT (a port is required)"))
}

/// `host:port` or `[v6]:port`, the port required and not 0.
fn host_port(s: &str) -> Option<ProxyAddr> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, p) = r.split_once("]:")?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        (h, p)
    } else {
        let (h, p) = s.rsplit_once(':')?;
        if h.contains(':') {
            return None;
        }
        (h, p)
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
    {
        return None;
    }
    Some(ProxyAddr {
        host: host.to_owned(),
        port,
    })
}

/// The machine's proxy for HTTPS as the system states it now, and its bypass list: read at each
/// connection, so a change (a kitting script, `netsh winhttp`) needs no restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemProxy {
    pub proxy: Option<ProxyAddr>,
    pub bypass: NoProxy,
    /// Where it was read (`WinHTTP`, `HTTPS_PROXY`), for the log and the report.
    pub source: &'static str,
    /// What could not be understood (a malformed setting), said rather than ignored.
    pub problem: Option<String>,
}

impl SystemProxy {
    /// The machine's proxy now.
    pub fn read() -> Self {
        #[cfg(windows)]
        {
            winhttp::read()
        }
        #[cfg(not(windows))]
        {
            Self::from_env(|k| std::env::var(k).ok())
        }
    }

    /// `HTTPS_PROXY` (or `https_proxy`, then `ALL_PROXY`) and `NO_PROXY` (or `no_proxy`), as
    /// curl reads them. A value without a scheme is taken as `http://`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        let pick = |names: &[&'static str]| {
            names
                .iter()
                .find_map(|n| get(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
        };
        let mut out = SystemProxy {
            source: "environment",
            ..Default::default()
        };
        if let Some((name, v)) = pick(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]) {
            out.source = name;
            let v = v.trim();
            let url = if v.contains("://") {
                v.to_owned()
            } else {
                format!("http://{v}")
            };
            match parse_proxy_url(&url) {
                Ok(p) => out.proxy = Some(p),
                Err(e) => out.problem = Some(format!("{name}: {e}")),
            }
        }
        if let Some((name, v)) = pick(&["NO_PROXY", "no_proxy"]) {
            match NoProxy::parse_list(&v) {
                Ok(b) => out.bypass = b,
                Err(e) => out.problem = Some(format!("{name}: {e}")),
            }
        }
        out
    }

    /// Whether a connection to `host` goes around this proxy (also when there is none).
    pub fn goes_direct(&self, host: &str) -> bool {
        self.proxy.is_none() || self.bypass.bypasses(host)
    }

    /// The facts `oqs-agent check` shows: where the setting was read, the proxy, what could not
    /// be understood, and for each host whether it is reached through the proxy or around it.
    pub fn facts(&self, hosts: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "source": self.source,
            "proxy": self.proxy.as_ref().map(|p| p.to_string()),
            "problem": self.problem,
            "hosts": hosts
                .iter()
                .map(|h| serde_json::json!({ "host": h, "bypassed": self.goes_direct(h) }))
                .collect::<Vec<_>>(),
        })
    }

    /// The facts an agent tells the collector with each stream (`Uplink.system_proxy`): where
    /// the setting was read, the proxy, what could not be understood, and for each entry of the
    /// OQS bypass list (DOMAIN.md §12) whether its name goes around the proxy.
    pub fn wire_facts(&self) -> oqs_proto::v1::SystemProxyFacts {
        let text = |s: &str, n: usize| -> String { s.chars().take(n).collect() };
        oqs_proto::v1::SystemProxyFacts {
            source: text(self.source, 32),
            proxy: self
                .proxy
                .as_ref()
                .map(|p| text(&p.to_string(), 256))
                .unwrap_or_default(),
            problem: text(self.problem.as_deref().unwrap_or(""), 256),
            domains: crate::guide::PROXY_BYPASS
                .iter()
                .map(|(domain, name)| oqs_proto::v1::DomainRoute {
                    domain: (*domain).to_owned(),
                    bypassed: self.goes_direct(name),
                })
                .collect(),
        }
    }

    /// WinHTTP's proxy string: `host:port`, or per scheme `http=h:p;https=h:p` (the HTTPS one
    /// wins, then the one without a scheme, then HTTP's: a CONNECT goes to any of them).
    pub fn from_winhttp(proxy: &str, bypass: &str) -> Self {
        let mut out = SystemProxy {
            source: "WinHTTP",
            ..Default::default()
        };
        let mut plain = None;
        let mut https = None;
        let mut http = None;
        for part in proxy.split([';', ' ']).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((s, v)) if s.eq_ignore_ascii_case("https") => https = Some(v),
                Some((s, v)) if s.eq_ignore_ascii_case("http") => http = Some(v),
                Some(_) => {}
                None => plain = plain.or(Some(part)),
            }
        }
        if let Some(v) = https.or(plain).or(http) {
            let v = v.strip_prefix("http://").unwrap_or(v);
            match host_port(v.trim_end_matches('/')) {
                Some(p) => out.proxy = Some(p),
                None => out.problem = Some(format!("WinHTTP proxy {v:?}: not HOST:PORT")),
            }
        }
        match NoProxy::parse_list(bypass) {
            Ok(b) => out.bypass = b,
            Err(e) => out.problem = Some(format!("WinHTTP bypass list: {e}")),
        }
        out
    }
}

#[cfg(windows)]
#[allow(unsafe_code)]
mod winhttp {
    //! `WinHttpGetDefaultProxyConfiguration`: the machine's WinHTTP proxy (the registry value
    //! `netsh winhttp set proxy` writes), what a Windows service's HTTP clients use.
    use super::SystemProxy;
    use windows_sys::Win32::Foundation::GlobalFree;
    use windows_sys::Win32::Networking::WinHttp::{
        WinHttpGetDefaultProxyConfiguration, WINHTTP_ACCESS_TYPE_NAMED_PROXY, WINHTTP_PROXY_INFO,
    };

    fn take(p: *mut u16) -> String {
        if p.is_null() {
            return String::new();
        }
        // SAFETY: WinHTTP returns NUL-terminated strings it allocated with GlobalAlloc; read up
        // to the NUL, then free them once.
        let s = unsafe {
            let mut n = 0;
            while *p.add(n) != 0 {
                n += 1;
            }
            String::from_utf16_lossy(std::slice::from_raw_parts(p, n))
        };
        unsafe { GlobalFree(p as _) };
        s
    }

    pub fn read() -> SystemProxy {
        let mut info: WINHTTP_PROXY_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-parameter; the strings it receives are freed by `take`.
        let ok = unsafe { WinHttpGetDefaultProxyConfiguration(&mut info) } != 0;
        if !ok {
            return SystemProxy {
                source: "WinHTTP",
                problem: Some(format!(
                    "WinHttpGetDefaultProxyConfiguration failed: {}",
                    std::io::Error::last_os_error()
                )),
                ..Default::default()
            };
        }
        let proxy = take(info.lpszProxy);
        let bypass = take(info.lpszProxyBypass);
        if info.dwAccessType != WINHTTP_ACCESS_TYPE_NAMED_PROXY {
            return SystemProxy {
                source: "WinHTTP",
                ..Default::default()
            };
        }
        SystemProxy::from_winhttp(&proxy, &bypass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine's WinHTTP proxy as `netsh winhttp set proxy` stores it (the registry value
    /// WinHttpSettings: a header, then the proxy and the bypass list, each a length and its
    /// bytes), read through WinHttpGetDefaultProxyConfiguration as the agent's service reads it.
    /// Ignored by default: it writes the machine's setting; tests/windows/run runs it in a Wine
    /// prefix of its own (what Wine's WinHTTP reads; Windows itself is not verified here).
    #[cfg(windows)]
    #[test]
    #[ignore = "writes the machine's WinHTTP proxy: tests/windows/run runs it in a throwaway Wine prefix"]
    fn the_machines_winhttp_proxy_is_read() {
        let (proxy, bypass) = ("proxy.base.oqs-pdl.org:8080", "*.onshikaku.org;<local>");
        let mut blob: Vec<u8> = Vec::new();
        for v in [0x18u32, 0, 3] {
            blob.extend(v.to_le_bytes());
        }
        for s in [proxy, bypass] {
            blob.extend((s.len() as u32).to_le_bytes());
            blob.extend(s.as_bytes());
        }
        let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
        let key = r"HKLM\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";
        let st = std::process::Command::new("reg")
            .args([
                "add",
                key,
                "/v",
                "WinHttpSettings",
                "/t",
                "REG_BINARY",
                "/d",
                &hex,
                "/f",
            ])
            .status()
            .unwrap();
        assert!(st.success(), "reg add: {st}");
        let sys = SystemProxy::read();
        assert_eq!(sys.source, "WinHTTP");
        assert_eq!(sys.problem, None);
        assert_eq!(sys.proxy.unwrap().to_string(), proxy);
        assert!(sys.bypass.bypasses("hweb.oqs-st.onshikaku.org"));
        assert!(sys.bypass.bypasses("relay-pc"), "<local>");
        assert!(!sys.bypass.bypasses("noc.example.jp"));
        let st = std::process::Command::new("reg")
            .args(["delete", key, "/v", "WinHttpSettings", "/f"])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(SystemProxy::read().proxy, None, "no setting: direct");
    }

    /// The vendors' kitting: the OQS network's proxy with a bypass list of the OQS domains.
    #[test]
    fn the_facts_say_which_oqs_names_go_around_the_proxy() {
        let sys = SystemProxy::from_winhttp(
            "proxy.base.oqs-pdl.org:8080",
            "*.onshikaku.org;*.flets-east.jp;*.lineauth.mnw;pweb.base.oqs-pdl.org",
        );
        let f = sys.facts(&["www.lineauth.mnw", "ntp.base.oqs-pdl.org", "noc.example.jp"]);
        assert_eq!(f["source"], "WinHTTP");
        assert_eq!(f["proxy"], "proxy.base.oqs-pdl.org:8080");
        let bypassed: Vec<bool> = f["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["bypassed"].as_bool().unwrap())
            .collect();
        assert_eq!(bypassed, [true, false, false]);
        assert!(SystemProxy::default().goes_direct("noc.example.jp"));
    }

    #[test]
    fn a_proxy_url_is_http_host_and_port_and_nothing_else() {
        assert_eq!(
            parse_proxy_url("http://proxy.base.oqs-pdl.org:8080").unwrap(),
            ProxyAddr {
                host: "proxy.base.oqs-pdl.org".into(),
                port: 8080
            }
        );
        let v6 = parse_proxy_url("http://[2001:db8::1]:3128/").unwrap();
        assert_eq!(v6.host, "2001:db8::1");
        assert_eq!(v6.to_string(), "[2001:db8::1]:3128");
        for (bad, says) in [
            ("https://p:8080", "not supported"),
            ("socks5://p:1080", "not supported"),
            ("p:8080", "http://HOST:PORT"),
            ("http://user:pw@p:8080", "proxy_auth_file"),
            ("http://p", "a port is required"),
            ("http://p:0", "a port is required"),
            ("http://p:8080/path", "without a path"),
            ("http://p:80\r", "control character"),
            ("http://2001:db8::1:3128", "a port is required"),
        ] {
            let e = parse_proxy_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_come_from_their_file_and_never_print() {
        let c = ProxyCredentials::parse("noc:s3cr:et\n").unwrap();
        assert_eq!(c.header_value(), "Basic bm9jOnMzY3I6ZXQ=");
        assert_eq!(format!("{c:?}"), "ProxyCredentials(***)");
        assert!(ProxyCredentials::parse("no-colon").is_err());
        assert!(ProxyCredentials::parse(":pw").is_err());
        assert!(ProxyCredentials::parse("").is_err());
    }

    #[test]
    fn the_bypass_list_matches_domains_addresses_and_prefixes() {
        let b = NoProxy::parse_list(
            "collector.example, .noc.example;*.oqs-pdl.org 10.0.0.0/8 [2001:db8::]/32 192.0.2.7",
        )
        .unwrap();
        for yes in [
            "collector.example",
            "a.collector.example",
            "noc.example",
            "x.noc.example",
            "pweb.base.oqs-pdl.org",
            "10.1.2.3",
            "2001:db8::5",
            "192.0.2.7",
            "COLLECTOR.EXAMPLE.",
        ] {
            assert!(b.bypasses(yes), "{yes}");
        }
        for no in [
            "xcollector.example",
            "example",
            "11.0.0.1",
            "2001:db9::1",
            "192.0.2.8",
        ] {
            assert!(!b.bypasses(no), "{no}");
        }
        assert!(NoProxy::parse(["*"]).unwrap().bypasses("anything"));
        let local = NoProxy::parse_list("<local>").unwrap();
        assert!(local.bypasses("relay-pc") && !local.bypasses("relay.example"));
        for bad in ["10.0.0.0/33", "not a host!", "fe80::/200"] {
            assert!(NoProxy::parse([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_system_proxy_is_read_as_curl_and_winhttp_state_it() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = SystemProxy::from_env(env(&[
            ("https_proxy", "proxy.lan:3128"),
            ("NO_PROXY", "localhost,.clinic.lan"),
        ]));
        assert_eq!(s.proxy.unwrap().to_string(), "proxy.lan:3128");
        assert_eq!(s.source, "https_proxy");
        assert!(s.bypass.bypasses("relay.clinic.lan"));
        let bad = SystemProxy::from_env(env(&[("HTTPS_PROXY", "https://p:1")]));
        assert!(bad.proxy.is_none());
        assert!(bad.problem.unwrap().contains("HTTPS_PROXY"));
        assert!(SystemProxy::from_env(env(&[])).proxy.is_none());

        let w = SystemProxy::from_winhttp(
            "http=web:80;https=proxy.base.oqs-pdl.org:8080",
            "<local>;*.lineauth.mnw",
        );
        assert_eq!(w.proxy.unwrap().to_string(), "proxy.base.oqs-pdl.org:8080");
        assert!(w.bypass.bypasses("www.lineauth.mnw") && w.bypass.bypasses("relay-pc"));
        let plain = SystemProxy::from_winhttp("10.0.0.1:8080", "");
        assert_eq!(plain.proxy.unwrap().to_string(), "10.0.0.1:8080");
    }

    /// What a kitting script leaves (the OQS proxy, a bypass list without the portal's domain)
    /// told to the collector: every OQS entry of DOMAIN.md §12 with whether its name goes around.
    #[test]
    fn the_wire_facts_say_which_oqs_domains_go_around_the_proxy() {
        let p = SystemProxy::from_winhttp(
            "proxy.base.oqs-pdl.org:8080",
            "*.onshikaku.org;*.flets-east.jp;*.flets-west.jp;*.obn.managedpki.ne.jp;\
             *.cybertrust.ne.jp;*.secomtrust.net;pweb.base.oqs-pdl.org",
        );
        let f = p.wire_facts();
        assert_eq!(f.source, "WinHTTP");
        assert_eq!(f.proxy, "proxy.base.oqs-pdl.org:8080");
        assert_eq!(f.domains.len(), crate::guide::PROXY_BYPASS.len());
        let around: Vec<&str> = f
            .domains
            .iter()
            .filter(|d| !d.bypassed)
            .map(|d| d.domain.as_str())
            .collect();
        assert_eq!(around, ["lineauth.mnw"]);
        let none = SystemProxy::from_env(|_| None).wire_facts();
        assert!(none.proxy.is_empty() && none.domains.iter().all(|d| d.bypassed));
    }
}
