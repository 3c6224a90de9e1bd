//! One segment: a memory-mapped, preallocated file of batches, and its
//! in-memory sparse indexes.
//!
//! This module holds all of the crate's `unsafe` code: the mapping itself
//! and the raw reads and writes through it (and the libc calls that lower a
//! background thread's priority, [`background_priority`] and
//! [`idle_priority`]).
//!
//! # Design constraints
//! - Bytes below the published `data_len` are never written again while the
//!   segment is shared (append-only); recovery truncates only before the
//!   segment is shared with any reader.
//! - Exactly one writer, the holder of the log's writer mutex, writes at or
//!   above `data_len`; readers never read there.
//! - `data_len` and `next_offset` are published with `Release` after the
//!   bytes and the index entry are in place, and read with `Acquire`.
//! - The mapping lives as long as the segment: nothing is unmapped while a
//!   reader may hold a slice of it. What is given back is this process's
//!   page-table entries ([`Segment::release`]), never the bytes: the page
//!   cache keeps them, and the next access maps the same bytes again.
//!
//! # Resident memory
//! Every page of a segment that a reader reads, or that the writer copies
//! a small batch into, counts towards the process's resident set (`VmRSS`,
//! what `top` shows) for as long as it stays mapped: a 64 MiB segment read
//! once stays 52–64 MiB resident, and a node holding a few looks like the
//! biggest process on the box. So every cursor gives back what it has
//! passed, in steps of [`Segment::release_step`]: the writer keeps one step
//! behind it (for readers tailing it), a reader nothing, and a sealed
//! segment goes whole when the writer rolls and when a reader moves on.
//! Releasing is `madvise(MADV_DONTNEED)` on the shared file mapping: the
//! kernel drops the page-table entries only; the pages stay in the page
//! cache, a dirty one stays dirty (the kernel moves the dirty bit from the
//! entry to the page) and is written back by the next `fdatasync` or
//! `msync` as before, whether it was written through the mapping or with
//! `pwritev`. A later access faults the same bytes back in from the page
//! cache (or the file) — the same thing the kernel does when it reclaims a
//! clean page under memory pressure.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::format::{
    self, decode_index_file, encode_index_file, FileKind, FileName, SegmentMeta,
    OFFSET_INDEX_MAGIC, SEGMENT_HEADER_LEN, TIME_INDEX_MAGIC,
};

/// The largest step in which a cursor gives back the pages it has passed
/// ([`Segment::release_step`]): 1 MiB, so that a node's log costs a few MiB
/// of resident memory per cursor while one `madvise` call covers 256 pages
/// (tens of microseconds per MiB of log, a fraction of a percent of the
/// time it takes to write or read that MiB).
pub(crate) const MAX_RELEASE_STEP: u64 = 1 << 20;

/// The size of a memory page.
pub(crate) fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a system constant and touches no memory.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 {
            n as u64
        } else {
            4096
        }
    })
}

/// Where the next index entries go: bytes since the last entries and the
/// last arrival time. Owned by the writer for the active segment, so an
/// append takes the index lock only when it adds an entry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexCursor {
    /// Bytes appended since the last offset entry.
    since_offset_entry: u64,
    /// Bytes appended since the last time entry.
    since_time_entry: u64,
    /// Arrival time of the last batch, indexed or not.
    last_arrival: Option<i64>,
    has_offsets: bool,
    has_times: bool,
}

impl IndexCursor {
    /// Accounts for a batch of `len` bytes arriving at `arrival`; returns
    /// whether it gets an offset entry and a time entry.
    pub(crate) fn advance(&mut self, arrival: i64, len: u64, interval: u32) -> (bool, bool) {
        let interval = u64::from(interval);
        let offset_entry = !self.has_offsets || self.since_offset_entry >= interval;
        if offset_entry {
            self.since_offset_entry = 0;
            self.has_offsets = true;
        }
        // A time entry may only sit where the arrival time rises: then every
        // earlier offset arrived strictly before it.
        let rises = self.last_arrival.is_none_or(|t| arrival > t);
        let time_entry = rises && (!self.has_times || self.since_time_entry >= interval);
        if time_entry {
            self.since_time_entry = 0;
            self.has_times = true;
        }
        self.since_offset_entry += len;
        self.since_time_entry += len;
        self.last_arrival = Some(arrival);
        (offset_entry, time_entry)
    }
}

/// Sparse indexes of one segment, held in memory and written to the
/// `.index` / `.timeindex` files when the segment is sealed or closed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SparseIndex {
    /// `(offset - base, byte position)`, both increasing.
    pub offsets: Vec<(u32, u32)>,
    /// `(arrival µs, offset - base)`: the offset is the first one whose
    /// arrival time is at or after the time. Both increasing.
    pub times: Vec<(i64, u32)>,
    /// Where the next entries go.
    pub cursor: IndexCursor,
}

impl SparseIndex {
    /// Records that a batch of `len` bytes with first offset `rel` and
    /// arrival `arrival` starts at `pos`, adding entries every `interval`
    /// bytes.
    pub(crate) fn on_batch(&mut self, rel: u32, pos: u32, arrival: i64, len: u64, interval: u32) {
        let (o, t) = self.cursor.advance(arrival, len, interval);
        self.push(o, t, rel, pos, arrival);
    }

    fn push(&mut self, offset_entry: bool, time_entry: bool, rel: u32, pos: u32, arrival: i64) {
        if offset_entry {
            self.offsets.push((rel, pos));
        }
        if time_entry {
            self.times.push((arrival, rel));
        }
    }

    /// The indexed `(rel, pos)` at or before `rel`.
    pub(crate) fn floor_offset(&self, rel: u32) -> Option<(u32, u32)> {
        let i = self.offsets.partition_point(|&(r, _)| r <= rel);
        i.checked_sub(1).map(|i| self.offsets[i])
    }

    /// The relative offset to start scanning from for the first record with
    /// arrival time >= `t`.
    pub(crate) fn floor_time(&self, t: i64) -> u32 {
        let i = self.times.partition_point(|&(at, _)| at <= t);
        i.checked_sub(1).map_or(0, |i| self.times[i].1)
    }

    fn encode_offsets(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.offsets.len() * 8);
        for (r, p) in &self.offsets {
            b.extend_from_slice(&r.to_le_bytes());
            b.extend_from_slice(&p.to_le_bytes());
        }
        b
    }

    fn encode_times(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.times.len() * 12);
        for (t, r) in &self.times {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&r.to_le_bytes());
        }
        b
    }
}

/// A segment file and its mapping.
pub(crate) struct Segment {
    /// Offset of the first record in this segment.
    pub base_offset: u64,
    path: PathBuf,
    /// Kept open to fsync.
    file: File,
    /// The mapping; `map.len()` is the file length when mapped.
    map: MmapRaw,
    writable: bool,
    /// Bytes in use and visible to readers, header included.
    data_len: AtomicU64,
    /// One past the last record visible to readers.
    next_offset: AtomicU64,
    /// Arrival time of the first record, `i64::MIN` if empty.
    first_arrival: AtomicI64,
    /// Arrival time of the last visible record, `i64::MIN` if empty.
    last_arrival: AtomicI64,
    /// Set when a newer segment has taken over appends.
    sealed: AtomicBool,
    pub index: RwLock<SparseIndex>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base_offset", &self.base_offset)
            .field("data_len", &self.data_len())
            .field("next_offset", &self.next_offset())
            .finish()
    }
}

/// The calling thread's id (`gettid`), for [`background_priority_of`].
pub fn thread_id() -> i32 {
    // SAFETY: gettid takes no arguments and touches no memory.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Lowers the calling thread's CPU priority to nice 10 (in the normal
/// scheduling class), for background work that must not delay the threads
/// on the write and transfer paths when the cores are busy: flushes of
/// sealed segments, and a memtable flush while it holds locks or syncs. On
/// Linux a nice value belongs to one thread. Failure is harmless and
/// ignored (the thread keeps its priority).
pub fn background_priority() {
    background_priority_of(thread_id());
}

/// [`background_priority`] for thread `tid` of this process (a thread in
/// [`idle_priority`] that must catch up). The caller makes sure the thread
/// still runs.
pub fn background_priority_of(tid: i32) {
    // SAFETY: sched_setscheduler and setpriority take plain integers and
    // read only the parameter struct passed by reference.
    unsafe {
        let p = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(tid, libc::SCHED_OTHER, &p);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// Puts the calling thread in the idle scheduling class (`SCHED_IDLE`): it
/// runs when nothing else wants the CPU, and any other thread that wakes
/// takes the CPU from it at once. For long computations that hold no lock
/// others wait on (a memtable flush encoding its chunk file): at nice 10
/// such a thread still kept a woken request thread waiting for its time
/// slice, 3 to 5 ms. Undo with [`background_priority`] before taking
/// shared locks, so a starved thread never holds one.
pub fn idle_priority() {
    // SAFETY: sched_setscheduler acts on the calling thread (0) and reads
    // only the parameter struct passed by reference.
    unsafe {
        let p = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &p);
    }
}

fn preallocate(file: &File, path: &Path, len: u64) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is valid for the call; posix_fallocate has no
    // memory-safety preconditions.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate: a sparse file still works.
        libc::EOPNOTSUPP | libc::EINVAL => {
            file.set_len(len).map_err(|e| Error::io(path, "set_len", e))
        }
        err => Err(Error::io(
            path,
            "fallocate",
            std::io::Error::from_raw_os_error(err),
        )),
    }
}

impl Segment {
    /// Creates a new, empty, preallocated segment file. The file is not
    /// durable (nor its directory entry) until synced.
    ///
    /// # Errors
    /// I/O errors, a full disk among them (the preallocation fails); the
    /// file is then removed again, so that a later attempt starts afresh.
    pub(crate) fn create(dir: &Path, base_offset: u64, capacity: u64) -> Result<Segment> {
        let path = FileName::build(dir, base_offset, FileKind::Log);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "create segment", e))?;
        crate::powerloss::created(&path, &file);
        let made = (|| {
            preallocate(&file, &path, capacity)?;
            let seg = Segment::map(path.clone(), file, base_offset, true)?;
            // Through the file, not the mapping: a first touch of the
            // mapping makes the kernel zero-fill megabytes of the
            // preallocated extent at once (3 ms), on the append that rolled.
            seg.write_parts_at(0, &[&format::segment_header()])?;
            seg.data_len
                .store(SEGMENT_HEADER_LEN as u64, Ordering::Release);
            Ok(seg)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        made
    }

    /// Maps an existing segment file. Its bookkeeping is empty until
    /// [`Segment::restore`] is called.
    pub(crate) fn open(path: &Path, base_offset: u64, writable: bool) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| Error::io(path, "open segment", e))?;
        Segment::map(path.to_path_buf(), file, base_offset, writable)
    }

    fn map(path: PathBuf, file: File, base_offset: u64, writable: bool) -> Result<Segment> {
        let len = file
            .metadata()
            .map_err(|e| Error::io(&path, "stat", e))?
            .len();
        let mut opts = MmapOptions::new();
        opts.len(len as usize);
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| Error::io(&path, "mmap", e))?;
        Ok(Segment {
            base_offset,
            path,
            file,
            map,
            writable,
            data_len: AtomicU64::new(0),
            next_offset: AtomicU64::new(base_offset),
            first_arrival: AtomicI64::new(i64::MIN),
            last_arrival: AtomicI64::new(i64::MIN),
            sealed: AtomicBool::new(false),
            index: RwLock::new(SparseIndex::default()),
        })
    }

    /// Path of the `.log` file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the mapping (the file's length when mapped).
    pub(crate) fn capacity(&self) -> u64 {
        self.map.len() as u64
    }

    /// All mapped bytes, including any not yet published.
    ///
    /// Only for recovery, which runs before the segment is shared.
    pub(crate) fn raw(&self) -> &[u8] {
        // SAFETY: the mapping is valid for `len` bytes for the life of
        // `self`. Recovery calls this before any other thread can see the
        // segment, and no one writes through the map while the slice lives
        // (the single writer is the caller itself, not yet appending).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// Bytes a cursor passes before it gives their pages back
    /// ([`Segment::release`]): an eighth of the segment, at least a page
    /// and at most [`MAX_RELEASE_STEP`].
    pub(crate) fn release_step(&self) -> u64 {
        let page = page_size();
        (self.capacity() / 8 / page * page).clamp(page, MAX_RELEASE_STEP.max(page))
    }

    /// Gives back this process's resident pages of `[from, to)` of the
    /// mapping: `madvise(MADV_DONTNEED)` (see the module's "Resident
    /// memory"). Only whole pages below the published data length, where
    /// nothing is written again, unless the segment is sealed (then up to
    /// the end of the mapping; `to` at or past the capacity means there).
    /// `from` is rounded down to a page: a page that a reader still reads
    /// is simply mapped again. Advice only: a failure is logged and
    /// ignored.
    pub(crate) fn release(&self, from: u64, to: u64) {
        let page = page_size();
        let limit = if self.is_sealed() {
            self.capacity().next_multiple_of(page)
        } else {
            self.data_len() / page * page
        };
        let from = from / page * page;
        let to = if to >= self.capacity() {
            limit
        } else {
            (to / page * page).min(limit)
        };
        if from >= to {
            return;
        }
        // SAFETY: `[from, to)` lies inside the mapping (`to` is at most its
        // length rounded up to a page, which the mapping covers), and
        // `from` is page-aligned as the mapping's start is. MADV_DONTNEED
        // on a shared file mapping changes no byte any slice of it can see:
        // it drops page-table entries, the page cache keeps the pages (a
        // dirty one stays dirty and is written back), and the next access
        // maps the same page again. Below the published data length (or
        // in a sealed segment) no one writes, so no write can race it; a
        // reader's slice reads the same bytes before and after. The
        // mapping itself stays until the segment is dropped.
        let rc = unsafe {
            libc::madvise(
                self.map.as_ptr().add(from as usize) as *mut libc::c_void,
                (to - from) as usize,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            tracing::debug!(
                segment = self.base_offset,
                from,
                to,
                cause = %std::io::Error::last_os_error(),
                "madvise(MADV_DONTNEED) failed; the pages stay resident"
            );
        }
    }

    /// The published bytes `[from, to)`.
    ///
    /// # Panics
    /// If `to` is past the published data length.
    pub(crate) fn bytes(&self, from: u64, to: u64) -> &[u8] {
        let len = self.data_len.load(Ordering::Acquire);
        assert!(
            from <= to && to <= len,
            "read [{from}, {to}) past data length {len}"
        );
        // SAFETY: `[from, to)` lies below the published data length, which
        // (see the module's design constraints) is never written again while
        // the segment is shared; the mapping outlives `&self`.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(from as usize), (to - from) as usize)
        }
    }

    /// Writes `parts` back to back into the file at `pos` with `pwritev`,
    /// through the page cache the mapping shares. Large batches go this
    /// way: a copy into the mapping faults every fresh page in, and the
    /// kernel zero-fills each preallocated page before the copy overwrites
    /// it; a write into the page cache skips both.
    ///
    /// Only the log's single writer calls this, at or above the published
    /// data length.
    ///
    /// # Panics
    /// If the segment is read-only, or the range is outside the file or
    /// below the published data length.
    pub(crate) fn write_parts_at(&self, pos: u64, parts: &[&[u8]]) -> Result<()> {
        use std::os::fd::AsRawFd;
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        assert!(self.writable, "write to a read-only segment");
        assert!(
            pos >= self.data_len.load(Ordering::Acquire) && pos + total <= self.capacity(),
            "write of {total} bytes at {pos} outside the writable range"
        );
        let mut iov: Vec<libc::iovec> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let (mut first, mut at) = (0usize, pos);
        while first < iov.len() {
            // At most IOV_MAX parts per call.
            let n = (iov.len() - first).min(1024);
            // SAFETY: every iovec points into a slice of `parts`, borrowed
            // for this call; pwritev only reads them.
            let rc = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    iov[first..].as_ptr(),
                    n as libc::c_int,
                    at as libc::off_t,
                )
            };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io(&self.path, "pwritev", e));
            }
            if rc == 0 {
                return Err(Error::io(
                    &self.path,
                    "pwritev",
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "wrote nothing"),
                ));
            }
            // Skip what was written; a partial write resumes mid-part.
            let mut done = rc as usize;
            at += done as u64;
            while done > 0 {
                let v = &mut iov[first];
                if done >= v.iov_len {
                    done -= v.iov_len;
                    first += 1;
                } else {
                    // SAFETY: `done` < the part's length: still inside it.
                    v.iov_base = unsafe { (v.iov_base as *mut u8).add(done) } as *mut libc::c_void;
                    v.iov_len -= done;
                    done = 0;
                }
            }
        }
        Ok(())
    }

    /// Lends `len` bytes of the mapping at `pos` to `f` for writing.
    ///
    /// # Panics
    /// If the segment is read-only or the range is outside the mapping or
    /// below the published data length.
    pub(crate) fn with_slice_mut<R>(
        &self,
        pos: u64,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        assert!(self.writable, "write to a read-only segment");
        assert!(
            pos + len as u64 <= self.capacity(),
            "write past the segment end"
        );
        assert!(
            pos >= self.data_len.load(Ordering::Acquire),
            "write below the published data"
        );
        // SAFETY: the range is inside the mapping (checked above) and at or
        // above the published data length, which no reader touches; the
        // log's writer mutex makes the caller the only writer, so no other
        // reference to these bytes exists while `f` runs.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(pos as usize), len) };
        f(dst)
    }

    /// Zeroes the bytes `[from, to)` and makes it durable: recovery's
    /// truncation of a damaged tail, before the segment is shared.
    #[track_caller]
    pub(crate) fn zero_range(&self, from: u64, to: u64) -> Result<()> {
        let to = to.min(self.capacity());
        if from >= to {
            return Ok(());
        }
        // Temporarily lower the published length so the write check passes.
        self.data_len.store(from, Ordering::Release);
        self.with_slice_mut(from, (to - from) as usize, |b| b.fill(0));
        self.flush(from, to)
    }

    /// Forces `[from, to)` of the mapping to disk.
    #[track_caller]
    pub(crate) fn flush(&self, from: u64, to: u64) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        self.map
            .flush_range(from as usize, (to - from) as usize)
            .map_err(|e| Error::io(&self.path, "msync", e))?;
        crate::powerloss::range_synced(&self.file, &self.path, from, to, "segment", "msync");
        Ok(())
    }

    pub(crate) fn data_len(&self) -> u64 {
        self.data_len.load(Ordering::Acquire)
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub(crate) fn first_arrival(&self) -> i64 {
        self.first_arrival.load(Ordering::Acquire)
    }

    pub(crate) fn last_arrival(&self) -> i64 {
        self.last_arrival.load(Ordering::Acquire)
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.next_offset() == self.base_offset
    }

    /// Publishes a batch the writer has just written at the current data
    /// length: indexes it, then makes it visible.
    pub(crate) fn publish_batch(
        &self,
        header: &format::BatchHeader,
        interval: u32,
        cursor: &mut IndexCursor,
    ) {
        let pos = self.data_len.load(Ordering::Relaxed);
        let rel = (header.base_offset - self.base_offset) as u32;
        let (o, t) = cursor.advance(header.arrival_us, u64::from(header.length), interval);
        if o || t {
            let mut ix = self.index.write().expect("index lock poisoned");
            ix.push(o, t, rel, pos as u32, header.arrival_us);
            ix.cursor = *cursor;
        }
        if self.first_arrival.load(Ordering::Relaxed) == i64::MIN {
            self.first_arrival
                .store(header.arrival_us, Ordering::Release);
        }
        self.last_arrival
            .store(header.arrival_us, Ordering::Release);
        self.next_offset
            .store(header.next_offset(), Ordering::Release);
        self.data_len
            .store(pos + u64::from(header.length), Ordering::Release);
    }

    /// The index cursor, for the writer taking over this segment.
    pub(crate) fn cursor(&self) -> IndexCursor {
        self.index.read().expect("index lock poisoned").cursor
    }

    /// Sets the bookkeeping of a recovered segment, before it is shared.
    pub(crate) fn restore(&self, meta: &SegmentMeta, index: SparseIndex) {
        *self.index.write().expect("index lock poisoned") = index;
        self.first_arrival
            .store(meta.first_arrival_us, Ordering::Release);
        self.last_arrival
            .store(meta.last_arrival_us, Ordering::Release);
        self.next_offset.store(meta.next_offset, Ordering::Release);
        self.data_len.store(meta.data_len, Ordering::Release);
    }

    pub(crate) fn meta(&self) -> SegmentMeta {
        SegmentMeta {
            base_offset: self.base_offset,
            next_offset: self.next_offset(),
            data_len: self.data_len(),
            first_arrival_us: self.first_arrival(),
            last_arrival_us: self.last_arrival(),
        }
    }

    /// Marks the segment sealed: no more appends, readers move on to the next.
    pub(crate) fn mark_sealed(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// Makes the segment durable (when `flush`) and writes its index
    /// files. Used at roll and at clean close of the active segment.
    ///
    /// The file keeps its preallocated length: shrinking it would make a
    /// read-only reader that mapped the full length (an inspection tool
    /// beside the writer) fault on pages past the new end. With `flush` false
    /// (the `never` policy) call [`Segment::sync_data`] before treating the
    /// data as durable.
    #[track_caller]
    pub(crate) fn persist(&self, flush: bool) -> Result<()> {
        if flush {
            self.sync_data()?;
        }
        self.write_index_files()
    }

    /// Forces the segment's data and size to disk: one `fdatasync`, which
    /// also writes the pages dirtied through the shared mapping (Linux
    /// keeps one page cache for both). Called only while no one appends to
    /// the segment (sealed, or under the writer lock).
    #[track_caller]
    pub(crate) fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, "fdatasync", e))?;
        crate::powerloss::file_synced(&self.file, &self.path, "segment", "fdatasync");
        Ok(())
    }

    /// Writes `.index` and `.timeindex` atomically.
    #[track_caller]
    pub(crate) fn write_index_files(&self) -> Result<()> {
        let meta = self.meta();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let index = self.index.read().expect("index lock poisoned").clone();
        let offsets = encode_index_file(
            OFFSET_INDEX_MAGIC,
            &meta,
            index.offsets.len(),
            &index.encode_offsets(),
        );
        let times = encode_index_file(
            TIME_INDEX_MAGIC,
            &meta,
            index.times.len(),
            &index.encode_times(),
        );
        crate::fsutil::write_atomic(
            &FileName::build(dir, self.base_offset, FileKind::OffsetIndex),
            &offsets,
            "offset index",
        )?;
        crate::fsutil::write_atomic(
            &FileName::build(dir, self.base_offset, FileKind::TimeIndex),
            &times,
            "time index",
        )
    }

    /// Loads this segment's index files when both are present, intact and
    /// consistent with the segment; `Err(reason)` otherwise.
    pub(crate) fn load_index_files(
        &self,
    ) -> std::result::Result<(SegmentMeta, SparseIndex), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let read = |kind| {
            let p = FileName::build(dir, self.base_offset, kind);
            std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
        };
        let ob = read(FileKind::OffsetIndex)?;
        let tb = read(FileKind::TimeIndex)?;
        let (meta, oe) = decode_index_file(OFFSET_INDEX_MAGIC, 8, &ob)?;
        let (tmeta, te) = decode_index_file(TIME_INDEX_MAGIC, 12, &tb)?;
        if meta != tmeta {
            return Err("offset and time index disagree about the segment".into());
        }
        if meta.base_offset != self.base_offset {
            return Err(format!("index is for base offset {}", meta.base_offset));
        }
        if meta.data_len < SEGMENT_HEADER_LEN as u64 || meta.data_len > self.capacity() {
            return Err(format!(
                "index says {} bytes of data, the segment file has {}",
                meta.data_len,
                self.capacity()
            ));
        }
        let mut index = SparseIndex {
            offsets: oe
                .chunks_exact(8)
                .map(|c| (format::le_u32(c, 0), format::le_u32(c, 4)))
                .collect(),
            times: te
                .chunks_exact(12)
                .map(|c| (format::le_i64(c, 0), format::le_u32(c, 8)))
                .collect(),
            ..SparseIndex::default()
        };
        let span = meta.next_offset - meta.base_offset;
        let ok_offsets = index
            .offsets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && index
                .offsets
                .iter()
                .all(|&(r, p)| u64::from(r) < span.max(1) && u64::from(p) < meta.data_len);
        let ok_times = index
            .times
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && index.times.iter().all(|&(_, r)| u64::from(r) < span.max(1));
        if !ok_offsets
            || !ok_times
            || (span > 0 && index.offsets.first() != Some(&(0, SEGMENT_HEADER_LEN as u32)))
        {
            return Err("index entries out of order or out of range".into());
        }
        // Spot-check the last entry against the segment itself.
        if let Some(&(rel, pos)) = index.offsets.last() {
            match format::parse_batch_header(&self.raw()[pos as usize..meta.data_len as usize]) {
                Ok(h) if h.base_offset == self.base_offset + u64::from(rel) => {}
                _ => {
                    return Err(format!(
                        "index entry for offset {} does not point at its batch",
                        self.base_offset + u64::from(rel)
                    ))
                }
            }
        }
        // And that the data ends where the index says: index files left
        // from when the segment held less (written at a clean close of the
        // then active segment) must not hide what was appended after.
        let rest = &self.raw()[meta.data_len as usize..];
        if !matches!(
            format::parse_batch_header(rest),
            Err(format::BatchError::End)
        ) {
            return Err(format!(
                "a batch follows byte {}, where the index says the data ends",
                meta.data_len
            ));
        }
        index.cursor = IndexCursor {
            since_offset_entry: u64::MAX / 2,
            since_time_entry: u64::MAX / 2,
            last_arrival: (span > 0).then_some(meta.last_arrival_us),
            has_offsets: !index.offsets.is_empty(),
            has_times: !index.times.is_empty(),
        };
        Ok((meta, index))
    }

    /// Deletes the segment's files (durable once the directory is synced).
    pub(crate) fn remove_files(dir: &Path, base_offset: u64) -> Result<()> {
        for kind in [FileKind::OffsetIndex, FileKind::TimeIndex, FileKind::Log] {
            crate::fsutil::remove(&FileName::build(dir, base_offset, kind))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_index_lookups() {
        let mut ix = SparseIndex::default();
        // 10 batches of 1000 bytes, 2 records each, interval 2500 bytes;
        // arrival time rises every other batch.
        for i in 0..10u32 {
            ix.on_batch(i * 2, 16 + i * 1000, i64::from(i / 2), 1000, 2500);
        }
        assert_eq!(ix.offsets, vec![(0, 16), (6, 3016), (12, 6016), (18, 9016)]);
        assert_eq!(ix.floor_offset(0), Some((0, 16)));
        assert_eq!(ix.floor_offset(7), Some((6, 3016)));
        assert_eq!(ix.floor_offset(100), Some((18, 9016)));
        // Time entries only where the time rises.
        assert!(ix.times.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(ix.times[0], (0, 0));
        assert_eq!(ix.floor_time(-5), 0);
        for &(t, rel) in &ix.times {
            assert_eq!(ix.floor_time(t), rel);
        }
    }
}
