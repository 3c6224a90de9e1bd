"""Ingest benchmark with the official IoTDB Python client: 1,000-row tablets
of 10 DOUBLE columns through insert_tablet, one session. Prints points/s."""
import sys
import time

import numpy as np
from iotdb.Session import Session
from iotdb.utils.IoTDBConstants import TSDataType
from iotdb.utils.NumpyTablet import NumpyTablet

port = int(sys.argv[1])
s = Session("127.0.0.1", port, "root", "root")
s.open(False)
names = [f"s{c}" for c in range(10)]
types = [TSDataType.DOUBLE] * 10
n = 300
start = time.perf_counter()
for i in range(n):
    ts = np.arange(i * 1000, i * 1000 + 1000, dtype=np.int64)
    values = [np.arange(1000, dtype=np.float64) + c for c in range(10)]
    s.insert_tablet(NumpyTablet("root.py.d", names, types, values, ts))
secs = time.perf_counter() - start
s.close()
print(f"{n * 10000 / secs / 1e6:.2f} M points/s (NumpyTablet, {secs / n * 1e3:.1f} ms per tablet)")
