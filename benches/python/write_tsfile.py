"""Writes a large TsFile with the PyPI `tsfile` package for the TsFile load
benchmark (benches/benches/tsfile.rs): table model (aligned), one device,
10 FIELD columns (INT64 and DOUBLE alternating; the writer's defaults:
TS_2DIFF and GORILLA, LZ4), ROWS rows, so 10 x ROWS points.

usage: write_tsfile.py ROWS OUT
"""

import os
import sys

import numpy as np
import pandas as pd
from tsfile import ColumnCategory, ColumnSchema, TableSchema, TSDataType, TsFileTableWriter


def main():
    rows, out = int(sys.argv[1]), sys.argv[2]
    cols = [ColumnSchema("dev", TSDataType.STRING, ColumnCategory.TAG)]
    cols += [
        ColumnSchema("f%d" % i, TSDataType.DOUBLE if i % 2 else TSDataType.INT64, ColumnCategory.FIELD)
        for i in range(10)
    ]
    if os.path.exists(out):
        os.remove(out)
    w = TsFileTableWriter(out, TableSchema("m", cols))
    step = 1_000_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        t = np.arange(start, start + n, dtype=np.int64)
        d = {"time": t * 1000 + 1_700_000_000_000, "dev": ["d1"] * n}
        for i in range(10):
            if i % 2:
                d["f%d" % i] = (np.sin(t / 1000.0 + i) * 100).round(2)
            else:
                d["f%d" % i] = (t * (i + 1)) % 100_000
        w.write_dataframe(pd.DataFrame(d))
    w.close()


if __name__ == "__main__":
    main()
