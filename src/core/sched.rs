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

/// A thread that sleeps until another thread hands it work and then wakes that thread back (the
/// Node binding's fdatasync thread and the event loop), kept on the other thread's CPU while they
/// take turns: an awaited emit wakes the fdatasync thread, which later wakes the event loop, and
/// a wake-up sent to another, idle virtual CPU takes tens of µs to be taken (an awaited
/// fsync-mode emit, quiet 2-CPU VM, p50 202–229 → 149–177 µs, p99 350–471 → 297–354 µs; the
/// same under a CPU-bound process, where no CPU idles). While several events are in flight the
/// thread may run anywhere again: kept on the event loop's CPU it took that thread's time (a
/// third fewer events/s with 64 in flight).
pub struct Follower {
    tid: libc::pid_t,
    /// The thread's own CPU set when it started, given back when it stops following.
    all: libc::cpu_set_t,
    /// The CPU it is kept on; -1 while it may run on any of `all`.
    pinned: std::sync::atomic::AtomicI32,
}

impl Follower {
    /// The calling thread, with the CPU set it has now; None where that cannot be read.
    pub fn this_thread() -> Option<Follower> {
        // SAFETY: an all-zero cpu_set_t is a valid (empty) set; sched_getaffinity(0 = this
        // thread) writes at most its size into it; gettid has no arguments and cannot fail.
        unsafe {
            let mut all: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut all) != 0 {
                return None;
            }
            let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
            Some(Follower {
                tid,
                all,
                pinned: std::sync::atomic::AtomicI32::new(-1),
            })
        }
    }

    /// Keep the thread on the caller's current CPU (`alone`: the caller hands it one piece of
    /// work and waits for it), or let it run on any of its CPUs again (`!alone`). A system call
    /// only when that changes; a failure leaves the thread where it was.
    pub fn follow(&self, alone: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let want = if alone {
            // SAFETY: sched_getcpu has no arguments.
            let cpu = unsafe { libc::sched_getcpu() };
            // SAFETY: `all` is a valid set; CPU_ISSET only reads it.
            if cpu < 0 || !unsafe { libc::CPU_ISSET(cpu as usize, &self.all) } {
                -1
            } else {
                cpu
            }
        } else {
            -1
        };
        if want == self.pinned.load(Relaxed) {
            return;
        }
        // SAFETY: an all-zero cpu_set_t is a valid set; CPU_SET writes inside it.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let set = if want < 0 {
            &self.all
        } else {
            // SAFETY: as above (`want` is a CPU number below CPU_SETSIZE: sched_getcpu's).
            unsafe { libc::CPU_SET(want as usize, &mut one) };
            &one
        };
        // SAFETY: sched_setaffinity reads the set's size from a live cpu_set_t.
        let ok = unsafe {
            libc::sched_setaffinity(self.tid, std::mem::size_of::<libc::cpu_set_t>(), set) == 0
        };
        if ok {
            self.pinned.store(want, Relaxed);
        }
    }
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

    /// The CPUs thread `tid` may run on.
    fn allowed(tid: libc::pid_t) -> Vec<usize> {
        // SAFETY: an all-zero cpu_set_t is valid; sched_getaffinity writes at most its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(tid, size, &mut set), 0);
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    }

    #[test]
    fn a_follower_keeps_to_one_cpu_of_its_set_while_alone_and_gets_its_set_back() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(Follower::this_thread().unwrap()).unwrap();
            end_rx.recv().unwrap();
        });
        let f = rx.recv().unwrap();
        let all = allowed(f.tid);
        f.follow(true);
        let one = allowed(f.tid);
        assert_eq!(one.len(), 1);
        assert!(all.contains(&one[0]));
        f.follow(true); // still alone: kept there
        f.follow(false);
        assert_eq!(allowed(f.tid), all);
        end_tx.send(()).unwrap();
        t.join().unwrap();
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
