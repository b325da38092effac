#!/usr/bin/env python3
"""Appends an fp32 tensor NAME of SHAPE (comma-separated) to the
safetensors file PATH, zeros or a copy of the fp32 tensor SOURCE's bytes:
add_tensor.py PATH NAME SHAPE [SOURCE]."""
import json
import math
import struct
import sys

path, name, shape = sys.argv[1], sys.argv[2], [int(d) for d in sys.argv[3].split(",")]
with open(path, "rb") as f:
    size = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(size))
    data = f.read()
header[name] = {"dtype": "F32", "shape": shape,
                "data_offsets": [len(data), len(data) + 4 * math.prod(shape)]}
if len(sys.argv) > 4:
    begin, end = header[sys.argv[4]]["data_offsets"]
    data += data[begin:end]
else:
    data += bytes(4 * math.prod(shape))
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)
