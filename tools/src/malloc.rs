//! How the server's heap gives memory back (glibc's allocator).
//!
//! A node's large buffers come and go: a received frame (up to 16 MiB),
//! the memtables' vectors, which a flush hands to the chunk-file writer and
//! frees. With glibc's defaults two things keep that memory resident long
//! after it is freed, so `top` shows two to three times what the node
//! holds (measured on the cloud node of the iot bench, 20 M points in
//! 1,000-row tablets: 148-192 MiB anonymous):
//!
//! - The mmap threshold is dynamic: once a large block is freed, glibc
//!   raises it to that block's size (up to 32 MiB), and from then on such
//!   blocks come from the heap, where a freed one stays resident. Setting
//!   it fixes it at [`MMAP_THRESHOLD`]: blocks from 256 KiB up are their own
//!   mappings, returned to the system when freed (a growing vector moves by
//!   `mremap`, without a copy).
//! - Every thread that allocates under contention gets its own arena (up to
//!   8 per core), and each keeps what a request's tablets took (16 MiB
//!   apiece). [`ARENA_MAX`] arena serves every thread; on a node's two
//!   cores the lock it takes costs nothing measurable.
//!
//! Either is left alone when the operator set it (`MALLOC_ARENA_MAX`,
//! `MALLOC_MMAP_THRESHOLD_`, or `GLIBC_TUNABLES` naming it).

/// Blocks of at least this many bytes are mapped on their own.
pub const MMAP_THRESHOLD: i32 = 256 << 10;
/// Arenas at most.
pub const ARENA_MAX: i32 = 1;

/// Sets the allocator's bounds ([`MMAP_THRESHOLD`], [`ARENA_MAX`]) unless
/// the environment sets them. Call before any thread starts. Returns what
/// was set, for the log.
pub fn bound_heap() -> Vec<&'static str> {
    let mut set = Vec::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let given = |var: &str, tunable: &str| {
            std::env::var_os(var).is_some() || tunables.contains(tunable)
        };
        if !given("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold") {
            // SAFETY: mallopt only changes allocator parameters; it is
            // called before the runtime starts any thread.
            if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } == 1 {
                set.push("mmap_threshold=256KiB");
            }
        }
        if !given("MALLOC_ARENA_MAX", "glibc.malloc.arena_max") {
            // SAFETY: as above.
            if unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) } == 1 {
                set.push("arena_max=1");
            }
        }
    }
    set
}
