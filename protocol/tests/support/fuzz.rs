//! What the decoder property tests of protocol and receiver share, included
//! by each test binary with `#[path]`: a counting global allocator (the
//! peak of bytes a thread held allocated while a closure ran) and the
//! strategy that mutates a valid input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let v = live.get() + delta;
        live.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

// SAFETY: every call is forwarded to the system allocator with the same
// arguments; the counting touches only thread-local cells that allocate
// nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; the caller guarantees `ptr` came from us with
        // `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns the most bytes it held allocated at once (what it
/// returns included, as it is alive when `f` ends).
pub fn peak<R>(f: impl FnOnce() -> R) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let most = PEAK.with(Cell::get) - base;
    drop(r);
    most.max(0) as usize
}

/// The counter sees what a closure allocates (so a ceiling checked with
/// [`peak`] can fail).
#[test]
fn the_counter_sees_an_allocation() {
    let used = peak(|| vec![1u8; 1 << 20]);
    assert!(used >= 1 << 20, "{used}");
}

/// `base` with a few bytes overwritten, inserted or removed, and maybe cut
/// short: inputs that get past the first checks of a decoder.
pub fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..4u8), 1..6);
    (edits, any::<Option<prop::sample::Index>>()).prop_map(move |(edits, cut)| {
        let mut b = base.clone();
        for (at, byte, op) in edits {
            if b.is_empty() {
                b.push(byte);
                continue;
            }
            let i = at.index(b.len());
            match op {
                0 => b[i] = byte,
                1 => b.insert(i, byte),
                2 => {
                    b.remove(i);
                }
                // A length-looking field made huge or negative.
                _ => {
                    for (k, x) in [0x7f, byte, 0xff, 0xff].into_iter().enumerate() {
                        if let Some(slot) = b.get_mut(i + k) {
                            *slot = x;
                        }
                    }
                }
            }
        }
        if let Some(c) = cut {
            let n = c.index(b.len() + 1);
            b.truncate(n);
        }
        b
    })
}
