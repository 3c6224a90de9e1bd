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
use node::query::scan::BATCH_POINTS;
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
        // Aggregations, GROUP BY, LAST, ORDER BY, ALIGN BY (issue 10).
        Just("count(".to_string()),
        Just("sum(*)".to_string()),
        Just("max_time(**)".to_string()),
        Just("first_value(".to_string()),
        Just("select last".to_string()),
        Just("group by".to_string()),
        Just("([0, 10), 1ms)".to_string()),
        Just("((-9223372036854775808, 9223372036854775807], 1ns, 1mo)".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("order by timeseries desc, time".to_string()),
        Just("order by device".to_string()),
        Just("align by device".to_string()),
        Just("now() - 1d".to_string()),
        Just("show pipe".to_string()),
        "[0-9]{1,20}(y|mo|w|d|h|m|s|ms|us|ns){1,3}",
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

/// SELECTs of every form edgepipe answers: aggregations, GROUP BY
/// windows of any range, length and step, LAST, ALIGN BY DEVICE, ORDER
/// BY, LIMIT and OFFSET at their extremes.
fn select_form() -> impl Strategy<Value = String> {
    let raw = prop_oneof![Just("*"), Just("**"), Just("a"), Just("s")];
    let agg = prop_oneof![
        Just("count(*)"),
        Just("count(**)"),
        Just("sum(a)"),
        Just("avg(s)"),
        Just("min_value(*)"),
        Just("max_value(b)"),
        Just("first_value(**)"),
        Just("last_value(*)"),
        Just("min_time(s)"),
        Just("max_time(*)"),
    ];
    // Window bounds: tiny ranges or the whole axis (whose windows are
    // refused unless LIMIT pages them), so a result stays small.
    let time = prop_oneof![
        Just("-9223372036854775808".to_string()),
        Just("9223372036854775807".to_string()),
        (-5i64..12).prop_map(|t| t.to_string()),
    ];
    let filter_time = prop_oneof![time.clone(), Just("now() - 1d".to_string())];
    let duration = prop_oneof![
        Just("1ns"),
        Just("1ms"),
        Just("3ms"),
        Just("1d"),
        Just("1mo"),
        Just("9223372036854775807ms"),
    ];
    let group_by = prop::option::of((
        time.clone(),
        time,
        any::<bool>(),
        duration.clone(),
        prop::option::of(duration),
    ))
    .prop_map(|g| match g {
        None => String::new(),
        Some((a, b, closed, interval, step)) => {
            let (l, r) = if closed { ("[", ")") } else { ("(", "]") };
            let step = step.map_or(String::new(), |s| format!(", {s}"));
            format!(" group by ({l}{a}, {b}{r}, {interval}{step})")
        }
    });
    let filter = prop::option::of((filter_time.clone(), filter_time)).prop_map(|f| {
        f.map_or(String::new(), |(a, b)| {
            format!(" where time >= {a} and time < {b}")
        })
    });
    let page = prop_oneof![
        Just(""),
        Just(" limit 5"),
        Just(" limit 0"),
        Just(" limit 9223372036854775807 offset 9223372036854775807"),
        Just(" offset 3 limit 4"),
        Just(" limit 18446744073709551615 offset 18446744073709551615"),
        Just(" limit 18446744073709551615"),
    ];
    // Mostly valid forms (raw, aggregation, last), some mixed (refused).
    let columns = prop_oneof![
        3 => prop::collection::vec(raw.clone(), 1..3).prop_map(|c| (false, false, c)),
        4 => prop::collection::vec(agg.clone(), 1..4).prop_map(|c| (false, true, c)),
        2 => prop::collection::vec(raw.clone(), 1..3).prop_map(|c| (true, false, c)),
        1 => (any::<bool>(), prop::collection::vec(prop_oneof![raw, agg], 1..4))
            .prop_map(|(l, c)| (l, true, c)),
    ];
    (
        columns,
        filter,
        group_by,
        0..20usize,
        page,
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |((last, grouped, cols), filter, group, order, page, device)| {
                let group = if grouped { group } else { String::new() };
                // An ORDER BY that fits the form, now and then one that
                // does not.
                let fits: &[&str] = match (last, device) {
                    (true, _) => &["", " order by timeseries desc", " order by timeseries"],
                    (false, true) => &[
                        "",
                        " order by device desc, time desc",
                        " order by time, device desc",
                        " order by time desc",
                    ],
                    (false, false) => &["", " order by time desc", " order by time asc"],
                };
                let order = match fits.get(order % 6) {
                    Some(o) => *o,
                    None if order == 19 => " order by device",
                    None if order == 18 => " order by timeseries",
                    None => "",
                };
                format!(
                    "select {}{} from {{}}{filter}{group}{order}{page}{}",
                    if last { "last " } else { "" },
                    cols.join(", "),
                    if device && !last {
                        " align by device"
                    } else {
                        ""
                    }
                )
            },
        )
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
                Just("select ** from {} limit 9223372036854775807 offset 1"),
                Just("count timeseries {}"),
                Just("show devices {}"),
                Just("show timeseries {}"),
                Just("delete from {} where time < 0"),
                Just("select count(*) from {}"),
                Just("select last * from {}"),
                Just("select * from {} align by device"),
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

/// Every SELECT form against the deep store: no panic, bounded time and
/// memory, and a result (or error) in IoTDB's terms.
#[test]
fn selects_of_every_form_stay_within_bounds() {
    target(400, |mut r| {
        let dir = tempfile::tempdir().unwrap();
        let e = deep_store(dir.path());
        let ctx = Context::default();
        let worst = std::cell::RefCell::new(Worst::default());
        let input = (
            prop_oneof![
                Just("root.**".to_string()),
                Just("root.sg.a".to_string()),
                Just("root.sg.*.*".to_string()),
                deep_pattern_text(),
            ],
            select_form(),
        );
        r.run(&input, |(pattern, form)| {
            let sql = form.replace("{}", &pattern);
            let (out, bytes, took) = measure(|| e.execute(&ctx, &sql));
            worst.borrow_mut().note(took, bytes);
            if std::env::var_os("FUZZ_SHOW").is_some() {
                eprintln!(
                    "{sql} => {}",
                    match &out {
                        Ok(Outcome::Rows(r)) => format!("{} rows × {}", r.rows(), r.columns.len()),
                        Ok(_) => "done".into(),
                        Err(e) => e.to_string(),
                    }
                );
            }
            if let Ok(Outcome::Rows(rows)) = &out {
                prop_assert!(rows.rows() <= 1000, "{sql}: {} rows", rows.rows());
                prop_assert_eq!(rows.columns.len(), rows.types.len());
                prop_assert_eq!(rows.columns.len(), rows.data.len());
                for d in &rows.data {
                    prop_assert_eq!(d.len(), rows.rows());
                }
            }
            prop_assert!(took < Duration::from_secs(5), "{sql}: {took:?}");
            prop_assert!(bytes < 16 << 20, "{sql}: {bytes} bytes");
            Ok(())
        })
        .unwrap();
        worst.borrow().report("select");
    });
}

/// Aggregations over a long series hold about one part of it at a time:
/// 4 Mi points (64 MiB of times and values) aggregate within 1.5 batches
/// of memory, with and without GROUP BY, while reading them at once would
/// take all 64 MiB.
#[test]
fn aggregations_hold_one_part_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let e = deep_store(dir.path());
    let n = 4usize << 20;
    // Tablets of an odd size, so chunks fall anywhere against windows.
    let per = 300_007;
    for at in (0..n).step_by(per) {
        let times: Vec<i64> = (at as i64..(at + per).min(n) as i64).collect();
        let t = protocol::tablet::Tablet {
            device: "root.long.d".into(),
            measurements: vec!["v".into()],
            columns: vec![protocol::tablet::Column::Int64(times.clone())],
            nulls: vec![None],
            times,
            aligned: false,
        };
        e.store().write(node::event::Event::Tablet(t)).unwrap();
    }
    let ctx = Context::default();
    // In chunk files (a frozen memtable's read copies an index as well).
    e.execute(&ctx, "flush").unwrap();
    // One chunk of the default flush: 1 Mi points of 8-byte times and
    // values (the figure, not the constant, so the test fails if the scan
    // stops cutting the range).
    assert_eq!(BATCH_POINTS, 1 << 20);
    let batch_bytes = (1 << 20) * 16;
    for sql in [
        "select count(*), sum(v), max_value(v), last_value(v) from root.long.d",
        "select count(v), avg(v) from root.long.d group by ([0, 4194304), 1000000ms)",
        "select sum(v), first_value(v) from root.long.d group by ((0, 4194304], 2000000ms, 300000ms)",
        "select last v from root.long.d",
    ] {
        let (out, bytes, _) = measure(|| e.execute(&ctx, sql));
        assert!(matches!(out, Ok(Outcome::Rows(_))), "{sql}");
        assert!(
            bytes < batch_bytes * 3 / 2,
            "{sql}: {} MiB at once",
            bytes >> 20
        );
    }
    let (all, bytes, _) = measure(|| e.store().read("root.long.d.v", 0, i64::MAX));
    assert_eq!(all.unwrap().unwrap().times.len(), n);
    assert!(bytes >= n * 16, "reading it all: {bytes} bytes");
}
