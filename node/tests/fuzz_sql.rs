//! Fuzz targets (property tests) for what a client's statement reaches:
//! the SQL parser, the path matcher, and the executor running patterns
//! against a store with deep series. Each input must finish within a time
//! ceiling and stay under a memory ceiling (peak bytes allocated on the
//! running thread, counted by this binary's global allocator); the matcher
//! must agree with a reference and allocate nothing.
//!
//! CI runs a bounded number of cases (seconds). A longer run, with the
//! figures printed at the end of each target:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test --release -p node --test fuzz_sql -- --nocapture --test-threads 1
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use node::exec::{Context, Executor, Outcome};
use node::sql::{self, Node, Path};
use node::store::{Store, StoreConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Counts the bytes allocated by each thread: current and peak.
struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = CURRENT.try_with(|c| {
        let v = c.get() + delta;
        c.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v);
            }
        });
    });
}

// SAFETY: every call forwards to the system allocator with the caller's
// layout and pointer unchanged; the counting touches only thread-locals
// with const initialisers (no allocation, no re-entry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (above).
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result, the peak bytes it had allocated at once
/// on this thread, and how long it took.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    let peak = PEAK.with(Cell::get) - base;
    (r, peak.max(0) as usize, took)
}

/// Runs a target's cases on their own thread, failing the test if they
/// have not all finished within a minute plus 20 ms per case (a hang, such
/// as an exponential matcher, fails instead of stalling CI).
fn target(default_cases: u32, run: impl FnOnce(TestRunner) + Send + 'static) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let limit = Duration::from_secs(60) + Duration::from_millis(20) * cases;
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        run(runner);
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => worker.join().unwrap(),
        // The worker panicked (a failed case): show its message.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{cases} cases did not finish within {limit:?}: an input hangs")
        }
    }
}

/// The worst case seen by a target, printed at its end.
#[derive(Default)]
struct Worst {
    cases: u64,
    time: Duration,
    bytes: usize,
    started: Option<Instant>,
}

impl Worst {
    fn note(&mut self, took: Duration, bytes: usize) {
        self.started.get_or_insert_with(Instant::now);
        self.cases += 1;
        self.time = self.time.max(took);
        self.bytes = self.bytes.max(bytes);
    }

    fn report(&self, target: &str) {
        eprintln!(
            "{target}: {} cases in {:.1} s; slowest input {:.3} ms; largest peak allocation {} KiB",
            self.cases,
            self.started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            self.time.as_secs_f64() * 1e3,
            self.bytes / 1024
        );
    }
}

/// Pieces statements are made of, so the generated text reaches deep into
/// the parser (raw bytes alone rarely get past the first token).
fn sql_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("select".to_string()),
        Just("insert into".to_string()),
        Just("delete from".to_string()),
        Just("from".to_string()),
        Just("where time >".to_string()),
        Just("limit 18446744073709551615".to_string()),
        Just("offset 99999999999999999999".to_string()),
        Just("grant user alice privileges ALL on".to_string()),
        Just("list privileges user root".to_string()),
        Just("create timeseries".to_string()),
        Just("with datatype=INT32".to_string()),
        Just("root".to_string()),
        Just(".".to_string()),
        Just("*".to_string()),
        Just("**".to_string()),
        Just("`".to_string()),
        Just("``".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just("'".to_string()),
        Just("time".to_string()),
        Just("values".to_string()),
        Just("now()".to_string()),
        Just("2022-03-30T00:00:00+08:00".to_string()),
        "[a-z_0-9]{1,8}",
        "`[^`]{0,8}`",
        "-?[0-9]{1,25}(\\.[0-9]{0,5})?(e[+-]?[0-9]{1,4})?",
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn sqlish() -> impl Strategy<Value = String> {
    prop::collection::vec(sql_piece(), 0..120).prop_map(|v| v.join(" "))
}

/// Text that is mostly a path pattern: `root` then many nodes, many of
/// them wildcards.
fn deep_pattern_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => Just("**".to_string()),
            2 => Just("*".to_string()),
            2 => Just("a".to_string()),
            1 => Just("s".to_string()),
            1 => Just("`a.b`".to_string()),
        ],
        1..70,
    )
    .prop_map(|v| format!("root.{}", v.join(".")))
}

#[test]
fn the_parser_takes_any_text_within_bounds() {
    target(1000, |mut r| {
        let worst = std::cell::RefCell::new(Worst::default());
        let input = prop_oneof![
            1 => ".{0,600}",
            3 => sqlish(),
            2 => deep_pattern_text().prop_map(|p| format!("select * from {p}")),
            1 => deep_pattern_text().prop_map(|p| format!("delete from {p} where time < 10")),
        ];
        r.run(&input, |text| {
            let (_, bytes, took) = measure(|| {
                let _ = sql::parse(&text);
                let _ = sql::parse_path(&text);
            });
            worst.borrow_mut().note(took, bytes);
            // Linear in the text: a few hundred bytes per character at most.
            let ceiling = 64 * 1024 + 256 * text.len();
            prop_assert!(bytes <= ceiling, "{bytes} bytes for {} chars", text.len());
            prop_assert!(took < Duration::from_secs(2), "{took:?}");
            Ok(())
        })
        .unwrap();
        worst.borrow().report("parser");
    });
}

fn node_strategy() -> impl Strategy<Value = Node> {
    prop_oneof![
        1 => Just(Node::Name("a".into())),
        1 => Just(Node::Name("b".into())),
        1 => Just(Node::One),
        3 => Just(Node::Many),
    ]
}

/// Reference matcher: the definition, memoised (pattern position × path
/// position), a different algorithm from the automaton under test.
fn reference(p: &[Node], n: &[&str]) -> bool {
    fn go(p: &[Node], n: &[&str], i: usize, j: usize, memo: &mut Vec<Option<bool>>) -> bool {
        let key = i * (n.len() + 1) + j;
        if let Some(v) = memo[key] {
            return v;
        }
        let v = match p.get(i) {
            None => j == n.len(),
            Some(Node::Name(x)) => n.get(j) == Some(&x.as_str()) && go(p, n, i + 1, j + 1, memo),
            Some(Node::One) => j < n.len() && go(p, n, i + 1, j + 1, memo),
            Some(Node::Many) => {
                j < n.len() && (go(p, n, i + 1, j + 1, memo) || go(p, n, i, j + 1, memo))
            }
        };
        memo[key] = Some(v);
        v
    }
    let mut memo = vec![None; (p.len() + 1) * (n.len() + 1)];
    go(p, n, 0, 0, &mut memo)
}

#[test]
fn the_matcher_is_right_linear_and_allocation_free() {
    target(2000, |mut r| {
        let worst = std::cell::RefCell::new(Worst::default());
        let input = (
            prop::collection::vec(node_strategy(), 0..=sql::MAX_PATH_NODES),
            prop::collection::vec(prop_oneof![Just("a"), Just("b")], 0..300),
        );
        r.run(&input, |(pattern, path)| {
            let pat = Path(pattern.clone());
            let (got, bytes, took) = measure(|| pat.matches(&path));
            worst.borrow_mut().note(took, bytes);
            prop_assert_eq!(bytes, 0, "the matcher allocated");
            prop_assert!(took < Duration::from_secs(1), "{took:?}");
            prop_assert_eq!(got, reference(&pattern, &path));
            Ok(())
        })
        .unwrap();
        worst.borrow().report("matcher");
    });
}

/// A store with deep series (down to 40 levels), where an exponential
/// matcher would never finish.
fn deep_store(dir: &std::path::Path) -> Executor {
    let log = Arc::new(
        wal::Log::open(
            dir.join("wal"),
            wal::Config {
                fsync: wal::FsyncPolicy::Never,
                ..wal::Config::default()
            },
        )
        .unwrap(),
    );
    let e = Executor::new(Arc::new(
        Store::open(&dir.join("store"), log, StoreConfig::default()).unwrap(),
    ));
    let ctx = Context::default();
    for depth in [1usize, 5, 12, 25, 40] {
        for leaf in ["a", "b"] {
            let device = format!("root.sg{}", ".a".repeat(depth));
            e.execute(
                &ctx,
                &format!("insert into {device}(time, {leaf}, s) values (1, 1, 2), (2, 3, 4)"),
            )
            .unwrap();
        }
    }
    e
}

#[test]
fn statements_against_deep_series_stay_within_bounds() {
    target(300, |mut r| {
        let dir = tempfile::tempdir().unwrap();
        let e = deep_store(dir.path());
        let ctx = Context::default();
        let worst = std::cell::RefCell::new(Worst::default());
        let input = (
            deep_pattern_text(),
            prop_oneof![
                Just("select * from {}"),
                Just("select ** from {} limit 18446744073709551615 offset 1"),
                Just("count timeseries {}"),
                Just("show devices {}"),
                Just("show timeseries {}"),
                Just("delete from {} where time < 0"),
            ],
        );
        r.run(&input, |(pattern, form)| {
            let sql = form.replace("{}", &pattern);
            let (out, bytes, took) = measure(|| e.execute(&ctx, &sql));
            worst.borrow_mut().note(took, bytes);
            if let Ok(Outcome::Rows(rows)) = &out {
                prop_assert!(rows.rows() <= 40);
            }
            prop_assert!(took < Duration::from_secs(5), "{sql}: {took:?}");
            prop_assert!(bytes < 16 << 20, "{sql}: {bytes} bytes");
            Ok(())
        })
        .unwrap();
        worst.borrow().report("executor");
    });
}
