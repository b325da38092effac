#!/usr/bin/env python3
"""Appends a zero fp32 tensor NAME of SHAPE (comma-separated) to the
safetensors file PATH: add_tensor.py PATH NAME SHAPE."""
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
data += bytes(4 * math.prod(shape))
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)
