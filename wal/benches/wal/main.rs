//! Criterion benches of the change log: `cargo bench -p wal --bench wal`.
//! Headline figures (dd ratio, 1 GiB recovery) are in `benches/report.rs`.

use criterion::{criterion_group, criterion_main};

mod append;
mod read;

criterion_group!(benches, append::bench, read::bench);
criterion_main!(benches);
