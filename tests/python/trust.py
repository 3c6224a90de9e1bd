"""Names and privileges through the official IoTDB Python client (issue 7).

Run by the Rust end-to-end tests (tests/tests/users_and_names.rs):

    python trust.py names PORT             # illegal names refused (509), quoted ones stored
    python trust.py refused PORT USER PW   # a user without privileges is refused (803)
    python trust.py allowed PORT USER PW   # after GRANT ... ON root.sg.**: writes and reads there

Exits non-zero with a message on any mismatch.
"""
import sys

from iotdb.Session import Session
from iotdb.utils.IoTDBConstants import TSDataType
from iotdb.utils.Tablet import Tablet


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def session(port, user="root", password="root"):
    s = Session("127.0.0.1", port, user, password, fetch_size=5000)
    s.open(False)
    return s


def refused(what, code, action, *words):
    """Runs action; it must raise an error starting with code and naming words."""
    try:
        action()
    except Exception as e:  # the client raises StatementExecutionException
        text = str(e)
        if not text.startswith(code):
            fail(f"{what}: expected {code}, got {text}")
        for w in words:
            if w not in text:
                fail(f"{what}: {w!r} not in {text!r}")
        return
    fail(f"{what} was accepted")


def record(s, device, measurements, time=1):
    n = len(measurements)
    return lambda: s.insert_record(device, time, measurements, [TSDataType.DOUBLE] * n, [1.5] * n)


def columns(s, sql):
    with s.execute_query_statement(sql) as ds:
        names = ds.get_column_names()
        rows = 0
        while ds.has_next():
            ds.next()
            rows += 1
    return names, rows


def names(port):
    s = session(port)
    # Issue 7, finding 10, through insertRecord and insertTablet.
    refused("device with a space", "509", record(s, "root.a b", ["s"]), "root.a b", "`a b`")
    refused("device with NUL", "509", record(s, "root.a\x00b", ["s"]), "U+0000")
    refused("unbalanced backquote", "509", record(s, "root.sg.`a", ["s"]), "backquote")
    refused("measurement *", "509", record(s, "root.sg.d", ["*"]), "wildcard")
    refused("measurement **", "509", record(s, "root.sg.d", ["**"]), "wildcard")
    refused("measurement time", "509", record(s, "root.sg.d", ["time"]), "reserved", "`time`")
    refused("measurement with a space", "509", record(s, "root.sg.d", ["x y"]), "`x y`")
    refused("measurement a.b", "509", record(s, "root.p2.f", ["a.b"]), "more than one node", "`a.b`")
    t = Tablet("root.sg.d", ["ok", "x y"], [TSDataType.DOUBLE] * 2, [[1.0, 2.0]], [1])
    refused("tablet measurement with a space", "509", lambda: s.insert_tablet(t), "`x y`")
    # Written in backquotes they are names; needless backquotes are dropped.
    record(s, "root.sg.`d`", ["`x y`", "`time`", "`a.b`", "`abc`"])()
    got, rows = columns(s, "select ** from root.sg")
    want = ["root.sg.d.`x y`", "root.sg.d.`time`", "root.sg.d.`a.b`", "root.sg.d.abc"]
    if sorted(got[1:]) != sorted(want) or rows != 1:
        fail(f"quoted names: {got} ({rows} rows)")
    # Nothing was re-split into another device.
    got, rows = columns(s, "select ** from root.p2")
    if len(got) != 1 or rows != 0:
        fail(f"root.p2 holds {got}")
    s.close()
    print("ok")


def privileges(port, user, password, granted):
    s = session(port, user, password)
    if not granted:
        msg = "No permissions for this operation, please add privilege "
        refused("insert", "803", record(s, "root.sg.d", ["s"], 5), msg + "INSERT_TIMESERIES")
        t = Tablet("root.sg.d", ["s"], [TSDataType.DOUBLE], [[1.0]], [6])
        refused("insertTablet", "803", lambda: s.insert_tablet(t), msg + "INSERT_TIMESERIES")
        refused("delete", "803", lambda: s.execute_non_query_statement("delete from root.sg.d.s"),
                msg + "DELETE_TIMESERIES")
        refused("drop database", "803", lambda: s.execute_non_query_statement("drop database root.sg"),
                msg + "DELETE_DATABASE")
        refused("select", "803", lambda: columns(s, "select ** from root.sg"), msg + "READ_TIMESERIES")
    else:
        record(s, "root.sg.d", ["s"], 7)()
        t = Tablet("root.sg.d", ["s"], [TSDataType.DOUBLE], [[1.0]], [8])
        s.insert_tablet(t)
        got, rows = columns(s, "select s from root.sg.d")
        if got != ["Time", "root.sg.d.s"] or rows < 2:
            fail(f"select after GRANT: {got} ({rows} rows)")
        refused("insert outside the grant", "803", record(s, "root.other.d", ["s"]), "INSERT_TIMESERIES")
    s.close()
    print("ok")


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "names":
        names(port)
    elif mode in ("refused", "allowed"):
        privileges(port, sys.argv[3], sys.argv[4], mode == "allowed")
    else:
        fail(f"unknown mode {mode}")
