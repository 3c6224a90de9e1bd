//! Tailing read throughput (a reader following a 256 MiB log from its
//! start, CRC checked) and seek-by-time latency.

use std::time::Duration;

use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use wal::{Config, FsyncPolicy, Log};

pub fn bench(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("bench-read")
        .tempdir_in(".")
        .unwrap();
    let log = Log::open(
        dir.path(),
        Config {
            fsync: FsyncPolicy::Never,
            ..Config::default()
        },
    )
    .unwrap();
    let payload = vec![0x3cu8; 1024];
    let batch: Vec<(u8, &[u8])> = (0..64).map(|_| (1, &payload[..])).collect();
    let total: u64 = 256 << 20;
    for i in 0..total / (64 * 1024) {
        log.append_batch(&batch).unwrap();
        if i % 4096 == 0 {
            // Spread arrival times so the time index has work to do.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let end = log.end_offset();

    let mut g = c.benchmark_group("read");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(total));
    g.bench_function(BenchmarkId::new("tail_from_start", "1KiB×64"), |b| {
        b.iter(|| {
            let mut r = log.reader(0).unwrap();
            let mut n = 0u64;
            while let Some(batch) = r.try_next().unwrap() {
                n += batch.len() as u64;
            }
            assert_eq!(n, end);
        })
    });
    g.finish();

    let segs = log.segments();
    let (t0, t1) = (
        segs[0].first_arrival_us.unwrap(),
        segs.last().unwrap().last_arrival_us.unwrap(),
    );
    let mut g = c.benchmark_group("seek");
    g.measurement_time(Duration::from_secs(3));
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    g.bench_function(
        BenchmarkId::new("by_time", format!("{}segments", segs.len())),
        |b| {
            b.iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = t0 + (x % (t1 - t0 + 1) as u64) as i64;
                black_box(log.offset_for_time(t).unwrap())
            })
        },
    );
    g.bench_function(
        BenchmarkId::new("by_offset", format!("{}segments", segs.len())),
        |b| {
            b.iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut r = log.reader(x % end).unwrap();
                black_box(r.try_next().unwrap())
            })
        },
    );
    g.finish();
}
