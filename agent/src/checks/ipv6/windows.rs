//! Reading the IPv6 state on Windows: one PowerShell call (`Get-NetIPAddress`, `Get-NetRoute`,
//! `Get-DnsClientServerAddress`) printing one JSON document, and its parser.
//!
//! The parser is plain text processing, compiled and unit-tested on every platform (fixtures written
//! from the cmdlets' property names); only [`observe`], which starts PowerShell, is Windows-only and
//! UNTESTED here (no Windows target can be built on this project's machines). PowerShell is used
//! rather than `netsh` because the cmdlets' property names do not change with the display language
//! (a Japanese Windows prints netsh's tables in Japanese). Must never change a setting.

use super::{Observed, ObservedAddress};
use serde_json::Value;
use std::net::{IpAddr, Ipv6Addr};

/// The script [`observe`] runs. Enum-valued properties are turned into their names, so the JSON
/// is the same on Windows PowerShell 5.1 and PowerShell 7.
pub const SCRIPT: &str = r#"$ErrorActionPreference = 'Stop'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
$a = @(Get-NetIPAddress -AddressFamily IPv6 | ForEach-Object {
  [pscustomobject]@{ InterfaceAlias = $_.InterfaceAlias; IPAddress = $_.IPAddress;
    PrefixLength = [int]$_.PrefixLength; AddressState = "$($_.AddressState)";
    SuffixOrigin = "$($_.SuffixOrigin)" } })
$r = @(Get-NetRoute -AddressFamily IPv6 -DestinationPrefix '::/0' -ErrorAction SilentlyContinue |
  ForEach-Object { [pscustomobject]@{ NextHop = $_.NextHop; InterfaceAlias = $_.InterfaceAlias } })
$d = @(Get-DnsClientServerAddress -AddressFamily IPv6 | ForEach-Object { $_.ServerAddresses })
[pscustomobject]@{ addresses = $a; routes = $r; dns = $d } | ConvertTo-Json -Depth 4 -Compress
"#;

/// What could not be understood in the script's output.
#[derive(Debug, thiserror::Error)]
#[error("cannot read PowerShell's IPv6 output: {0}")]
pub struct ParseError(String);

/// ConvertTo-Json writes a one-element list as the element itself: accept both.
fn list(v: Option<&Value>) -> Vec<&Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
    }
}

/// Windows writes scoped addresses as `fe80::1%12`.
fn addr(s: &str) -> Option<Ipv6Addr> {
    s.split('%').next()?.trim().parse().ok()
}

/// Parses the JSON [`SCRIPT`] prints.
pub fn parse(json: &str) -> Result<Observed, ParseError> {
    let doc: Value = serde_json::from_str(json.trim_start_matches('\u{feff}').trim())
        .map_err(|e| ParseError(e.to_string()))?;
    if !doc.is_object() {
        return Err(ParseError("expected one JSON object".into()));
    }
    let mut o = Observed::default();
    for a in list(doc.get("addresses")) {
        let Some(address) = a.get("IPAddress").and_then(Value::as_str).and_then(addr) else {
            continue;
        };
        let state = a.get("AddressState").and_then(Value::as_str).unwrap_or("");
        // Tentative/Duplicate/Invalid addresses are not usable: leave them out.
        if !matches!(state, "Preferred" | "Deprecated") {
            continue;
        }
        o.addresses.push(ObservedAddress {
            interface: a
                .get("InterfaceAlias")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            address,
            prefix_len: a
                .get("PrefixLength")
                .and_then(Value::as_u64)
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(64),
            // Privacy extensions: a random suffix is a temporary address.
            temporary: a.get("SuffixOrigin").and_then(Value::as_str) == Some("Random"),
            deprecated: state == "Deprecated",
        });
    }
    for r in list(doc.get("routes")) {
        o.has_default_route = true;
        if let Some(gw) = r.get("NextHop").and_then(Value::as_str).and_then(addr) {
            if !gw.is_unspecified() && !o.default_gateways.contains(&gw) {
                o.default_gateways.push(gw);
            }
        }
    }
    for d in list(doc.get("dns")) {
        if let Some(ip) = d.as_str().and_then(addr) {
            // fec0:0:0:ffff::1..3 are Windows' placeholders when no server is configured.
            let placeholder = ip.segments()[..4] == [0xfec0, 0, 0, 0xffff];
            let ip = IpAddr::V6(ip);
            if !placeholder && !o.dns_servers.contains(&ip) {
                o.dns_servers.push(ip);
            }
        }
    }
    Ok(o)
}

/// Runs [`SCRIPT`] and parses its output; a PowerShell that has not finished within `timeout` is
/// killed. Blocking (call from a blocking thread). UNTESTED.
#[cfg(windows)]
pub fn observe(timeout: std::time::Duration) -> std::io::Result<Observed> {
    use std::io::Read;
    use std::os::windows::process::CommandExt;
    use std::process::Stdio;
    // No console window flashes up on the clinic's screen.
    const CREATE_NO_WINDOW: u32 = 0x0800_0000;
    let mut child = std::process::Command::new("powershell.exe")
        .args([
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-Command",
            SCRIPT,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .creation_flags(CREATE_NO_WINDOW)
        .spawn()?;
    // Read both pipes while waiting, so a full pipe cannot stall the child.
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let stderr = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        let exited = match child.try_wait() {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        if let Some(status) = exited {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "PowerShell gave no answer within {} ms",
                    timeout.as_millis()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        // The first line says what failed; the rest is PowerShell's position report.
        let err = String::from_utf8_lossy(&err);
        let first = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        return Err(std::io::Error::other(format!(
            "powershell exited with {status}: {first}"
        )));
    }
    parse(&String::from_utf8_lossy(&out)).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As a Windows 11 terminal behind a FLET'S router prints it: a preferred global address, a
    /// temporary one, a deprecated old prefix during renumbering, link-local, loopback, and the
    /// router as DNS server (手順5).
    const CLINIC: &str = r#"{"addresses":[
      {"InterfaceAlias":"イーサネット","IPAddress":"2408:210:1:2:5d2c:1a:bb:3","PrefixLength":64,"AddressState":"Preferred","SuffixOrigin":"Link"},
      {"InterfaceAlias":"イーサネット","IPAddress":"2408:210:1:2:9a1:77:e2:10","PrefixLength":128,"AddressState":"Preferred","SuffixOrigin":"Random"},
      {"InterfaceAlias":"イーサネット","IPAddress":"2408:210:9:9:5d2c:1a:bb:3","PrefixLength":64,"AddressState":"Deprecated","SuffixOrigin":"Link"},
      {"InterfaceAlias":"イーサネット","IPAddress":"fe80::5d2c:1a:bb:3%12","PrefixLength":64,"AddressState":"Preferred","SuffixOrigin":"Link"},
      {"InterfaceAlias":"Loopback Pseudo-Interface 1","IPAddress":"::1","PrefixLength":128,"AddressState":"Preferred","SuffixOrigin":"WellKnown"},
      {"InterfaceAlias":"イーサネット","IPAddress":"2408:210:1:2::dead","PrefixLength":64,"AddressState":"Tentative","SuffixOrigin":"Dhcp"}],
     "routes":[{"NextHop":"fe80::1","InterfaceAlias":"イーサネット"}],
     "dns":["2408:210:1:2::1","fec0:0:0:ffff::1%1"]}"#;

    #[test]
    fn a_clinic_terminal_reads_like_linux_does() {
        let o = parse(CLINIC).unwrap();
        assert_eq!(o.addresses.len(), 5, "the tentative address is left out");
        let temp = o.addresses.iter().filter(|a| a.temporary).count();
        assert_eq!(temp, 1);
        let old = o.addresses.iter().find(|a| a.deprecated).unwrap();
        assert_eq!(
            old.address,
            "2408:210:9:9:5d2c:1a:bb:3".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(o.addresses[0].interface, "イーサネット");
        assert!(o.has_default_route);
        assert_eq!(
            o.default_gateways,
            vec!["fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            o.dns_servers,
            vec!["2408:210:1:2::1".parse::<IpAddr>().unwrap()]
        );
        // The same judgement as on Linux: the /64 of the preferred, non-temporary address.
        let prefix = super::super::prefix_in_use(&o.addresses).unwrap();
        assert_eq!(prefix.to_string(), "2408:210:1:2::/64");
    }

    #[test]
    fn single_items_empty_lists_and_a_bom_are_accepted() {
        let one = "\u{feff}{\"addresses\":{\"InterfaceAlias\":\"Wi-Fi\",\"IPAddress\":\"2001:f70:1::5\",\"PrefixLength\":64,\"AddressState\":\"Preferred\",\"SuffixOrigin\":\"Dhcp\"},\"routes\":null,\"dns\":\"2001:f70:1::1\"}";
        let o = parse(one).unwrap();
        assert_eq!(o.addresses.len(), 1);
        assert!(!o.has_default_route);
        assert_eq!(o.dns_servers.len(), 1);
        let none = parse("{\"addresses\":[],\"routes\":[],\"dns\":[]}").unwrap();
        assert_eq!(none, Observed::default());
    }

    #[test]
    fn garbage_is_an_error_that_says_so() {
        for bad in ["", "not json", "[1,2]", "\"text\""] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("PowerShell"), "{bad}: {e}");
        }
    }
}
