#!/usr/bin/env python3
"""Removes the tensor NAME (its header entry and its bytes) from the
safetensors file PATH: drop_tensor.py PATH NAME."""
import json
import struct
import sys

path, name = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    size = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(size))
    data = f.read()
del header[name]
kept, offset = b"", 0
for key, info in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0]):
    if key == "__metadata__":
        continue
    begin, end = info["data_offsets"]
    info["data_offsets"] = [offset, offset + end - begin]
    kept += data[begin:end]
    offset += end - begin
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + kept)
