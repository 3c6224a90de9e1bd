"""Interop checks of an edgepipe node with the official IoTDB Python client.

Run by the Rust end-to-end tests (tests/tests/interop.rs):

    python interop.py write PORT     # writes everything, prints the digest
    python interop.py verify PORT D  # queries, checks the digest is D
    python interop.py more PORT      # writes more rows, prints the new digest
    python interop.py errors PORT    # wrong password, bad SQL, type mismatch

Exits non-zero with a message on any mismatch.
"""
import hashlib
import json
import math
import sys
import time

import numpy as np
from iotdb.Session import Session
from iotdb.utils.IoTDBConstants import TSDataType
from iotdb.utils.NumpyTablet import NumpyTablet
from iotdb.utils.Tablet import Tablet

SEED = [
    "SET STORAGE GROUP TO root.vehicle",
    "CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d0.s1 WITH DATATYPE=TEXT, ENCODING=PLAIN",
    "CREATE TIMESERIES root.vehicle.d1.s2 WITH DATATYPE=FLOAT, ENCODING=RLE",
    "CREATE TIMESERIES root.vehicle.d1.s3 WITH DATATYPE=BOOLEAN, ENCODING=PLAIN",
    "insert into root.vehicle.d0(timestamp,s0) values(now(),10)",
    "insert into root.vehicle.d0(timestamp,s0,s1) values(now(),12,'12')",
    "insert into root.vehicle.d0(timestamp,s1) values(now(),'14')",
    "insert into root.vehicle.d1(timestamp,s2) values(now(),16.0)",
    "insert into root.vehicle.d1(timestamp,s2,s3) values(now(),18.0,true)",
    "insert into root.vehicle.d1(timestamp,s3) values(now(),false)",
    "flush",
]

ALL = [TSDataType.BOOLEAN, TSDataType.INT32, TSDataType.INT64,
       TSDataType.FLOAT, TSDataType.DOUBLE, TSDataType.TEXT]
NAMES = ["b", "i", "l", "f", "d", "t"]


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def session(port, user="root", password="root"):
    s = Session("127.0.0.1", port, user, password, fetch_size=5000)
    s.open(False)
    return s


def query(s, sql):
    """Rows of a query as plain Python values, plus names and types."""
    with s.execute_query_statement(sql) as ds:
        names = ds.get_column_names()
        types = [TSDataType(t).name if not isinstance(t, TSDataType) else t.name
                 for t in ds.get_column_types()]
        rows = []
        while ds.has_next():
            r = ds.next()
            vals = []
            for f in r.get_fields():
                v = f.get_object_value(f.get_data_type()) if f.get_data_type() is not None else None
                if isinstance(v, bytes):
                    v = v.decode()
                if isinstance(v, float):
                    v = round(v, 4)
                vals.append(v)
            rows.append([r.get_timestamp()] + vals)
    return names, types, rows


def digest(s):
    """A digest of everything the node holds under root.vehicle and root.t."""
    out = {}
    for sql in ["select ** from root.vehicle", "select ** from root.t", "select ** from root.page"]:
        names, types, rows = query(s, sql)
        out[sql] = {"names": names, "types": types, "rows": len(rows),
                    "hash": hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()}
    return hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:16], out


def write(port):
    s = session(port)
    for sql in SEED:
        s.execute_non_query_statement(sql)
        # now() has millisecond precision and an acknowledgement takes less
        # than that: keep the six rows apart, as a person typing them does.
        time.sleep(0.003)
    names, types, rows = query(s, "select ** from root.vehicle")
    want_names = ["Time", "root.vehicle.d0.s0", "root.vehicle.d0.s1",
                  "root.vehicle.d1.s2", "root.vehicle.d1.s3"]
    if names != want_names:
        fail(f"column names {names} != {want_names}")
    if types[1:] != ["INT32", "TEXT", "FLOAT", "BOOLEAN"]:
        fail(f"column types {types}")
    got = [r[1:] for r in rows]
    want = [[10, None, None, None], [12, "12", None, None], [None, "14", None, None],
            [None, None, 16.0, None], [None, None, 18.0, True], [None, None, None, False]]
    if got != want:
        fail(f"seed rows {got} != {want}")
    if any(b[0] >= a[0] for a, b in zip(rows[1:], rows)):
        fail("seed rows are not in time order")

    # A tablet of all six types with nulls (Tablet, auto-created series).
    values = [
        [True, 1, 10, 1.5, 2.25, "a"],
        [None, 2, None, 2.5, None, "b"],
        [False, None, 30, None, 4.75, None],
    ]
    s.insert_tablet(Tablet("root.t.d1", NAMES, ALL, values, [1, 2, 3]))
    # The same as an aligned NumpyTablet with bitmaps.
    from iotdb.utils.BitMap import BitMap
    arrays = [np.array([True, False, True]), np.array([1, 2, 3], np.int32),
              np.array([10, 20, 30], np.int64), np.array([1.5, 2.5, 3.5], np.float32),
              np.array([2.25, 3.25, 4.25], np.float64), np.array(["x", "y", "z"], object)]
    bitmaps = []
    for col in range(6):
        bm = BitMap(3)
        if col % 2 == 1:
            bm.mark(1)
        bitmaps.append(bm)
    s.insert_aligned_tablet(NumpyTablet("root.t.d2", NAMES, ALL, arrays,
                                        np.array([1, 2, 3], np.int64), bitmaps))
    # Records: one, several, several of one device.
    s.insert_record("root.t.d3", 5, ["i", "t"], [TSDataType.INT32, TSDataType.TEXT], [7, "hey"])
    s.insert_records(["root.t.d3", "root.t.d4"], [6, 6], [["i"], ["d"]],
                     [[TSDataType.INT32], [TSDataType.DOUBLE]], [[8], [0.5]])
    s.insert_records_of_one_device("root.t.d3", [7, 8], [["i"], ["i", "t"]],
                                   [[TSDataType.INT32], [TSDataType.INT32, TSDataType.TEXT]],
                                   [[9], [10, "end"]])
    names, types, rows = query(s, "select " + ", ".join(NAMES) + " from root.t.d1")
    if names != ["Time"] + [f"root.t.d1.{n}" for n in NAMES]:
        fail(f"tablet names {names}")
    if types[1:] != ["BOOLEAN", "INT32", "INT64", "FLOAT", "DOUBLE", "TEXT"]:
        fail(f"tablet types {types}")
    if [r[1:] for r in rows] != values:
        fail(f"tablet rows {[r[1:] for r in rows]} != {values}")
    names, _, rows = query(s, "select " + ", ".join(NAMES) + " from root.t.d2")
    # Odd columns have row 1 null.
    r1 = rows[1]
    if r1[2] is not None or r1[4] is not None or r1[6] is not None or r1[1] is not False or r1[3] != 20:
        fail(f"aligned numpy tablet row {r1}")
    names, _, rows = query(s, "select i, t from root.t.d3")
    if [r[1:] for r in rows] != [[7, "hey"], [8, None], [9, None], [10, "end"]]:
        fail(f"records {rows}")

    # A result larger than one fetch (5000 rows): three pages.
    for base in range(0, 12000, 1000):
        ts = list(range(base, base + 1000))
        s.insert_tablet(Tablet("root.page.d", ["v"], [TSDataType.INT64], [[t * 3] for t in ts], ts))
    names, _, rows = query(s, "select v from root.page.d")
    if len(rows) != 12000 or rows[-1] != [11999, 11999 * 3] or rows[0] != [0, 0]:
        fail(f"paged result: {len(rows)} rows, last {rows[-1] if rows else None}")
    df = s.execute_query_statement("select ** from root.page.d where time >= 11990").todf()
    if len(df) != 10 or list(df.columns) != ["Time", "root.page.d.v"]:
        fail(f"dataframe {df}")
    d, _ = digest(s)
    s.close()
    print(d)


def verify(port, want):
    s = session(port)
    d, detail = digest(s)
    s.close()
    if d != want:
        fail(f"digest {d} != {want}: {json.dumps(detail, indent=1)}")
    print(d)


def more(port):
    s = session(port)
    for i in range(20):
        s.insert_record("root.t.d5", 100 + i, ["v"], [TSDataType.DOUBLE], [i / 4])
    s.execute_non_query_statement("insert into root.vehicle.d0(timestamp,s0) values(99,99)")
    s.execute_non_query_statement("delete from root.vehicle.d0.s1 where time <= 99")
    d, _ = digest(s)
    names, _, rows = query(s, "select ** from root.t.d5")
    if len(rows) != 20:
        fail(f"d5 rows {len(rows)}")
    s.close()
    print(d)


def errors(port):
    from iotdb.utils.exception import IoTDBConnectionException, StatementExecutionException
    try:
        session(port, password="wrong")
        fail("a wrong password was accepted")
    except (IoTDBConnectionException, StatementExecutionException, Exception) as e:
        if "801" not in str(e):
            fail(f"wrong password: {e}")
    s = session(port)
    for sql, code in [("selec ** from root", "700"),
                      ("insert into root.vehicle.d0(timestamp,s0) values(1,'text')", "614"),
                      ("CREATE TIMESERIES root.vehicle.d0.s0 WITH DATATYPE=INT32", "503"),
                      ("drop database root.nothing", "500")]:
        try:
            s.execute_non_query_statement(sql)
            fail(f"{sql} succeeded")
        except StatementExecutionException as e:
            if not str(e).startswith(code):
                fail(f"{sql}: {e}")
    # TCompactProtocol (open(True)) works the same.
    c = Session("127.0.0.1", port, "root", "root")
    c.open(True)
    _, _, crows = query(c, "select ** from root.vehicle")
    if len(crows) < 6:
        fail(f"compact protocol query returned {len(crows)} rows")
    c.close()
    # The session still works after errors.
    names, _, rows = query(s, "count timeseries root.vehicle.**")
    if rows[0][1] != 4:
        fail(f"count timeseries {rows}")
    s.close()
    print("ok")


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "write":
        write(port)
    elif mode == "verify":
        verify(port, sys.argv[3])
    elif mode == "more":
        more(port)
    elif mode == "errors":
        errors(port)
    else:
        fail(f"unknown mode {mode}")
