//! Writes a sample change log to inspect with `edgepipe wal`:
//!
//! ```text
//! cargo run --release -p wal --example write_log -- DIR [RECORDS]
//! ```
//!
//! Appends RECORDS (default 100000) small text records in batches of 100,
//! registers a consumer `demo-pipe` that has read half of them, and closes
//! the log cleanly. Appending to an existing log continues it.

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: write_log DIR [RECORDS]")?;
    let n: u64 = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let log = wal::Log::open(&dir, wal::Config::default())?;
    let start = log.end_offset();
    let mut i = 0;
    while i < n {
        let payloads: Vec<String> = (i..(i + 100).min(n))
            .map(|k| format!("root.vehicle.d0.s0 t={} v={}", start + k, (start + k) % 97))
            .collect();
        let batch: Vec<(u8, &[u8])> = payloads.iter().map(|p| (1u8, p.as_bytes())).collect();
        log.append_batch(&batch)?;
        i += batch.len() as u64;
        if i % 20_000 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let mid = start + n / 2;
    log.register_consumer("demo-pipe", start)?;
    log.commit("demo-pipe", mid)?;
    log.close()?;
    println!(
        "{dir}: appended offsets [{start}, {}); consumer demo-pipe committed {mid}",
        start + n
    );
    Ok(())
}
