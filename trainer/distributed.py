"""This process's place in an ``accelerate launch`` run (or a run of one): rank, shares, collectives.

Data parallelism as DDP does it, on the adapter only: every rank holds the same adapter and
optimizer, computes the loss on its own share of the batch, and the gradients are averaged
across ranks before each step, so the ranks' adapters stay identical. Collectives are plain
``torch.distributed`` calls (gloo on CPU, NCCL on GPU) on the group accelerate initialises.
"""

from __future__ import annotations

import hashlib

import torch


class Ranks:
    def __init__(self):
        from accelerate import PartialState

        # under `accelerate launch`: initialises the process group (gloo when there is no GPU; on a CPU-only
        # machine `accelerate launch --multi_gpu --num_processes N` starts the N processes)
        self._state = PartialState(cpu=not torch.cuda.is_available())
        self.rank = self._state.process_index
        self.world = self._state.num_processes
        self.is_main = self._state.is_main_process

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self, requested: str | None) -> str:
        """The requested device, else this process's GPU (cuda:LOCAL_RANK), else cpu."""
        if requested:
            return requested
        return str(self._state.device) if torch.cuda.is_available() else "cpu"  # (not "cpu:0": one CPU device)

    def share(self, n: int) -> range:
        """This rank's contiguous block of ``range(n)`` (sizes differ by at most one)."""
        lo, hi = (self.rank * n) // self.world, ((self.rank + 1) * n) // self.world
        return range(lo, hi)

    def close(self) -> None:
        """Tear the process group down (every rank, after its last collective, on success only: a rank that
        failed may leave the others in a collective, and destroying then deadlocks). Left to interpreter exit,
        gloo's worker threads can outlive the interpreter and abort the process ("terminate called without an
        active exception", pytorch/pytorch#190489) after all the work is done."""
        if self.distributed and torch.distributed.is_initialized():
            self.barrier()
            torch.distributed.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def gather(self, items: list) -> list:
        """Every rank's ``items``, concatenated in rank order, on every rank."""
        if not self.distributed:
            return list(items)
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, list(items))
        return [x for part in out for x in part]

    def broadcast(self, obj):
        """The main rank's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def average_gradients(self, params: list[torch.nn.Parameter], contributes: bool) -> int:
        """Average the gradients over the ranks that computed a loss (``contributes``); a rank without one
        joins with zeros. Returns how many ranks contributed (0: nobody should step)."""
        flat = torch.cat([(p.grad if p.grad is not None and contributes else torch.zeros_like(p)).reshape(-1)
                          for p in params] + [torch.ones(1, device=params[0].device) * float(contributes)])
        flat = flat.float()
        if self.distributed:
            torch.distributed.all_reduce(flat)
        count = int(round(float(flat[-1])))
        if count:
            offset = 0
            for p in params:
                n = p.numel()
                p.grad = (flat[offset: offset + n] / count).view_as(p).to(p.dtype)
                offset += n
        return count


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """A short digest of a state dict (to prove the ranks' adapters are identical)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
