//! Profiling aid: 20 M single 100-byte appends without fsync.
fn main() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let log = wal::Log::open(
        dir.path(),
        wal::Config {
            fsync: wal::FsyncPolicy::Never,
            ..Default::default()
        },
    )
    .unwrap();
    let p = [7u8; 100];
    let t = std::time::Instant::now();
    for _ in 0..20_000_000u64 {
        log.append(1, &p).unwrap();
    }
    println!("{:.2} M rec/s", 20.0 / t.elapsed().as_secs_f64());
}
