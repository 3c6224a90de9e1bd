//! The log gives back the pages of its mappings that the writer and the
//! readers have passed (`madvise(MADV_DONTNEED)`), and nothing is lost by
//! it: everything reads back the same, through a reader that comes after
//! the release, after a reopen, and from the disk itself once the page
//! cache is dropped (the released dirty pages were written back).

use std::os::fd::AsRawFd;
use std::path::Path;

use wal::{Config, FsyncPolicy, Log};

/// Resident KiB of this process's mappings of `dir`'s segment files, per
/// file name (from `/proc/self/smaps`).
fn resident_kib(dir: &Path) -> Vec<(String, u64)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let dir = dir.to_str().unwrap();
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            current = line
                .split_whitespace()
                .nth(5)
                .filter(|p| p.starts_with(dir) && p.ends_with(".log"))
                .map(|p| p.rsplit('/').next().unwrap().to_string());
        } else if let (Some(name), Some(kib)) = (&current, line.strip_prefix("Rss:")) {
            let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().unwrap();
            out.push((name.clone(), kib));
        }
    }
    out.sort();
    out
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i as usize * 131 + j * 7 + (j >> 9)) as u8)
        .collect()
}

/// Record `i`'s size: mostly small batches (copied into the mapping),
/// every 16th 80 KiB (written with pwritev).
fn size_of(i: u64) -> usize {
    if i % 16 == 15 {
        80 << 10
    } else {
        1000 + (i % 7) as usize * 300
    }
}

fn config(fsync: FsyncPolicy) -> Config {
    Config {
        // 1 MiB segments: a release step of 128 KiB.
        segment_bytes: 1 << 20,
        fsync,
        ..Config::default()
    }
}

fn check_all(log: &Log, n: u64) {
    let mut r = log.reader(0).unwrap();
    let mut i = 0;
    while let Some(b) = r.try_next().unwrap() {
        for rec in b.iter() {
            assert_eq!(rec.offset, i);
            assert_eq!(rec.kind, (i % 5) as u8);
            assert!(
                rec.payload == &payload(i, size_of(i))[..],
                "record {i} reads back different"
            );
            i += 1;
        }
    }
    assert_eq!(i, n, "every record read back");
}

/// Writer and a tailing reader through several segments: behind them only
/// a few steps stay resident, sealed segments none; then a reader that
/// starts after every release reads every byte as written.
#[test]
fn passed_pages_are_given_back_and_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
    let mut tail = log.reader(0).unwrap();
    let mut i = 0u64;
    let mut read = 0u64;
    // About 3.5 segments of data.
    while log.segments().len() < 4 || log.segments().last().unwrap().data_bytes < 900 << 10 {
        let p = payload(i, size_of(i));
        assert_eq!(log.append((i % 5) as u8, &p).unwrap(), i);
        i += 1;
        if i.is_multiple_of(3) {
            while let Some(b) = tail.try_next().unwrap() {
                for rec in b.iter() {
                    assert_eq!(rec.offset, read);
                    assert!(rec.payload == &payload(read, size_of(read))[..]);
                    read += 1;
                }
            }
        }
    }
    while let Some(b) = tail.try_next().unwrap() {
        read += b.len() as u64;
    }
    assert_eq!(read, i);
    let resident = resident_kib(dir.path());
    let segments = log.segments();
    assert_eq!(resident.len(), segments.len(), "{resident:?}");
    let active = format!("{:020}.log", segments.last().unwrap().base_offset);
    for (name, kib) in &resident {
        if *name == active {
            // The writer keeps up to two steps (256 KiB), the reader what
            // it has not passed a step of (128 KiB), and fault-around maps
            // up to 64 KiB around a fault: well under the 900 KiB written.
            assert!(*kib <= 512, "active segment {name}: {kib} KiB resident");
        } else {
            assert_eq!(*kib, 0, "sealed segment {name} still resident");
        }
    }
    // A reader after the releases reads the same bytes.
    check_all(&log, i);
    drop(tail);
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), config(FsyncPolicy::Never)).unwrap();
    check_all(&log, i);
    // Recovery and the read gave their pages back too.
    let sealed: u64 = resident_kib(dir.path())
        .iter()
        .filter(|(n, _)| *n != active)
        .map(|(_, k)| k)
        .sum();
    assert_eq!(sealed, 0, "{:?}", resident_kib(dir.path()));
}

/// Released pages that were dirty (written through the mapping or with
/// pwritev, not yet synced) are written back by the log's syncs: with the
/// page cache dropped after the close, the records come from the disk.
#[test]
fn released_dirty_pages_reach_the_disk() {
    for fsync in [FsyncPolicy::Never, FsyncPolicy::default()] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config(fsync)).unwrap();
        let mut i = 0u64;
        while log.segments().len() < 3 {
            log.append((i % 5) as u8, &payload(i, size_of(i))).unwrap();
            i += 1;
        }
        // Read it all (the reader gives back behind it) before anything is
        // made durable by a roll's flush under `never`.
        check_all(&log, i);
        log.close().unwrap();
        drop(log);
        // Drop the segment files' clean pages from the page cache: what is
        // read next comes from the disk (on a disk-backed file system; on
        // tmpfs this is a no-op and the check still holds).
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                let f = std::fs::File::open(&p).unwrap();
                // SAFETY: a valid descriptor; fadvise touches no memory.
                let rc =
                    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
                assert_eq!(rc, 0);
            }
        }
        let log = Log::open(dir.path(), config(fsync)).unwrap();
        check_all(&log, i);
    }
}
