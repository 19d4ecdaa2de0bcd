//! The process heap: what the allocator reports (for `/metrics`) and handing freed
//! memory back to the kernel.
//!
//! glibc's malloc keeps freed chunks for reuse and returns memory to the kernel only from
//! the top of each arena. A server whose live objects come and go (allocations, sessions,
//! their buffers) therefore sees its RSS creep up with fragmentation while the heap it
//! really holds stays flat (docs/benchmarks.md, "Soak"). `malloc_trim(0)` releases the
//! free pages inside the arenas too (`madvise(MADV_DONTNEED)`); run every `--heap-trim`
//! seconds from its own thread, it costs a walk over the free lists (median 83 µs over
//! the hour-long soak, at most 1.7 ms at ten times its churn), and a worker that allocates
//! meanwhile waits at most that long on an arena lock; the packet paths do not allocate.

use crate::service::{Metrics, Service};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;

/// The allocator's own account (glibc's mallinfo2): bytes the program holds, and bytes
/// freed but kept by malloc. Set beside the process RSS it tells a leak (in use grows)
/// from fragmentation (only the kept part grows).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn render() -> String {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value.
    let m = unsafe { libc::mallinfo2() };
    format!(
        "# HELP switchboard_process_heap_in_use_bytes Heap bytes allocated and not freed (malloc arenas and mmapped blocks).\n\
         # TYPE switchboard_process_heap_in_use_bytes gauge\n\
         switchboard_process_heap_in_use_bytes {}\n\
         # HELP switchboard_process_heap_free_bytes Heap bytes freed but kept by malloc for reuse.\n\
         # TYPE switchboard_process_heap_free_bytes gauge\n\
         switchboard_process_heap_free_bytes {}\n",
        m.uordblks + m.hblkhd,
        m.fordblks
    )
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn render() -> String {
    String::new()
}

/// The heap as a service: the trimming thread and the allocator's figures in `/metrics`.
pub struct HeapService;

impl HeapService {
    /// Start the thread that trims the heap every `every` (zero: never; no thread either
    /// where the allocator is not glibc's).
    pub fn start(every: Duration) -> std::io::Result<HeapService> {
        spawn_trimmer(every)?;
        Ok(HeapService)
    }
}

impl Service for HeapService {
    fn name(&self) -> &'static str {
        "heap"
    }

    fn metrics(&self) -> Option<Metrics> {
        Some(Arc::new(|out: &mut String| out.push_str(&render())))
    }
}

fn spawn_trimmer(every: Duration) -> std::io::Result<()> {
    if every.is_zero() || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("heap-trim".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let started = Instant::now();
            let released = trim();
            debug!(
                released,
                micros = started.elapsed().as_micros() as u64,
                "heap trimmed"
            );
        })?;
    Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim only walks and releases malloc's own free memory; any thread
    // may call it at any time (it takes each arena's lock).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
