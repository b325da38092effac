"""Checks a checkpoint directory as transformers' from_pretrained reads it:
model.safetensors.index.json's weight_map names every tensor of the shards
exactly once, each shard holds what the map says, metadata.total_size is the
sum of the tensors' bytes, shards are named model-0000k-of-0000n, each
shard's __metadata__ is transformers' {"format": "pt"} with mtc's export
marker {"mtc_output": "hf-export"}, and config.json and trainer_state.json
are there. Prints a summary line."""
import json
import os
import struct
import sys

directory = sys.argv[1]
index = json.load(open(os.path.join(directory, "model.safetensors.index.json")))
weight_map = index["weight_map"]
files = sorted(set(weight_map.values()))
count = len(files)
assert files == [f"model-{k:05d}-of-{count:05d}.safetensors" for k in range(1, count + 1)], files
seen, total = {}, 0
for name in files:
    with open(os.path.join(directory, name), "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    for tensor, info in header.items():
        if tensor == "__metadata__":
            assert info == {"format": "pt", "mtc_output": "hf-export"}, info
            continue
        assert tensor not in seen, tensor
        seen[tensor] = name
        begin, end = info["data_offsets"]
        total += end - begin
assert seen == weight_map, (sorted(seen), sorted(weight_map))
assert index["metadata"]["total_size"] == total, (index["metadata"], total)
config = json.load(open(os.path.join(directory, "config.json")))
state = json.load(open(os.path.join(directory, "trainer_state.json")))
print(f"{count} shards, {len(seen)} tensors, total_size {total} ok;"
      f" {config['architectures'][0]}; global_step {state['global_step']}")
