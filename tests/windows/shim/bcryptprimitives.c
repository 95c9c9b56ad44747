/* TEST-ONLY stand-in for bcryptprimitives.dll under Wine 8, which lacks it: Rust's standard library
 * imports bcryptprimitives!ProcessPrng for its random numbers (HashMap keys, ...), and Windows 10/11
 * have it. It forwards to advapi32's RtlGenRandom (SystemFunction036), which Wine has.
 *
 * Never shipped: tests/windows/run builds it into the Wine prefix's system32 only. A real Windows
 * has the real DLL; the MSI and deploy/windows/build never touch this file. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
