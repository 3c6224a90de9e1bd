"""Writes to a node with the official IoTDB Python client (for the pipe
end-to-end tests):

    python writer.py seed PORT                  # the seed's example script
    python writer.py stream PORT DEVICE FROM N  # N rows (3 columns) as 100-row tablets
"""
import sys
import time

from iotdb.Session import Session
from iotdb.utils.IoTDBConstants import TSDataType
from iotdb.utils.Tablet import Tablet

from interop import SEED  # the seed's verification script, written once

mode, port = sys.argv[1], int(sys.argv[2])
s = Session("127.0.0.1", port, "root", "root")
s.open(False)
if mode == "seed":
    for sql in SEED:
        s.execute_non_query_statement(sql)
        time.sleep(0.003)  # now() is in ms: keep the rows apart
elif mode == "stream":
    device, start, n = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    names = ["a", "b", "c"]
    types = [TSDataType.INT64, TSDataType.DOUBLE, TSDataType.TEXT]
    for base in range(start, start + n, 100):
        ts = list(range(base, min(base + 100, start + n)))
        values = [[t, t / 2, f"v{t}"] for t in ts]
        s.insert_tablet(Tablet(device, names, types, values, ts))
else:
    raise SystemExit(f"unknown mode {mode}")
s.close()
print("ok")
