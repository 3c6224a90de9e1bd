//! Profiling aid: append latency outliers. Appends an 88 KB record (a
//! 10,000-point tablet) every 5 ms without fsync and prints every append
//! that took more than 0.5 ms, with how far into the log it was.
use std::time::{Duration, Instant};

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
    let p = vec![7u8; 88_000];
    let start = Instant::now();
    for i in 0..2000u64 {
        let due = start + Duration::from_millis(5 * i);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        let t = Instant::now();
        log.append(1, &p).unwrap();
        let took = t.elapsed();
        if took > Duration::from_micros(500) {
            println!("append {i} at {:.1} MB: {took:?}", i as f64 * 0.088);
        }
    }
}
