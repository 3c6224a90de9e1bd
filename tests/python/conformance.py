"""pipeTransfer wire conformance with Apache's generated Python code
(apache-iotdb's iotdb.thrift.rpc, plain TBinaryProtocol: the accelerated
one drops the -1 field id).

    python conformance.py receive WANT   # a pipeTransfer receiver; prints its
                                         # port, then a JSON summary after
                                         # WANT tablets (type 3, or in type 6)
    python conformance.py send PORT      # sends pipeTransfer requests to a node
    python conformance.py sections FILE  # Apache's Tablet and NumpyTablet
                                         # serializers' bytes for the tablets
                                         # described in FILE (JSON)

The official package has no deserializer of Tablet.serialize() (the 1.2
pipeTransfer body) and no serializer of it either: only the client RPC
layout (Tablet / NumpyTablet get_binary_timestamps, get_binary_values).
`sections` gives those bytes, which the Rust side compares with the same
sections of its Tablet.serialize() output.
"""
import json
import re

import numpy as np
import socket
import struct
import sys

from iotdb.thrift.common.ttypes import TSStatus
from iotdb.thrift.rpc import IClientRPCService
from iotdb.thrift.rpc.ttypes import TPipeTransferReq, TPipeTransferResp
from thrift.protocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TSocket, TTransport

# shared/reference/tsfile-samples/tablet_serialize_v1.2.bin: root.sg.d1,
# t=1,2; s1 INT64 10,20; s2 TEXT "a",null; s3 BOOLEAN true,false.
SAMPLE = bytes.fromhex(
    "0000000a726f6f742e73672e64310000000201000000030100000002733102040100000000"
    "010000000273320500010000000001000000027333000201000000000100000000000000010000000000000002"
    "010001000000020000000102000101000000000000000a0000000000000014010100000001610100000000010100")


def read_string(b, at):
    n = struct.unpack(">i", b[at:at + 4])[0]
    return b[at + 4:at + 4 + n].decode(), at + 4 + n


def receive(want):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(60)
    print(srv.getsockname()[1], flush=True)
    seen = []
    data = 0
    while data < want:
        conn, _ = srv.accept()
        conn.settimeout(60)
        accepted = TSocket.TSocket()
        accepted.handle = conn
        trans = TTransport.TFramedTransport(accepted)
        proto = TBinaryProtocol.TBinaryProtocol(trans)
        try:
            while data < want:
                name, mtype, seqid = proto.readMessageBegin()
                if name != "pipeTransfer" or mtype != TMessageType.CALL:
                    raise SystemExit(f"unexpected call {name} {mtype}")
                args = IClientRPCService.pipeTransfer_args()
                args.read(proto)
                proto.readMessageEnd()
                req = args.req
                if req is None:
                    raise SystemExit("the request struct did not decode (field id -1 expected)")
                entry = {"version": req.version, "type": req.type, "bytes": len(req.body)}
                if req.type == 1:
                    entry["precision"], _ = read_string(req.body, 0)
                elif req.type == 3:
                    entry["devices"] = [read_string(req.body, 0)[0]]
                    data += 1
                if req.type in (3, 6):
                    # The body as Apache's generated code extracted it.
                    entry["body"] = req.body.hex()
                if req.type == 6:
                    nb, = struct.unpack(">i", req.body[0:4])
                    ni, = struct.unpack(">i", req.body[4:8])
                    nt, = struct.unpack(">i", req.body[8:12])
                    entry["binaries"], entry["insert_nodes"], entry["tablets"] = nb, ni, nt
                    # Tablets carry no length; their device strings name them.
                    entry["devices"] = sorted(set(re.findall(rb"root\.c\.d[0-9]", req.body)))
                    entry["devices"] = [d.decode() for d in entry["devices"]]
                    data += nt
                seen.append(entry)
                result = IClientRPCService.pipeTransfer_result(
                    success=TPipeTransferResp(status=TSStatus(code=200)))
                proto.writeMessageBegin("pipeTransfer", TMessageType.REPLY, seqid)
                result.write(proto)
                proto.writeMessageEnd()
                trans.flush()
        except EOFError:
            continue
        except TTransport.TTransportException:
            continue
    print(json.dumps(seen), flush=True)


def send(port):
    sock = TSocket.TSocket("127.0.0.1", port)
    trans = TTransport.TFramedTransport(sock)
    proto = TBinaryProtocol.TBinaryProtocol(trans)
    client = IClientRPCService.Client(proto)
    trans.open()
    out = {}
    r = client.pipeTransfer(TPipeTransferReq(version=1, type=1, body=struct.pack(">i", 2) + b"ms"))
    out["handshake"] = r.status.code
    r = client.pipeTransfer(TPipeTransferReq(version=1, type=1, body=struct.pack(">i", 2) + b"ns"))
    out["handshake_ns"] = [r.status.code, r.status.message]
    r = client.pipeTransfer(TPipeTransferReq(version=1, type=3, body=SAMPLE + b"\x00"))
    out["tablet"] = [r.status.code, r.status.message]
    batch = struct.pack(">ii", 0, 0) + struct.pack(">i", 1) + SAMPLE.replace(b"root.sg.d1", b"root.sg.d2") + b"\x01"
    r = client.pipeTransfer(TPipeTransferReq(version=1, type=6, body=batch))
    out["batch"] = [r.status.code, r.status.message]
    r = client.pipeTransfer(TPipeTransferReq(version=1, type=2, body=b"\x00\x0d"))
    out["insert_node"] = [r.status.code, r.status.message]
    r = client.pipeTransfer(TPipeTransferReq(version=1, type=99, body=b""))
    out["unknown"] = [r.status.code, r.status.message]
    r = client.pipeTransfer(TPipeTransferReq(version=2, type=3, body=b""))
    out["version"] = [r.status.code, r.status.message]
    r = client.pipeTransfer(TPipeTransferReq(version=1, type=3, body=b"\x00\x00\x00\xff"))
    out["garbage"] = [r.status.code, r.status.message]
    trans.close()
    print(json.dumps(out))


def sections(path):
    from iotdb.utils.BitMap import BitMap
    from iotdb.utils.IoTDBConstants import TSDataType
    from iotdb.utils.NumpyTablet import NumpyTablet
    from iotdb.utils.Tablet import Tablet

    out = []
    for t in json.load(open(path)):
        types = [TSDataType(x) for x in t["types"]]
        rows, times = t["rows"], t["timestamps"]
        tablet = Tablet(t["device"], t["measurements"], types, rows, times)
        columns, bitmaps = [], []
        for c, ty in enumerate(types):
            col = [r[c] for r in rows]
            if any(v is None for v in col):
                bm = BitMap(len(rows))
                for i, v in enumerate(col):
                    if v is None:
                        bm.mark(i)
                bitmaps.append(bm)
            else:
                bitmaps.append(None)
            if ty == TSDataType.TEXT:
                filled = ["" if v is None else v for v in col]
            else:
                filled = [(False if ty == TSDataType.BOOLEAN else 0) if v is None else v for v in col]
            columns.append(np.array(filled, dtype=ty.np_dtype()))
        np_tablet = NumpyTablet(
            t["device"], t["measurements"], types, columns,
            np.array(times, dtype=">i8"),
            bitmaps if any(b is not None for b in bitmaps) else None)
        out.append({
            "times": tablet.get_binary_timestamps().hex(),
            "values": tablet.get_binary_values().hex(),
            "np_times": np_tablet.get_binary_timestamps().hex(),
            "np_values": np_tablet.get_binary_values().hex(),
        })
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "receive":
        receive(int(sys.argv[2]))
    elif sys.argv[1] == "sections":
        sections(sys.argv[2])
    else:
        send(int(sys.argv[2]))
