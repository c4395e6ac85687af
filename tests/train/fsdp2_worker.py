"""One rank of the FSDP2 check in tests/train/test_launch.py (run under torchrun, gloo, CPU).

Usage: torchrun --nproc_per_node 2 fsdp2_worker.py BASE_DIR OUT_DIR

Shards the base with `fully_shard` (each decoder layer, then the root), trains it for a few
steps on fixed batches split across the ranks, and trains an unsharded copy on the whole
batches beside it (every rank, identically). Rank 0 gathers the full weights, saves them
with `save_pretrained` into a staging folder and renames it into place, and writes
report.json: losses of both, whether each rank held a shard, and the parameter counts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM

STEPS, GLOBAL_BATCH, LENGTH, LR = 3, 4, 32, 1e-3


def main(base: Path, out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    single = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    vocab = single.config.vocab_size
    batches = [
        torch.randint(3, vocab, (GLOBAL_BATCH, LENGTH), generator=generator) for _ in range(STEPS)
    ]
    sharded = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    full_numel = sum(p.numel() for p in sharded.parameters())
    for layer in sharded.model.layers:
        fully_shard(layer)
    fully_shard(sharded)
    local_numel = sum(p.to_local().numel() for p in sharded.parameters())
    is_sharded = all(isinstance(p, DTensor) for p in sharded.parameters())

    optimizers = {
        "single": torch.optim.AdamW(single.parameters(), lr=LR),
        "sharded": torch.optim.AdamW(sharded.parameters(), lr=LR),
    }
    losses: dict[str, list[float]] = {"single": [], "sharded": []}
    share = GLOBAL_BATCH // world
    for batch in batches:
        whole = single(input_ids=batch, labels=batch).loss
        whole.backward()
        optimizers["single"].step()
        optimizers["single"].zero_grad()
        losses["single"].append(whole.item())

        mine = batch[rank * share : (rank + 1) * share]
        part = sharded(input_ids=mine, labels=mine).loss
        part.backward()  # FSDP2 averages the gradients over the ranks
        optimizers["sharded"].step()
        optimizers["sharded"].zero_grad()
        mean = part.detach().clone()
        dist.all_reduce(mean, op=dist.ReduceOp.AVG)
        losses["sharded"].append(mean.item())

    state = get_model_state_dict(
        sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    flags = [None] * world
    dist.all_gather_object(flags, (is_sharded, local_numel))
    if rank == 0:
        staging = out.parent / f".{out.name}.partial"
        fresh = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        fresh.load_state_dict(state)
        fresh.save_pretrained(staging)
        report = {
            "world_size": world,
            "sharded": [flag for flag, _ in flags],
            "local_numel": [numel for _, numel in flags],
            "full_numel": full_numel,
            "single_losses": losses["single"],
            "sharded_losses": losses["sharded"],
        }
        (staging / "report.json").write_text(json.dumps(report))
        os.replace(staging, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
