"""The SQL people check sync with, through the official IoTDB Python client
against a real edgepipe server (run by tests/tests/aggregation.rs):

    python aggregation.py PORT   # prints "ok", or exits non-zero naming what differs

Two data sets:
- seed document 000's section 7 script (times 1..6 for its now()s), with
  the results IoTDB 1.2 gives for it;
- a long series written here with NumpyTablets, whose expected
  aggregations are computed here from the arrays written (sums added in
  time order, as IoTDB's raw-data path does).
Column names and types are checked as the client reports them.
"""
import sys

import numpy as np
from iotdb.Session import Session
from iotdb.utils.IoTDBConstants import TSDataType
from iotdb.utils.NumpyTablet import NumpyTablet

SEED = [
    "SET STORAGE GROUP TO root.vehicle",
    "CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d0.s1 WITH DATATYPE=TEXT, ENCODING=PLAIN",
    "CREATE TIMESERIES root.vehicle.d1.s2 WITH DATATYPE=FLOAT, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d1.s3 WITH DATATYPE=BOOLEAN, ENCODING=PLAIN",
    "insert into root.vehicle.d0(timestamp,s0) values(1,10)",
    "insert into root.vehicle.d0(timestamp,s0,s1) values(2,12,'12')",
    "insert into root.vehicle.d0(timestamp,s1) values(3,'14')",
    "insert into root.vehicle.d1(timestamp,s2) values(4,16.0)",
    "insert into root.vehicle.d1(timestamp,s2,s3) values(5,18.0,true)",
    "insert into root.vehicle.d1(timestamp,s3) values(6,false)",
    "flush",
]


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def query(s, sql):
    """Column names, type names and rows (with the time first when the
    result has a Time column) as the client gives them."""
    with s.execute_query_statement(sql) as ds:
        names = ds.get_column_names()
        types = [t.name if isinstance(t, TSDataType) else TSDataType(t).name
                 for t in ds.get_column_types()]
        timed = bool(names) and names[0] == "Time"
        rows = []
        while ds.has_next():
            r = ds.next()
            vals = []
            for f in r.get_fields():
                t = f.get_data_type()
                v = None if t is None else f.get_object_value(t)
                if isinstance(v, bytes):
                    v = v.decode()
                vals.append(v)
            rows.append(([r.get_timestamp()] if timed else []) + vals)
    return names, types, rows


def expect(s, sql, names, types, rows):
    got = query(s, sql)
    if got[0] != names:
        fail(f"{sql}: columns {got[0]} != {names}")
    if got[1] != types:
        fail(f"{sql}: types {got[1]} != {types}")
    if got[2] != rows:
        fail(f"{sql}: rows {got[2]} != {rows}")


def seed_checks(s):
    for sql in SEED:
        s.execute_non_query_statement(sql)
    expect(s, "select count(*) from root.**",
           [f"count(root.vehicle.{x})" for x in ["d0.s0", "d0.s1", "d1.s2", "d1.s3"]],
           ["INT64"] * 4, [[2, 2, 2, 2]])
    expect(s, "select sum(s0), avg(s0), min_value(s0), max_value(s0), first_value(s1), "
              "last_value(s1), min_time(s1), max_time(s1) from root.vehicle.d0",
           ["sum(root.vehicle.d0.s0)", "avg(root.vehicle.d0.s0)", "min_value(root.vehicle.d0.s0)",
            "max_value(root.vehicle.d0.s0)", "first_value(root.vehicle.d0.s1)",
            "last_value(root.vehicle.d0.s1)", "min_time(root.vehicle.d0.s1)",
            "max_time(root.vehicle.d0.s1)"],
           ["DOUBLE", "DOUBLE", "INT32", "INT32", "TEXT", "TEXT", "INT64", "INT64"],
           [[22.0, 11.0, 10, 12, "12", "14", 2, 3]])
    expect(s, "select count(*), last_value(s2) from root.vehicle.d1 group by ([1, 7), 2ms)",
           ["Time", "count(root.vehicle.d1.s2)", "count(root.vehicle.d1.s3)",
            "last_value(root.vehicle.d1.s2)"],
           ["INT64", "INT64", "INT64", "FLOAT"],
           [[1, 0, 0, None], [3, 1, 0, 16.0], [5, 1, 2, 18.0]])
    expect(s, "select last * from root.vehicle.*",
           ["Time", "Timeseries", "Value", "DataType"], ["INT64", "TEXT", "TEXT", "TEXT"],
           [[2, "root.vehicle.d0.s0", "12", "INT32"], [3, "root.vehicle.d0.s1", "14", "TEXT"],
            [5, "root.vehicle.d1.s2", "18.0", "FLOAT"], [6, "root.vehicle.d1.s3", "false", "BOOLEAN"]])
    expect(s, "select count(*) from root.vehicle.* align by device",
           ["Device", "count(s0)", "count(s1)", "count(s2)", "count(s3)"], ["TEXT"] + ["INT64"] * 4,
           [["root.vehicle.d0", 2, 2, None, None], ["root.vehicle.d1", None, None, 2, 2]])
    expect(s, "select s0, s2 from root.vehicle.* where time <= 4 align by device",
           ["Time", "Device", "s0", "s2"], ["INT64", "TEXT", "INT32", "FLOAT"],
           [[1, "root.vehicle.d0", 10, None], [2, "root.vehicle.d0", 12, None],
            [4, "root.vehicle.d1", None, 16.0]])
    try:
        query(s, "select sum(s1) from root.vehicle.d0")
        fail("sum of a TEXT series was accepted")
    except Exception as e:  # the client raises its StatementExecutionException
        if "701" not in str(e) or "only support numeric data types" not in str(e):
            fail(f"sum of TEXT: {e}")
    # SHOW PIPE without a name is SHOW PIPES.
    names, _, _ = query(s, "show pipe")
    if names[:3] != ["ID", "CreationTime", "State"]:
        fail(f"show pipe: {names}")


def long_checks(s, n):
    """`n` points of INT64 and DOUBLE at times 0, 2, 4, ... in tablets of
    100,000, then the aggregations checked against the arrays."""
    k = np.arange(n, dtype=np.int64)
    times = 2 * k
    ints = (k * 7919) % 100003 - 50000
    doubles = (k % 977) * 0.1 - 25.0
    for at in range(0, n, 100_000):
        end = min(at + 100_000, n)
        s.insert_tablet(NumpyTablet("root.big.d", ["i", "f"], [TSDataType.INT64, TSDataType.DOUBLE],
                                    [ints[at:end], doubles[at:end]], times[at:end]))

    def seq_sum(a):
        total = 0.0
        for v in a.tolist():
            total += v
        return total

    def expected(lo, hi):
        """count, sum, avg, min, max, first, last, min_time, max_time of
        i, then count and sum of f, over times in [lo, hi)."""
        a, b = np.searchsorted(times, lo), np.searchsorted(times, hi)
        if a == b:
            return [0, None, None, None, None, None, None, None, None, 0, None]
        i, f, t = ints[a:b], doubles[a:b], times[a:b]
        isum = seq_sum(i)
        return [b - a, isum, isum / (b - a), int(i.min()), int(i.max()), int(i[0]), int(i[-1]),
                int(t[0]), int(t[-1]), b - a, seq_sum(f)]

    aggs = ("count(i), sum(i), avg(i), min_value(i), max_value(i), first_value(i), last_value(i), "
            "min_time(i), max_time(i), count(f), sum(f)")
    names = [f"{a}(root.big.d.{x})" for a, x in [
        ("count", "i"), ("sum", "i"), ("avg", "i"), ("min_value", "i"), ("max_value", "i"),
        ("first_value", "i"), ("last_value", "i"), ("min_time", "i"), ("max_time", "i"),
        ("count", "f"), ("sum", "f")]]
    types = ["INT64", "DOUBLE", "DOUBLE", "INT64", "INT64", "INT64", "INT64", "INT64", "INT64",
             "INT64", "DOUBLE"]
    end = int(times[-1]) + 1
    expect(s, f"select {aggs} from root.big.d", names, types, [expected(0, end)])
    expect(s, f"select {aggs} from root.big.d where time >= 123457 and time < 1654321",
           names, types, [expected(123457, 1654321)])
    step = 150_000
    rows = [[w] + expected(w, min(w + step, end)) for w in range(0, end, step)]
    expect(s, f"select {aggs} from root.big.d group by ([0, {end}), {step}ms)",
           ["Time"] + names, ["INT64"] + types, rows)
    expect(s, "select count(*) from root.**",
           [f"count(root.big.d.{x})" for x in "fi"]
           + [f"count(root.vehicle.{x})" for x in ["d0.s0", "d0.s1", "d1.s2", "d1.s3"]],
           ["INT64"] * 6, [[n, n, 2, 2, 2, 2]])
    expect(s, "select last i, f from root.big.d",
           ["Time", "Timeseries", "Value", "DataType"], ["INT64", "TEXT", "TEXT", "TEXT"],
           [[int(times[-1]), "root.big.d.f", repr(float(doubles[-1])), "DOUBLE"],
            [int(times[-1]), "root.big.d.i", str(int(ints[-1])), "INT64"]])


def main():
    port = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_200_000
    s = Session("127.0.0.1", port, "root", "root", fetch_size=5000)
    s.open(False)
    seed_checks(s)
    long_checks(s, n)
    s.close()
    print("ok")


if __name__ == "__main__":
    main()
