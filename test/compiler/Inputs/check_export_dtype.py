#!/usr/bin/env python3
"""Compares an export (`mtrun --export-hf`) with the fp32 masters of the same
step (`mtrun --save`'s model.safetensors): every tensor must hold the master
rounded to nearest even in the export's dtype, computed here independently
of mtc (bfloat16 by integer arithmetic on the bits, float16 by Python's
struct 'e' format). Prints the dtype and how many tensors matched.

    python3 check_export_dtype.py EXPORT_DIR CHECKPOINT_DIR
"""
import json, math, struct, sys


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], data[begin:end])
    return meta, out


def bf16(bits32):
    if (bits32 & 0x7FFFFFFF) > 0x7F800000:
        return (bits32 >> 16) | 0x0040
    return ((bits32 + 0x7FFF + ((bits32 >> 16) & 1)) >> 16) & 0xFFFF


def main(export, checkpoint):
    meta, exported = read(export + "/model.safetensors")
    _, masters = read(checkpoint + "/model.safetensors")
    dtypes = {d for d, _, _ in exported.values()}
    if len(dtypes) != 1:
        print("mixed dtypes", dtypes)
        return 1
    dtype = dtypes.pop()
    bad = 0
    for name, (d, shape, raw) in exported.items():
        md, mshape, mraw = masters[name]
        count = len(mraw) // 4
        values = struct.unpack(f"<{count}f", mraw)
        bits = struct.unpack(f"<{count}I", mraw)
        if dtype == "F32":
            want = mraw
        elif dtype == "BF16":
            want = struct.pack(f"<{count}H", *(bf16(b) for b in bits))
        else:
            want = b"".join(struct.pack("<e", v) for v in values)
        if shape != mshape or raw != want:
            print("differs:", name)
            bad += 1
    config = json.load(open(export + "/config.json"))
    key = [k for k in ("dtype", "torch_dtype") if k in config]
    print(f"{dtype} {len(exported) - bad} of {len(exported)} tensors equal the rounded masters;"
          f" config {key[0]}={config[key[0]]} ({len(key)} key); metadata {json.dumps(meta, sort_keys=True)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
