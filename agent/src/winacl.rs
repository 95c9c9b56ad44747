//! Windows: who may read the terminal's secret. A file under `%ProgramData%` inherits
//! `BUILTIN\Users: read` from it, so the secret the collector issued would be readable by every
//! local account. [`restrict_to_owner`] gives the file a protected DACL (no inheritance) with full
//! control for SYSTEM, the Administrators and the account the agent runs as (the service's
//! `NT AUTHORITY\LocalService`, or the user running it by hand): what `chmod 0600` does on Linux.
//!
//! Must never widen access, and never touch any file but the one named.
#![cfg(windows)]
#![allow(unsafe_code)]

use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetFileSecurityW, GetTokenInformation, SetFileSecurityW, TokenUser, DACL_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

fn last_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// # Safety
/// `p` is a NUL-terminated UTF-16 string allocated by the system with `LocalAlloc`; freed here.
unsafe fn take_local_wide(p: *mut u16) -> String {
    let mut len = 0;
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) });
    unsafe { LocalFree(p.cast()) };
    s
}

/// The SID of the account this process runs as, in SDDL form (`S-1-5-19` for LocalService).
pub fn current_user_sid() -> std::io::Result<String> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo handle of this process; `token` is writable.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(last_error("OpenProcessToken"));
    }
    // u64 elements: TOKEN_USER needs pointer alignment.
    let mut buf = vec![0u64; 64];
    let mut len = 0u32;
    // SAFETY: `buf` has `buf.len() * 8` writable bytes; the token handle is valid until closed.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buf.as_mut_ptr().cast(),
            u32::try_from(buf.len() * 8).unwrap_or(u32::MAX),
            &mut len,
        )
    };
    let result = if ok == 0 {
        Err(last_error("GetTokenInformation"))
    } else {
        // SAFETY: on success `buf` starts with a TOKEN_USER whose SID points into `buf`.
        let user = unsafe { &*buf.as_ptr().cast::<TOKEN_USER>() };
        let mut s: *mut u16 = std::ptr::null_mut();
        if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut s) } == 0 {
            Err(last_error("ConvertSidToStringSidW"))
        } else {
            Ok(unsafe { take_local_wide(s) })
        }
    };
    // SAFETY: opened above.
    unsafe { CloseHandle(token) };
    result
}

/// The SDDL [`restrict_to_owner`] applies.
pub fn owner_only_sddl(user_sid: &str) -> String {
    format!("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;{user_sid})")
}

/// Gives `path` a protected DACL: SYSTEM, Administrators and this process's account only.
pub fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    let sddl = wide(std::ffi::OsStr::new(&owner_only_sddl(&current_user_sid()?)));
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor, freed below.
    if unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    } == 0
    {
        return Err(last_error(
            "ConvertStringSecurityDescriptorToSecurityDescriptorW",
        ));
    }
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated and `sd` a valid self-relative descriptor.
    let ok = unsafe {
        SetFileSecurityW(
            name.as_ptr(),
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            sd,
        )
    };
    unsafe { LocalFree(sd) };
    if ok == 0 {
        return Err(last_error(&format!("SetFileSecurityW {}", path.display())));
    }
    Ok(())
}

/// The file's DACL in SDDL form (for tests and diagnostics).
pub fn dacl_sddl(path: &Path) -> std::io::Result<String> {
    let name = wide(path.as_os_str());
    let mut buf = vec![0u64; 512];
    let mut needed = 0u32;
    // SAFETY: `buf` has `buf.len() * 8` writable bytes.
    if unsafe {
        GetFileSecurityW(
            name.as_ptr(),
            DACL_SECURITY_INFORMATION,
            buf.as_mut_ptr().cast(),
            u32::try_from(buf.len() * 8).unwrap_or(u32::MAX),
            &mut needed,
        )
    } == 0
    {
        return Err(last_error("GetFileSecurityW"));
    }
    let mut s: *mut u16 = std::ptr::null_mut();
    // SAFETY: `buf` holds the descriptor GetFileSecurityW wrote.
    if unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            buf.as_mut_ptr().cast(),
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut s,
            std::ptr::null_mut(),
        )
    } == 0
    {
        return Err(last_error(
            "ConvertSecurityDescriptorToStringSecurityDescriptorW",
        ));
    }
    Ok(unsafe { take_local_wide(s) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_file_is_readable_by_its_owner_system_and_administrators_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("terminal.secret");
        std::fs::write(&f, "s3cret").unwrap();
        restrict_to_owner(&f).unwrap();
        let sddl = dacl_sddl(&f).unwrap();
        let me = current_user_sid().unwrap();
        // What Wine keeps of it too: SYSTEM and the owner allowed, no Users, no Everyone. (Wine
        // drops the protected flag and the Administrators entry: those are Windows-only checks.)
        assert!(sddl.starts_with("D:"), "{sddl}");
        assert!(sddl.contains(";;;SY)"), "{sddl}");
        assert!(sddl.contains(&me), "{sddl} lacks {me}");
        assert!(
            !sddl.contains(";;;BU)") && !sddl.contains(";;;WD)") && !sddl.contains(";;;AU)"),
            "{sddl}"
        );
        // The owner can still read it.
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "s3cret");
    }
}
