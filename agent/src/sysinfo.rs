//! What the agent's Hello says about its machine for the NOC's inventory: its name, the operating system
//! with its version and build, and when the machine booted.
//!
//! Read once per agent start. Must never fail the agent or block for long: what cannot be read is
//! left out (an empty text, a zero time).

use oqs_proto::text_limits;

/// This machine's name (`COMPUTERNAME` on Windows, `HOSTNAME` or /etc/hostname elsewhere), cut
/// to the protocol's limit.
pub fn hostname() -> String {
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().chars().take(text_limits::HOSTNAME).collect())
        .unwrap_or_default()
}

/// The OS family and architecture, then what the OS says of its version and build, e.g.
/// "windows x86_64 Windows 10 Pro 22H2 (build 19045.3803)" or
/// "linux x86_64 Debian GNU/Linux 12 (bookworm), kernel 6.1.0-18-amd64".
pub fn os() -> String {
    let base = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    let detail = os_detail();
    let s = if detail.is_empty() {
        base
    } else {
        format!("{base} {detail}")
    };
    s.chars().take(text_limits::OS).collect()
}

#[cfg(target_os = "linux")]
fn os_detail() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| pretty_name(&t));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    match (pretty, kernel) {
        (Some(p), Some(k)) => format!("{p}, kernel {k}"),
        (Some(p), None) => p,
        (None, Some(k)) => format!("kernel {k}"),
        (None, None) => String::new(),
    }
}

/// `PRETTY_NAME` of an os-release file, unquoted.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        .filter(|v| !v.is_empty())
}

/// When the machine booted (Unix ms; 0: unknown).
#[cfg(target_os = "linux")]
pub fn boot_time_ms() -> i64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| btime_ms(&t))
        .unwrap_or(0)
}

/// The `btime` line of /proc/stat, in ms.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn btime_ms(stat: &str) -> Option<i64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|s| s.saturating_mul(1000))
}

#[cfg(windows)]
fn os_detail() -> String {
    windows::os_detail()
}

/// When the machine booted (Unix ms; 0: unknown).
#[cfg(windows)]
pub fn boot_time_ms() -> i64 {
    windows::boot_time()
}

#[cfg(not(any(windows, target_os = "linux")))]
fn os_detail() -> String {
    String::new()
}

/// When the machine booted (Unix ms; 0: unknown).
#[cfg(not(any(windows, target_os = "linux")))]
pub fn boot_time_ms() -> i64 {
    0
}

#[cfg(windows)]
#[allow(unsafe_code)]
mod windows {
    use windows_sys::Win32::System::Registry::{
        RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_DWORD, RRF_RT_REG_SZ,
    };
    use windows_sys::Win32::System::SystemInformation::GetTickCount64;

    const KEY: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    fn string(value: &str) -> Option<String> {
        let (key, name) = (wide(KEY), wide(value));
        let mut buf = vec![0u16; 256];
        let mut bytes = (buf.len() * 2) as u32;
        // SAFETY: the key and value names are NUL-terminated; `buf` holds `bytes` bytes.
        let rc = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                name.as_ptr(),
                RRF_RT_REG_SZ,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut bytes,
            )
        };
        if rc != 0 {
            return None;
        }
        let len = (bytes as usize / 2).min(buf.len());
        let s = String::from_utf16_lossy(&buf[..len]);
        let s = s.trim_end_matches('\0').trim().to_owned();
        (!s.is_empty()).then_some(s)
    }

    fn dword(value: &str) -> Option<u32> {
        let (key, name) = (wide(KEY), wide(value));
        let mut v = 0u32;
        let mut bytes = 4u32;
        // SAFETY: as above, into one u32.
        let rc = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                name.as_ptr(),
                RRF_RT_REG_DWORD,
                std::ptr::null_mut(),
                (&mut v as *mut u32).cast(),
                &mut bytes,
            )
        };
        (rc == 0).then_some(v)
    }

    pub fn os_detail() -> String {
        let product = string("ProductName");
        let display = string("DisplayVersion").or_else(|| string("CSDVersion"));
        let build = string("CurrentBuild").or_else(|| string("CurrentBuildNumber"));
        let build = match (build, dword("UBR")) {
            (Some(b), Some(u)) => Some(format!("{b}.{u}")),
            (b, _) => b,
        };
        super::join(product, display, build)
    }

    pub fn boot_time() -> i64 {
        // SAFETY: no arguments; milliseconds since the machine started.
        let up = unsafe { GetTickCount64() };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        now.saturating_sub(i64::try_from(up).unwrap_or(0)).max(0)
    }
}

/// "Windows 10 Pro 22H2 (build 19045.3803)" from what the registry gave.
#[cfg_attr(not(windows), allow(dead_code))]
fn join(product: Option<String>, display: Option<String>, build: Option<String>) -> String {
    let name = [product, display]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    match build {
        Some(b) if name.is_empty() => format!("build {b}"),
        Some(b) => format!("{name} (build {b})"),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_and_proc_stat_are_read_as_written() {
        let rel = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            pretty_name(rel).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(pretty_name("ID=x\n"), None);
        assert_eq!(pretty_name("PRETTY_NAME=\"\"\n"), None);
        let stat = "cpu  1 2 3\nintr 5\nbtime 1764547200\nprocesses 9\n";
        assert_eq!(btime_ms(stat), Some(1_764_547_200_000));
        assert_eq!(btime_ms("cpu 1\n"), None);
        assert_eq!(btime_ms("btime x\n"), None);
    }

    #[test]
    fn the_windows_name_is_put_together_from_what_the_registry_has() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            join(s("Windows 10 Pro"), s("22H2"), s("19045.3803")),
            "Windows 10 Pro 22H2 (build 19045.3803)"
        );
        assert_eq!(join(None, None, s("7601")), "build 7601");
        assert_eq!(join(s("Windows 7"), None, None), "Windows 7");
        assert_eq!(join(None, None, None), "");
    }

    #[test]
    fn this_machine_says_what_it_runs_and_when_it_booted() {
        let os = os();
        assert!(os.starts_with(std::env::consts::OS), "{os}");
        assert!(os.chars().count() <= text_limits::OS);
        #[cfg(any(windows, target_os = "linux"))]
        {
            assert!(
                os.len() > std::env::consts::OS.len() + std::env::consts::ARCH.len() + 1,
                "{os}"
            );
            let boot = boot_time_ms();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            assert!(boot > 0 && boot < now, "{boot}");
        }
    }
}
