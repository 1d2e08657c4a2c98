//! A scheduling hint for the core's threads that only wait for the disk and report (the Node
//! binding's fdatasync thread): a short time slice, so that when one wakes (an emit queued a
//! line, an fdatasync returned) it runs at once instead of waiting for a busy CPU's current
//! task to use up its slice (1.4 ms by default on a 2-CPU Linux 6.12+ machine, ~3-4 ms seen
//! behind a CPU-bound process). Linux 6.12+ (EEVDF with custom slices) honours it for a normal
//! thread without privileges; older kernels ignore the field. The thread's policy and nice
//! value are kept; a failure only costs latency.

/// `struct sched_attr` up to `sched_period` (SCHED_ATTR_SIZE_VER0, 48 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// The slice asked for: the kernel's smallest custom slice (0.1 ms).
pub const SHORT_SLICE_NS: u64 = 100_000;

/// Ask for `SHORT_SLICE_NS` as the calling thread's time slice, keeping its policy and nice
/// value. True when the kernel accepted the request (a pre-6.12 kernel accepts and ignores it).
pub fn prefer_short_slice() -> bool {
    const SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // SAFETY: sched_getattr(0 = this thread) writes at most SIZE bytes into `attr`, a live
    // #[repr(C)] struct of that size.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            SIZE,
            0,
        )
    };
    if got != 0 || attr.policy != libc::SCHED_OTHER as u32 {
        return false; // a real-time or batch/idle thread is left as it is
    }
    attr.size = SIZE;
    attr.flags = 0;
    attr.runtime = SHORT_SLICE_NS;
    // SAFETY: sched_setattr(0 = this thread) reads SIZE bytes from `attr`, a live #[repr(C)]
    // struct of that size.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice `/proc` shows for this thread (Linux 6.6+ lists `se.slice`), in ns.
    fn slice_of_this_thread() -> Option<u64> {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).ok()?;
        let line = s.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    fn nice_of_this_thread() -> i32 {
        // SAFETY: getpriority(PRIO_PROCESS, 0) reads the calling thread's nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    /// (major, minor) of the running kernel.
    fn kernel() -> (u32, u32) {
        let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut it = r.trim().split(['.', '-']).map(|x| x.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    #[test]
    fn a_thread_gets_the_short_slice_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: raising this thread's own nice value needs no privilege.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 7) };
            assert!(prefer_short_slice());
            assert_eq!(nice_of_this_thread(), 7);
            if kernel() >= (6, 12) {
                assert_eq!(slice_of_this_thread(), Some(SHORT_SLICE_NS));
            }
        })
        .join()
        .unwrap();
    }
}
