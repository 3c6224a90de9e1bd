"""Everything a sender pushes into an edgepipe node, sent through Apache's
generated Python thrift code (apache-iotdb's iotdb.thrift.rpc.IClientRPCService
with plain TBinaryProtocol: the accelerated one drops the -1 field ids) and
read back with the official client (iotdb.Session).

Run by the Rust end-to-end tests (tests/tests/receive_*.rs):

    python receive.py files PORT SAMPLES OUT  # every TsFile sample as pieces + seal, then files
                                              # written by the PyPI tsfile package in OUT
    python receive.py resume PORT FILE        # a piece resent after a lost reply: 1803, resumed,
                                              # the file lands once, whole
    python receive.py damaged PORT FILE       # a damaged copy is refused, nothing of it applied
    python receive.py cut PORT FILE           # half a file sent, then the connection dropped
    python receive.py insertnode PORT         # InsertNodes (type 2), WAL entries (7), batches (6)
    python receive.py legacy PORT FILE        # handshake (version), sendFile (1104 resume),
                                              # sendPipeData (TSFILE, DELETION), no handshake
    python receive.py refused PORT FROM       # handshake from address FROM: refused by ip_white_list

Prints "ok" and exits 0, or prints FAIL: ... and exits 1.
"""
import json
import os
import socket
import struct
import sys

from iotdb.Session import Session
from iotdb.thrift.rpc import IClientRPCService
from iotdb.thrift.rpc.ttypes import TPipeTransferReq, TSyncIdentityInfo, TSyncTransportMetaInfo
from thrift.protocol import TBinaryProtocol
from thrift.Thrift import TApplicationException
from thrift.transport import TSocket, TTransport

T0 = 1_700_000_000_000


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Client:
    """A connection with Apache's generated client, plain binary protocol."""

    def __init__(self, port, source=None):
        sock = TSocket.TSocket("127.0.0.1", port)
        if source is not None:
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.settimeout(60)
            raw.bind((source, 0))
            raw.connect(("127.0.0.1", port))
            sock.handle = raw
        else:
            sock.setTimeout(60_000)
        self.transport = TTransport.TFramedTransport(sock)
        if source is None:
            self.transport.open()
        self.rpc = IClientRPCService.Client(TBinaryProtocol.TBinaryProtocol(self.transport))

    def close(self):
        self.transport.close()

    def transfer(self, kind, body):
        return self.rpc.pipeTransfer(TPipeTransferReq(version=1, type=kind, body=body))


def string(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">i", len(b)) + b


def handshake(c, precision="ms"):
    r = c.transfer(1, string(precision))
    check(r.status.code == 200, "handshake: %s" % r.status)


def send_file(c, name, data, piece=700):
    """Pieces (type 4), resuming where a 1803 says, then the seal (type 5).
    Returns the seal's status."""
    at = 0
    while at < len(data):
        chunk = data[at:at + piece]
        r = c.transfer(4, string(name) + struct.pack(">q", at) + string(chunk))
        if r.status.code == 200:
            at += len(chunk)
            check(struct.unpack(">q", r.body)[0] == at, "piece reply body %r at %d" % (r.body, at))
        elif r.status.code == 1803:
            at = struct.unpack(">q", r.body)[0]
        else:
            fail("piece of %s at %d: %s" % (name, at, r.status))
    return c.transfer(5, string(name) + struct.pack(">q", len(data))).status


def session(port):
    s = Session("127.0.0.1", port, "root", "root", fetch_size=5000)
    s.open(False)
    return s


def series(s, device, measurement, lo=None, hi=None):
    """[(time, value)] of one series, nulls left out."""
    where = ""
    if lo is not None:
        where = " where time >= %d and time <= %d" % (lo, hi)
    out = []
    with s.execute_query_statement("select %s from %s%s" % (measurement, device, where)) as ds:
        names = ds.get_column_names()
        if len(names) < 2:
            return out
        while ds.has_next():
            r = ds.next()
            f = r.get_fields()[0]
            if f.get_data_type() is None:
                continue
            v = f.get_object_value(f.get_data_type())
            if v is None:
                continue
            if isinstance(v, bytes):
                v = v.decode()
            out.append((r.get_timestamp(), v))
    return out


def texts(s, sql):
    """The first column of a SHOW statement, as strings."""
    out = []
    with s.execute_query_statement(sql) as ds:
        while ds.has_next():
            out.append(str(ds.next().get_fields()[0]))
    return out


def f32(x):
    return struct.unpack(">f", struct.pack(">f", x))[0]


def ten_rows(t0):
    """The reference samples' 10-row data (iotdb-insertnode-tsfile.md §6)."""
    rows = range(10)
    t = [t0 + r * 1000 for r in rows]
    return {
        "s1": [(t[r], 100 + 7 * r) for r in rows if r != 3],
        "s2": [(t[r], 1.5 * r) for r in rows if r not in (4, 9)],
        "s3": [(t[r], "v%d" % r) for r in rows if r != 2],
        "s4": [(t[r], r % 3 == 0) for r in rows if r != 6],
        "s5": [(t[r], r * r - 10) for r in rows],
        "s6": [(t[r], f32(0.25 * r)) for r in rows if r != 0],
    }


def same(got, want, what):
    check(len(got) == len(want), "%s: %d rows, want %d: %s" % (what, len(got), len(want), got[:5]))
    for (t, v), (wt, wv) in zip(got, want):
        ok = t == wt and (v == wv if not isinstance(wv, float) else abs(v - wv) <= 1e-9 * max(1, abs(wv)))
        check(ok, "%s: (%s, %r), want (%s, %r)" % (what, t, v, wt, wv))


def files(port, samples, out):
    c = Client(port)
    handshake(c)
    for name in sorted(os.listdir(samples)):
        if not name.endswith(".tsfile"):
            continue
        with open(os.path.join(samples, name), "rb") as fh:
            data = fh.read()
        st = send_file(c, name, data, piece=97)
        if "table" in name:
            check(st.code == 1100 and "table-model TsFile" in st.message, "%s: %s" % (name, st))
        else:
            check(st.code == 200, "%s: %s" % (name, st))
    s = session(port)
    for device, t0 in [("root.sg.d1", T0), ("root.sg.d2", T0), ("root.sg.d1", 1000), ("root.sg.d2", 1000)]:
        for m, want in ten_rows(t0).items():
            same(series(s, device, m, t0, t0 + 9000), want, "%s.%s from %d" % (device, m, t0))
    for i in range(3, 7):
        same(series(s, "root.sg.e%d" % i, "x"), [(5, 10 * i), (6, 10 * i + 1)], "root.sg.e%d.x" % i)
    same(series(s, "root.sg.d1", "s1", 1, 3), [(1, 10), (2, 20), (3, 30)], "v4 tree root.sg.d1.s1")
    # Nothing of the table-model file.
    check(not [r for r in texts(s, "show timeseries") if "t1" in r or "r1" in r],
          "the table-model file left series")

    # Files written by the PyPI tsfile package (format v4): several devices,
    # every type and encoding it offers, nulls, pages of 100 rows.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import write_tsfiles as w

    os.makedirs(out, exist_ok=True)
    init = os.path.join(out, "init.tsfile")
    w.TsFileWriter(init).close()
    os.remove(init)
    w.set_config(page_writer_max_point_num_=100)
    expected = {}
    w.tree(out, 450, expected)
    w.v4_types(out, 450, expected)
    for name in ["tree.tsfile", "v4types.tsfile"]:
        with open(os.path.join(out, name), "rb") as fh:
            data = fh.read()
        st = send_file(c, name, data, piece=8 << 10)
        check(st.code == 200, "%s: %s" % (name, st))
    for key, rows in expected.items():
        device, m = key.split("|")
        want = [(t, v) for t, v in rows]
        same(series(s, device, m), want, key)
    c.close()
    s.close()
    print("ok")


def resume(port, path):
    with open(path, "rb") as fh:
        data = fh.read()
    c = Client(port)
    handshake(c)
    name = "resume.tsfile"
    half = len(data) // 2
    piece = lambda at, to: c.transfer(4, string(name) + struct.pack(">q", at) + string(data[at:to]))
    r = piece(0, half)
    check(r.status.code == 200, "first half: %s" % r.status)
    # The reply to the next piece is "lost": the sender sends it again.
    r = piece(half, len(data) - 10)
    check(r.status.code == 200, "second piece: %s" % r.status)
    r = piece(half, len(data) - 10)
    check(r.status.code == 1803, "resent piece: %s" % r.status)
    at = struct.unpack(">q", r.body)[0]
    check(at == len(data) - 10, "1803 says resume at %d" % at)
    check("reset file reader's offset from %d to %d" % (half, at) in r.status.message, r.status.message)
    r = piece(at, len(data))
    check(r.status.code == 200, "last piece: %s" % r.status)
    st = c.transfer(5, string(name) + struct.pack(">q", len(data))).status
    check(st.code == 200, "seal: %s" % st)
    s = session(port)
    for m, want in ten_rows(T0).items():
        same(series(s, "root.sg.d1", m), want, "root.sg.d1.%s" % m)
    print("ok")


def damaged(port, path):
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    c = Client(port)
    handshake(c)
    bad = bytes(data[:7]) + bytes([data[7] ^ 0xFF]) + bytes(data[8:])
    st = send_file(c, "damaged.tsfile", bad)
    check(st.code == 1100, "damaged: %s" % st)
    check("damaged.tsfile" in st.message and "nothing of it was applied" in st.message, st.message)
    st = send_file(c, "truncated.tsfile", bytes(data[:-30]))
    check(st.code == 1100 and "truncated.tsfile" in st.message, "truncated: %s" % st)
    # A seal of the wrong length: 1804, the partial file dropped.
    c.transfer(4, string("short.tsfile") + struct.pack(">q", 0) + string(bytes(data)))
    st = c.transfer(5, string("short.tsfile") + struct.pack(">q", len(data) + 1)).status
    check(st.code == 1804, "wrong seal length: %s" % st)
    s = session(port)
    left = texts(s, "show timeseries")
    check(not left, "a refused file left series: %s" % left)
    print("ok")


def cut(port, path):
    with open(path, "rb") as fh:
        data = fh.read()
    c = Client(port)
    handshake(c)
    r = c.transfer(4, string("cut.tsfile") + struct.pack(">q", 0) + string(data[: len(data) // 2]))
    check(r.status.code == 200, "half: %s" % r.status)
    c.close()
    print("ok")


# --- InsertNode and WAL entry bodies, written from the reference's layout
# (iotdb-insertnode-tsfile.md §2), independently of edgepipe's encoders.

BOOLEAN, INT32, INT64, FLOAT, DOUBLE, TEXT = range(6)
FMT = {INT32: ">i", INT64: ">q", FLOAT: ">f", DOUBLE: ">d"}


def schema(name, t):
    return string(name) + bytes([t, 0, 0]) + struct.pack(">i", 0)


def cell(t, v):
    if t == BOOLEAN:
        return bytes([1 if v else 0])
    if t == TEXT:
        return string(v)
    return struct.pack(FMT[t], v)


def filler(t):
    return {BOOLEAN: False, TEXT: "", FLOAT: 0.0, DOUBLE: 0.0}.get(t, 0)


def row_cells(cols):
    return b"".join(b"\xfe" if v is None else bytes([t]) + cell(t, v) for _, t, v in cols)


def row_node(time, device, cols, aligned, node_id="r"):
    """cols: [(name, type, value or None)]."""
    return (struct.pack(">hq", 14, time) + string(device) + struct.pack(">i", len(cols)) + b"\x01"
            + b"".join(schema(n, t) for n, t, _ in cols) + row_cells(cols)
            + b"\x00" + bytes([aligned]) + string(node_id) + struct.pack(">i", 0))


def tablet_rows(cols, times, aligned):
    b = struct.pack(">i", len(times)) + b"".join(struct.pack(">q", t) for t in times) + b"\x01"
    for _, _, vals in cols:
        if any(v is None for v in vals):
            bits = bytearray(len(times) // 8 + 1)
            for r, v in enumerate(vals):
                if v is None:
                    bits[r // 8] |= 1 << (r % 8)
            b += b"\x01" + bytes(bits)
        else:
            b += b"\x00"
    for _, t, vals in cols:
        b += b"".join(cell(t, filler(t) if v is None else v) for v in vals)
    return b + bytes([aligned])


def tablet_node(device, cols, times, aligned, node_id="t"):
    """cols: [(name, type, [value or None per row])]."""
    return (struct.pack(">h", 13) + string(device) + struct.pack(">i", len(cols)) + b"\x01"
            + b"".join(schema(n, t) for n, t, _ in cols) + bytes(t for _, t, _ in cols)
            + tablet_rows(cols, times, aligned) + string(node_id) + struct.pack(">i", 0))


def wal_row(time, device, cols, aligned):
    return (bytes([4]) + struct.pack(">qhq", 7, 14, -1) + struct.pack(">q", time) + string(device)
            + struct.pack(">i", len(cols)) + b"".join(schema(n, t) for n, t, _ in cols)
            + row_cells(cols) + bytes([aligned]))


def wal_tablet(device, cols, times, aligned):
    return (bytes([5]) + struct.pack(">qhq", 7, 13, 42) + string(device)
            + struct.pack(">i", len(cols)) + b"".join(schema(n, t) for n, t, _ in cols)
            + tablet_rows(cols, times, aligned))


# The reference's worked examples (§2.7), byte for byte; the tablet node's
# device renamed root.sg.d9 (same length): its s1 is INT32, the row's INT64.
REF_ROW_NODE = bytes.fromhex(
    "000e0000018bcfe568000000000a726f6f742e73672e64310000000201000000027331020407000000000000000273320500070000000002000000000000002a050000000268690000000000013100000000")
REF_ROW_WAL = bytes.fromhex(
    "040000000000000005000effffffffffffffff0000018bcfe568000000000a726f6f742e73672e643100000002000000027331020407000000000000000273320500070000000002000000000000002a0500000002686900")
REF_TABLET_NODE = bytes.fromhex(
    "000d0000000a726f6f742e73672e64390000000100000000027331010000000200000000000000010000000000000002010102000000070000000000000000013100000000")
# tablet_serialize_v1.2.bin: root.sg.d1, t=1,2; s1 INT64 10,20; s2 TEXT "a",null; s3 BOOLEAN true,false.
REF_TABLET = bytes.fromhex(
    "0000000a726f6f742e73672e64310000000201000000030100000002733102040100000000"
    "010000000273320500010000000001000000027333000201000000000100000000000000010000000000000002"
    "010001000000020000000102000101000000000000000a0000000000000014010100000001610100000000010100")


def insertnode(port):
    c = Client(port)
    for kind, body in [(2, REF_ROW_NODE), (7, REF_ROW_WAL), (2, REF_TABLET_NODE)]:
        r = c.transfer(kind, body)
        check(r.status.code == 200, "reference example type %d: %s" % (kind, r.status))
    times = [100, 101, 102, 103, 104, 105, 106, 107, 108]
    cols = [
        ("b", BOOLEAN, [True, None, False, True, None, False, True, False, True]),
        ("i", INT32, [1, -2, None, 4, 5, 6, 7, 8, None]),
        ("l", INT64, [1 << 40, None, 3, 4, 5, 6, 7, 8, -9]),
        ("f", FLOAT, [0.5, 1.5, 2.5, None, 4.5, 5.5, 6.5, 7.5, 8.5]),
        ("d", DOUBLE, [None, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]),
        ("t", TEXT, ["a", "bb", "ccc", None, "", "ü", "x y", "z", None]),
    ]
    for device, aligned in [("root.ins.plain", 0), ("root.ins.aligned", 1)]:
        r = c.transfer(2, tablet_node(device, cols, times, aligned))
        check(r.status.code == 200, "InsertTabletNode %s: %s" % (device, r.status))
    # The same rows as WAL entries (one tablet entry of the first rows, then
    # row entries) and as a batch of all three kinds.
    r = c.transfer(7, wal_tablet("root.ins.wal", [(n, t, v[:4]) for n, t, v in cols], times[:4], 0))
    check(r.status.code == 200, "WAL tablet entry: %s" % r.status)
    for k in range(4, 9):
        r = c.transfer(7, wal_row(times[k], "root.ins.wal", [(n, t, v[k]) for n, t, v in cols], 0))
        check(r.status.code == 200, "WAL row entry %d: %s" % (k, r.status))
    batch = (struct.pack(">i", 2)
             + string(wal_tablet("root.ins.batch", [(n, t, v[:3]) for n, t, v in cols], times[:3], 1))
             + string(wal_row(times[3], "root.ins.batch", [(n, t, v[3]) for n, t, v in cols], 1))
             + struct.pack(">i", 5)
             + b"".join(row_node(times[k], "root.ins.batch", [(n, t, v[k]) for n, t, v in cols], 1)
                        for k in range(4, 9))
             + struct.pack(">i", 1) + REF_TABLET + b"\x00")
    r = c.transfer(6, batch)
    check(r.status.code == 200, "batch: %s" % r.status)
    # A body that does not decode: refused by name, the connection goes on.
    r = c.transfer(2, REF_ROW_NODE[:-20])
    check(r.status.code == 1107 and "does not decode" in r.status.message, "cut node: %s" % r.status)
    c.close()

    s = session(port)
    same(series(s, "root.sg.d1", "s1", T0, T0), [(T0, 42)], "reference row s1")
    same(series(s, "root.sg.d1", "s2", T0, T0), [(T0, "hi")], "reference row s2")
    same(series(s, "root.sg.d9", "s1"), [(1, 7)], "reference tablet node (row 2 null)")
    same(series(s, "root.sg.d1", "s1", 1, 2), [(1, 10), (2, 20)], "batch's raw tablet s1")
    same(series(s, "root.sg.d1", "s2", 1, 2), [(1, "a")], "batch's raw tablet s2")
    same(series(s, "root.sg.d1", "s3", 1, 2), [(1, True), (2, False)], "batch's raw tablet s3")
    for device in ["root.ins.plain", "root.ins.aligned", "root.ins.wal", "root.ins.batch"]:
        for n, t, vals in cols:
            want = [(times[r], v if t != FLOAT else f32(v)) for r, v in enumerate(vals) if v is not None]
            same(series(s, device, n), want, "%s.%s" % (device, n))
    s.close()
    print("ok")


def legacy(port, path):
    with open(path, "rb") as fh:
        data = fh.read()
    info = lambda v, db="root.lg": TSyncIdentityInfo(pipeName="lp", createTime=1_650_000_000_000,
                                                     version=v, database=db)
    # Without a handshake: an application exception, as 1.1.
    c = Client(port)
    try:
        c.rpc.sendPipeData(b"\x00" * 9)
        fail("sendPipeData without a handshake was answered")
    except TApplicationException as e:
        check("Thrift connection is not alive" in str(e.message), str(e.message))
    c = Client(port)
    try:
        c.rpc.sendFile(TSyncTransportMetaInfo(fileName="x", startIndex=0), b"x")
        fail("sendFile without a handshake was answered")
    except TApplicationException as e:
        check("Internal error processing sendFile" in str(e.message), str(e.message))
    c = Client(port)
    st = c.rpc.handshake(info("0.13"))
    check(st.code == 1108 and st.message == "version mismatch: the sender <0.13>, the receiver <1.1>",
          "0.13: %s" % st)
    st = c.rpc.handshake(info("1.1"))
    check(st.code == 200, "1.1: %s" % st)
    # sendFile: a new file starts at 0; a wrong index is answered 1104 with
    # the expected one, where the sender resumes.
    name = "1-1-0-0.tsfile"
    meta = lambda at: TSyncTransportMetaInfo(fileName=name, startIndex=at)
    st = c.rpc.sendFile(meta(100), data[100:200])
    check(st.code == 1104 and st.message == "0", "new file at 100: %s" % st)
    st = c.rpc.sendFile(meta(0), data[:300])
    check(st.code == 200, "first piece: %s" % st)
    st = c.rpc.sendFile(meta(0), data[:300])
    check(st.code == 1104 and st.message == "300", "piece sent again: %s" % st)
    at = int(st.message)
    while at < len(data):
        st = c.rpc.sendFile(meta(at), data[at:at + 256])
        check(st.code == 200, "piece at %d: %s" % (at, st))
        at += 256
    tsfile = b"\x00" + struct.pack(">q", -1) + string("") + string(name)
    st = c.rpc.sendPipeData(tsfile)
    check(st.code == 200, "TSFILE pipe data: %s" % st)
    s = session(port)
    for m, want in ten_rows(T0).items():
        same(series(s, "root.sg.d1", m), want, "loaded root.sg.d1.%s" % m)
    dbs = texts(s, "show databases")
    check("root.lg" in dbs, "handshake database: %s" % dbs)
    # DELETION: a time range of one series, then all of a database's series.
    deletion = lambda db, a, b, p: (b"\x01" + struct.pack(">q", 5) + string(db) + struct.pack(">qq", a, b)
                                    + string(p))
    st = c.rpc.sendPipeData(deletion("root.sg", T0, T0 + 4000, "root.sg.d1.s5"))
    check(st.code == 200, "deletion: %s" % st)
    same(series(s, "root.sg.d1", "s5"), ten_rows(T0)["s5"][5:], "s5 after the deletion")
    st = c.rpc.sendPipeData(deletion("root.sg", -(1 << 63), (1 << 63) - 1, "root.sg.**"))
    check(st.code == 200, "database deletion: %s" % st)
    left = texts(s, "show timeseries root.sg.**")
    check(not left, "series left in root.sg after DELETE TIMESERIES root.sg.**: %s" % left)
    check("root.sg" in texts(s, "show databases"), "the database root.sg was dropped")
    # A legacy pipe's rows: inserts through a session on another connection,
    # as the 1.2 legacy connector's SessionPool makes them (openSession,
    # requestStatementId, insertTablet / aligned, closeSession).
    from iotdb.utils.IoTDBConstants import TSDataType
    from iotdb.utils.Tablet import Tablet

    rows = Session("127.0.0.1", port, "root", "root")
    rows.open(False)
    types = [TSDataType.INT64, TSDataType.TEXT]
    rows.insert_tablet(Tablet("root.lg.d", ["a", "b"], types, [[1, "x"], [2, "y"]], [10, 20]))
    rows.insert_aligned_tablet(Tablet("root.lg.al", ["a", "b"], types, [[3, "z"]], [30]))
    rows.close()
    same(series(s, "root.lg.d", "b"), [(10, "x"), (20, "y")], "insertTablet rows")
    same(series(s, "root.lg.al", "a"), [(30, 3)], "insertAlignedTablet rows")
    # Bad PipeData: 1108 with 1.1's words.
    st = c.rpc.sendPipeData(b"\x07" + b"\x00" * 8)
    check(st.code == 1108 and st.message.startswith("Pipe data transport error, "), "bad pipe data: %s" % st)
    s.close()
    c.close()
    print("ok")


def refused(port, source):
    """A legacy handshake and a pipeTransfer handshake from `source`, each
    on a connection of its own: their statuses, or how the connection
    ended."""
    out = {}
    try:
        st = Client(port, source).rpc.handshake(
            TSyncIdentityInfo(pipeName="p", createTime=1, version="1.1", database=""))
        out["handshake"] = [st.code, st.message]
    except TTransport.TTransportException as e:
        out["handshake"] = "closed: %s" % e
    try:
        r = Client(port, source).transfer(1, string("ms"))
        out["pipeTransfer"] = [r.status.code, r.status.message]
    except TTransport.TTransportException as e:
        out["pipeTransfer"] = "closed: %s" % e
    print(json.dumps(out))


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "files":
        files(port, sys.argv[3], sys.argv[4])
    elif mode == "resume":
        resume(port, sys.argv[3])
    elif mode == "damaged":
        damaged(port, sys.argv[3])
    elif mode == "cut":
        cut(port, sys.argv[3])
    elif mode == "insertnode":
        insertnode(port)
    elif mode == "legacy":
        legacy(port, sys.argv[3])
    elif mode == "refused":
        refused(port, sys.argv[3])
    else:
        fail("unknown mode " + mode)
