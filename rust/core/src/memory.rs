//! Memory hints for the large, randomly accessed arrays of the solvers.

/// Ask the kernel to back the 2 MiB-aligned part of `[ptr, ptr + bytes)`
/// with transparent huge pages (Linux `madvise(MADV_HUGEPAGE)`), before it is
/// first touched. A hint only: ignored when it fails, on other systems, and
/// for arrays under 4 MiB (which the TLB covers anyway).
pub fn advise_huge_pages(ptr: *const u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        if bytes < 2 * HUGE {
            return;
        }
        let addr = ptr as usize;
        let start = addr.next_multiple_of(HUGE);
        let end = (addr + bytes) & !(HUGE - 1);
        if end > start {
            // SAFETY: the range lies inside an allocation the caller owns;
            // MADV_HUGEPAGE changes no contents and cannot fault.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}
