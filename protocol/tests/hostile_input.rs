//! Arbitrary and mutated bytes into the TsFile reader and the InsertNode
//! decoders: never a panic, and never more memory than a small multiple of
//! the input (a counting allocator measures the peak of live bytes during
//! each call, on the calling thread).
//!
//! The run in CI is bounded (`PROPTEST_CASES`, default 256 per property);
//! a longer one: `PROPTEST_CASES=20000 cargo test -p protocol --release
//! --test hostile_input`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use protocol::insert_node::{
    decode_batch, decode_insert_node, decode_wal_entry, encode_batch, encode_insert_row_node,
    encode_insert_tablet_node, encode_wal_entry,
};
use protocol::tablet::{Column, Tablet};
use protocol::tsfile::{Limits, TsFile};

/// Counts live bytes per thread and keeps the peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(n: usize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + n;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn shrink(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grow(l.size());
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        shrink(l.size());
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        grow(new);
        shrink(l.size());
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The peak of extra live bytes while `f` runs.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

/// Small page limits, so that what one page may expand to is small too.
const LIMITS: Limits = Limits {
    max_page_bytes: 64 << 10,
    max_page_points: 4096,
};

/// The most the reader may hold beyond a multiple of the input: a few
/// pages at the limits (a decompressed page, the decoded rows of a page of
/// each open column, codec state).
const PAGE_BUDGET: usize = 2 << 20;

/// Opens, validates and streams `bytes`; returns the peak.
fn read_all(bytes: &[u8]) -> usize {
    let ((), peak) = peak_of(|| {
        let Ok(f) = TsFile::with_limits(bytes, LIMITS) else {
            return;
        };
        let _ = f.validate();
        for b in f.batches() {
            if b.is_err() {
                break;
            }
        }
        if let Ok(ds) = f.devices() {
            for d in ds {
                let _ = f.series(&d);
            }
        }
    });
    peak
}

fn samples() -> Vec<Vec<u8>> {
    [
        "v3_nonaligned_lz4.tsfile",
        "v3_aligned_snappy.tsfile",
        "v3_multipage_deg3_uncompressed.tsfile",
        "v4_tree_pypi_tsfile_2.5.0.tsfile",
        "v4_table_pypi_tsfile_2.5.0.tsfile",
    ]
    .iter()
    .map(|n| std::fs::read(format!("{}/tests/data/{n}", env!("CARGO_MANIFEST_DIR"))).unwrap())
    .collect()
}

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    /// A big-endian i32 or uvarint-looking value somewhere (counts, sizes).
    Big(usize, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Set(a, b)),
        (any::<usize>(), 0u8..8).prop_map(|(a, b)| Edit::Flip(a, 1 << b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<usize>(), 1usize..32).prop_map(|(a, n)| Edit::Remove(a, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u32>()).prop_map(|(a, v)| Edit::Big(a, v)),
    ]
}

fn apply(b: &mut Vec<u8>, e: &Edit) {
    if b.is_empty() {
        return;
    }
    let n = b.len();
    match e {
        Edit::Set(a, v) => b[a % n] = *v,
        Edit::Flip(a, m) => b[a % n] ^= m,
        Edit::Insert(a, v) => {
            let at = a % (n + 1);
            b.splice(at..at, v.iter().copied());
        }
        Edit::Remove(a, k) => {
            let at = a % n;
            b.drain(at..(at + k).min(n));
        }
        Edit::Truncate(a) => b.truncate(a % n),
        Edit::Big(a, v) => {
            let at = a % n;
            for (i, x) in v.to_be_bytes().iter().enumerate() {
                if at + i < n {
                    b[at + i] = *x;
                }
            }
        }
    }
}

fn tablet(rows: usize, aligned: bool) -> Tablet {
    Tablet {
        device: "root.sg.d".into(),
        measurements: ["a", "b", "c", "d"].map(String::from).to_vec(),
        columns: vec![
            Column::Int64((0..rows as i64).collect()),
            Column::Text((0..rows).map(|r| format!("t{r}").into_bytes()).collect()),
            Column::Boolean((0..rows).map(|r| r % 2 == 0).collect()),
            Column::Double((0..rows).map(|r| r as f64).collect()),
        ],
        nulls: vec![
            None,
            Some((0..rows).map(|r| r % 3 == 0).collect()),
            None,
            None,
        ],
        times: (0..rows as i64).collect(),
        aligned,
    }
}

fn insert_bodies() -> Vec<Vec<u8>> {
    let t = tablet(20, false);
    let a = tablet(9, true);
    vec![
        encode_insert_row_node(&t, 3, "x"),
        encode_insert_tablet_node(&t, "y"),
        encode_wal_entry(&a, Some(1), 2, -1),
        encode_wal_entry(&a, None, 2, 7),
        encode_batch(
            &[encode_wal_entry(&t, None, 1, 1)],
            &[encode_insert_row_node(&a, 0, "z")],
            std::slice::from_ref(&t),
        ),
    ]
}

fn decode_insert_all(b: &[u8]) -> usize {
    let ((), peak) = peak_of(|| {
        let _ = decode_insert_node(b);
        let _ = decode_wal_entry(b);
        let _ = decode_batch(b);
    });
    peak
}

proptest! {
    #[test]
    fn tsfile_mutated_samples_never_panic_and_stay_bounded(
        which in 0usize..5,
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let mut b = samples().swap_remove(which);
        for e in &edits {
            apply(&mut b, e);
        }
        let peak = read_all(&b);
        prop_assert!(peak <= 16 * b.len() + PAGE_BUDGET, "peak {peak} for {} bytes", b.len());
    }

    #[test]
    fn tsfile_arbitrary_bytes_never_panic_and_stay_bounded(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        v4 in any::<bool>(),
        framed in any::<bool>(),
    ) {
        // Framed: magic, version, body, a metadata size and the tail, so
        // that the reader gets past its first checks.
        let mut b = Vec::new();
        if framed {
            b.extend_from_slice(b"TsFile");
            b.push(if v4 { 4 } else { 3 });
        }
        b.extend_from_slice(&body);
        if framed {
            let size = (body.len() / 2) as i32;
            b.extend_from_slice(&size.to_be_bytes());
            b.extend_from_slice(b"TsFile");
        }
        let peak = read_all(&b);
        prop_assert!(peak <= 16 * b.len() + PAGE_BUDGET, "peak {peak} for {} bytes", b.len());
    }

    #[test]
    fn insert_node_mutated_bodies_never_panic_and_stay_bounded(
        which in 0usize..5,
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let mut b = insert_bodies().swap_remove(which);
        for e in &edits {
            apply(&mut b, e);
        }
        let peak = decode_insert_all(&b);
        prop_assert!(peak <= 16 * b.len() + 4096, "peak {peak} for {} bytes", b.len());
    }

    #[test]
    fn insert_node_arbitrary_bytes_never_panic_and_stay_bounded(
        b in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let peak = decode_insert_all(&b);
        prop_assert!(peak <= 16 * b.len() + 4096, "peak {peak} for {} bytes", b.len());
    }
}

#[test]
fn the_counter_sees_a_hostile_count_that_would_allocate() {
    // The measurement works: an allocation of 1 MiB shows as such.
    let ((), peak) = peak_of(|| drop(vec![0u8; 1 << 20]));
    assert!(peak >= 1 << 20);
    // A row count of 2^31 in a 69-byte body allocates nothing like it.
    let mut b = encode_insert_tablet_node(&tablet(2, false), "1");
    // i16 type, device, n, hasSchemas, 4 schemas of 12 bytes, 4 types.
    let at = 2 + 13 + 4 + 1 + 4 * 12 + 4;
    assert_eq!(b[at..at + 4], 2i32.to_be_bytes());
    b[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    let peak = decode_insert_all(&b);
    assert!(peak < 4096, "{peak}");
}

#[test]
fn a_huge_count_or_size_at_every_position_stays_bounded() {
    // Every position of every sample gets a huge uvarint (inserted: 5
    // bytes for 2^31 - 1) and, separately, a huge big-endian i32: any
    // length, count or size field the reader trusts shows as an
    // allocation here.
    for b in samples() {
        for at in 0..b.len() {
            let mut m = b.clone();
            m[at] = 0xff;
            m.splice(at + 1..at + 1, [0xff, 0xff, 0xff, 0x07]);
            let peak = read_all(&m);
            assert!(
                peak <= 16 * m.len() + PAGE_BUDGET,
                "uvarint at {at}: peak {peak}"
            );
            let mut m = b.clone();
            for (i, x) in 0x7fff_fff0u32.to_be_bytes().iter().enumerate() {
                if at + i < m.len() {
                    m[at + i] = *x;
                }
            }
            let peak = read_all(&m);
            assert!(
                peak <= 16 * m.len() + PAGE_BUDGET,
                "i32 at {at}: peak {peak}"
            );
        }
    }
    for b in insert_bodies() {
        for at in 0..b.len() {
            let mut m = b.clone();
            for (i, x) in 0x7fff_fff0u32.to_be_bytes().iter().enumerate() {
                if at + i < m.len() {
                    m[at + i] = *x;
                }
            }
            let peak = decode_insert_all(&m);
            assert!(peak <= 16 * m.len() + 4096, "i32 at {at}: peak {peak}");
        }
    }
}
