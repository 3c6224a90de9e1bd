"""A legacy-sync (IoTDB 1.0/1.1) receiver built on Apache's generated code
(apache-iotdb's iotdb.thrift.rpc Processor, plain TBinaryProtocol: the
accelerated one drops the -1 field id of `handshake`), to check what
edgepipe's legacy connector sends.

    python legacy_peer.py VERSION CALL=N [REFUSE_PATTERN]

Prints its port, then serves until it has seen N calls of the method CALL
(e.g. sendPipeData=2, handshake=3), then prints a JSON summary of every
call in order and exits (after 60 s without reaching N it prints what it
saw and exits 1).

It behaves as a 1.1 receiver's handshake does: the major.minor of the
sender's version must equal that of VERSION, else 1108 "version mismatch:
the sender <…>, the receiver <…>". A sendPipeData deletion whose pattern
is REFUSE_PATTERN is answered 1108, as a 1.1 receiver answers a deletion
it cannot apply.
"""
import json
import struct
import sys
import threading

from iotdb.thrift.common.ttypes import TSStatus
from iotdb.thrift.rpc import IClientRPCService
from iotdb.thrift.rpc.ttypes import TSOpenSessionResp
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

TYPES = {0: "BOOLEAN", 1: "INT32", 2: "INT64", 3: "FLOAT", 4: "DOUBLE", 5: "TEXT"}


def major_minor(v):
    parts = v.split(".")
    return ".".join(parts[:2])


def read_string(b, at):
    n = struct.unpack(">i", b[at:at + 4])[0]
    if n < 0:
        return None, at + 4
    return b[at + 4:at + 4 + n].decode(), at + 4 + n


def pipe_data(buff):
    """The legacy PipeData layout (1.1 / 1.2 legacy connector)."""
    kind = buff[0]
    serial, = struct.unpack(">q", buff[1:9])
    if kind == 1:
        db, at = read_string(buff, 9)
        start, end = struct.unpack(">qq", buff[at:at + 16])
        pattern, at = read_string(buff, at + 16)
        if at != len(buff):
            raise ValueError("trailing bytes after a DeletionPipeData")
        return {"type": "DELETION", "serial": serial, "database": db,
                "start": start, "end": end, "pattern": pattern}
    if kind == 0:
        parent, at = read_string(buff, 9)
        name, at = read_string(buff, at)
        return {"type": "TSFILE", "serial": serial, "dir": parent, "file": name}
    raise ValueError("unknown PipeData type %d" % kind)


def decode_tablet(prefix, measurements, types, values, timestamps, size, aligned):
    """The client RPC layout (as Session.insertTablet writes it)."""
    times = list(struct.unpack(">%dq" % size, timestamps))
    at = 0
    cols = []
    for t in types:
        name = TYPES[t]
        col = []
        for _ in range(size):
            if name == "BOOLEAN":
                col.append(bool(values[at])); at += 1
            elif name == "INT32":
                col.append(struct.unpack(">i", values[at:at + 4])[0]); at += 4
            elif name == "INT64":
                col.append(struct.unpack(">q", values[at:at + 8])[0]); at += 8
            elif name == "FLOAT":
                col.append(struct.unpack(">f", values[at:at + 4])[0]); at += 4
            elif name == "DOUBLE":
                col.append(struct.unpack(">d", values[at:at + 8])[0]); at += 8
            else:
                n, = struct.unpack(">i", values[at:at + 4]); at += 4
                col.append(values[at:at + n].decode()); at += n
        cols.append(col)
    if at < len(values):
        for c in range(len(types)):
            flag = values[at]; at += 1
            if flag == 1:
                bits = values[at:at + size // 8 + 1]; at += size // 8 + 1
                for r in range(size):
                    if bits[r // 8] & (1 << (r % 8)):
                        cols[c][r] = None
    if at != len(values):
        raise ValueError("%d bytes left after the values" % (len(values) - at))
    return {"device": prefix, "aligned": aligned, "times": times,
            "columns": {m: {"type": TYPES[t], "values": col}
                        for m, t, col in zip(measurements, types, cols)}}


class Handler:
    def __init__(self, version, until, want, refuse):
        self.version = version
        self.until = until
        self.want = want
        self.refuse = refuse
        self.calls = []
        self.data = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def note(self, entry):
        with self.lock:
            self.calls.append(entry)
            if entry["call"] == self.until:
                self.data += 1
                if self.data >= self.want:
                    self.done.set()

    def handshake(self, info):
        ok = major_minor(info.version) == major_minor(self.version)
        self.note({"call": "handshake", "pipeName": info.pipeName,
                   "createTime": info.createTime, "version": info.version,
                   "database": info.database, "accepted": ok})
        if not ok:
            return TSStatus(code=1108, message="version mismatch: the sender <%s>, the receiver <%s>"
                            % (info.version, self.version))
        return TSStatus(code=200, message="")

    def openSession(self, req):
        self.note({"call": "openSession", "username": req.username,
                   "password": req.password, "protocol": req.client_protocol})
        return TSOpenSessionResp(status=TSStatus(code=200), serverProtocolVersion=2,
                                 sessionId=7, configuration={})

    def closeSession(self, req):
        self.note({"call": "closeSession", "sessionId": req.sessionId})
        return TSStatus(code=200)

    def insertTablet(self, req):
        t = decode_tablet(req.prefixPath, req.measurements, req.types, req.values,
                          req.timestamps, req.size, bool(req.isAligned))
        t["call"] = "insertTablet"
        t["sessionId"] = req.sessionId
        self.note(t)
        return TSStatus(code=200)

    def insertTablets(self, req):
        tablets = [decode_tablet(p, m, ty, v, ts, n, bool(req.isAligned))
                   for p, m, ty, v, ts, n in zip(req.prefixPaths, req.measurementsList,
                                                   req.typesList, req.valuesList,
                                                   req.timestampsList, req.sizeList)]
        self.note({"call": "insertTablets", "sessionId": req.sessionId, "tablets": tablets})
        return TSStatus(code=200)

    def sendPipeData(self, buff):
        d = pipe_data(buff)
        d["call"] = "sendPipeData"
        self.note(d)
        if d.get("pattern") == self.refuse:
            return TSStatus(code=1108, message="Fail to load pipeData because path does not exist")
        return TSStatus(code=200, message="")


def main():
    version = sys.argv[1]
    until, want = sys.argv[2].split("=")
    refuse = sys.argv[3] if len(sys.argv) > 3 else None
    handler = Handler(version, until, int(want), refuse)
    processor = IClientRPCService.Processor(handler)
    sock = TSocket.TServerSocket(host="127.0.0.1", port=0)
    sock.listen()
    print(sock.handle.getsockname()[1], flush=True)

    def serve(client):
        trans = TTransport.TFramedTransport(client)
        proto = TBinaryProtocol.TBinaryProtocol(trans)
        try:
            while True:
                processor.process(proto, proto)
        except (TTransport.TTransportException, EOFError, OSError):
            pass
        finally:
            trans.close()

    def accept():
        while True:
            client = sock.accept()
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    ok = handler.done.wait(60)
    with handler.lock:
        print(json.dumps(handler.calls), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
