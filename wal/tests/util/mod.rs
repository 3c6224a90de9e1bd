//! Helpers shared by the wal integration tests.
#![allow(dead_code)]

use std::path::Path;

use wal::{Config, FsyncPolicy, Log};

/// A small-segment config that syncs only when asked and never checkpoints
/// on its own, so tests decide what is durable.
pub fn small(segment_bytes: u64) -> Config {
    Config {
        segment_bytes,
        fsync: FsyncPolicy::Never,
        index_interval_bytes: 256,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..Config::default()
    }
}

/// A deterministic payload for an offset: length and bytes derive from it.
pub fn payload(offset: u64) -> Vec<u8> {
    let len = (offset * 7919 % 300) as usize;
    (0..len).map(|i| (offset as usize * 31 + i) as u8).collect()
}

/// A record as `(offset, kind, payload)`.
pub type Owned = (u64, u8, Vec<u8>);

/// Every record of the log, plus the error that stopped the read, if any.
pub fn read_all(log: &Log) -> (Vec<Owned>, Option<wal::Error>) {
    let mut out = Vec::new();
    let mut r = log.reader(log.log_start()).expect("reader");
    loop {
        match r.try_next() {
            Ok(Some(b)) => out.extend(b.iter().map(|x| (x.offset, x.kind, x.payload.to_vec()))),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Appends records `from..to` (one per batch) with [`payload`].
pub fn fill(log: &Log, from: u64, to: u64) {
    for o in from..to {
        assert_eq!(log.append((o % 5) as u8, &payload(o)).expect("append"), o);
    }
}

/// Checks that the log holds exactly records `0..n` as [`fill`] wrote them.
pub fn assert_prefix(log: &Log, n: u64) {
    let (recs, err) = read_all(log);
    assert!(err.is_none(), "read error: {err:?}");
    assert_eq!(recs.len() as u64, n, "record count");
    for (o, k, p) in recs {
        assert_eq!(k, (o % 5) as u8, "kind of {o}");
        assert_eq!(p, payload(o), "payload of {o}");
    }
    assert_eq!(log.end_offset(), n);
}

/// The path of the segment file with the highest base offset.
pub fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v.pop().expect("a segment")
}

/// A small tmpfs mounted for one test (a real full disk), unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.dir.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2 reads the NUL-terminated path only.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Whether tests that need root must run (CI sets this): then a failed
/// mount fails the test instead of skipping it.
pub fn root_tests_required() -> bool {
    std::env::var("EDGEPIPE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "1" || v == "true")
}

/// Mounts a tmpfs of `bytes` on a fresh directory. Without the right to
/// mount (not root) it says so and returns `None`, unless
/// [`root_tests_required`], where it panics.
pub fn tmpfs(bytes: u64) -> Option<Tmpfs> {
    let dir = tempfile::tempdir().unwrap();
    let target = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
    let opts = std::ffi::CString::new(format!("size={bytes}")).unwrap();
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; mount reads them only.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let msg = format!(
            "could not mount a {bytes}-byte tmpfs on {} ({e}): this test needs root",
            dir.path().display()
        );
        if root_tests_required() {
            panic!("{msg}, and EDGEPIPE_REQUIRE_ROOT_TESTS=1 (or CI=1) says it must run");
        }
        eprintln!("NOT RUN: {msg}");
        return None;
    }
    Some(Tmpfs { dir })
}
