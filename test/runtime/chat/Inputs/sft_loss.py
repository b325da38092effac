"""The first step's loss (mtrun --metrics) recomputed from the dumped logits
(mtrun --dump-logits) and the labels of the prepared SFT file
(runtime/io/SftFile.h): the mean cross-entropy over the inputs whose next
label is not -100. Exits non-zero when they differ.

usage: sft_loss.py LOGITS.safetensors SFT.bin METRICS.jsonl
"""
import json
import math
import struct
import sys

logits_path, sft_path, metrics_path = sys.argv[1:]
with open(logits_path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()


def tensor(name):
    begin, end = header[name]["data_offsets"]
    return header[name]["shape"], struct.unpack("<%df" % ((end - begin) // 4), data[begin:end])


(B, S, V), logits = tensor("logits")
_, input_ids = tensor("input_ids")
with open(sft_path, "rb") as f:
    sft = f.read()
seq, rows = struct.unpack("<QQ", sft[24:40])
width = seq + 1
ids = struct.unpack("<%dI" % (rows * width), sft[64:64 + rows * width * 4])
# Labels are the second array; version 2 files may carry position ids after.
labels = struct.unpack("<%di" % (rows * width), sft[64 + rows * width * 4:64 + 2 * rows * width * 4])

total, count = 0.0, 0
for b in range(B):
    row_in = [int(x) for x in input_ids[b * S:(b + 1) * S]]
    matches = [r for r in range(rows) if list(ids[r * width:r * width + S]) == row_in]
    if not matches:
        sys.exit("micro-batch row %d is no row of %s" % (b, sft_path))
    label = labels[matches[0] * width:(matches[0] + 1) * width]
    for t in range(S):
        if label[t + 1] == -100:
            continue
        x = logits[(b * S + t) * V:(b * S + t + 1) * V]
        m = max(x)
        total += m + math.log(sum(math.exp(v - m) for v in x)) - x[label[t + 1]]
        count += 1
expected = total / count
with open(metrics_path) as f:
    loss = json.loads(f.readline())["loss"]
print("masked cross-entropy %.6f over %d tokens; mtrun's loss %.6f" % (expected, count, loss))
sys.exit(abs(expected - loss) > 1e-4 * max(1.0, abs(loss)))
