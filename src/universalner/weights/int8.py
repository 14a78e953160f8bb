"""int8 linear layers for the CPU: the transformers engine's ``quantization="int8"``.

On a CPU the student's time goes to matrix products (three quarters of it in float32), and a CPU
with VNNI multiplies int8 several times faster than float32 (``torch._int_mm``, oneDNN). Each linear
layer of the decoder keeps its weight as int8 with one scale per output row; at run time every input
row (token) is quantised with its own scale, so a token's result never depends on what else is in
the batch, and the int32 products are scaled back to floats.

Per-token scales are what keeps this usable: torch's stock dynamic quantisation scales a whole batch
at once and, measured on the default student, changed a third of its answers and cost 5 F1 points
(docs/performance.md). The output head stays in floating point, so scores keep full precision.
"""

from __future__ import annotations

import threading
from typing import Any


class _SharedInput(threading.local):
    """The last input quantised by a group of sibling layers that read the same tensor (q/k/v, and
    gate/up): it is quantised once for all of them.

    One per thread (``threading.local``): threads that share a model never see each other's input,
    so one cannot swap its tensor in between another's check and use."""

    def __init__(self) -> None:
        self.x = self.q = self.scale = None


def _int8_linear_class():
    import torch

    class Int8Linear(torch.nn.Module):
        """``y = x W^T + b`` with W int8 per output row and x quantised per row at run time."""

        def __init__(self, linear: torch.nn.Linear, shared: _SharedInput | None = None):
            super().__init__()
            w = linear.weight.detach().float()
            scale = w.abs().amax(1).clamp(min=1e-8) / 127
            self.register_buffer("weight_t", torch.round(w / scale[:, None]).to(torch.int8).t().contiguous())
            # float32 whatever the model is cast to afterwards (attributes, not buffers, so .to() leaves them)
            self.weight_scale = scale
            self.bias = None if linear.bias is None else linear.bias.detach().float()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.shared = shared or _SharedInput()

        def _quantised(self, x: torch.Tensor):
            sh = self.shared  # this thread's
            if sh.x is not x:
                rows = x.reshape(-1, self.in_features).float()
                scale = rows.abs().amax(-1, keepdim=True).clamp_(min=1e-8).div_(127)
                # not in place: for a float32 input ``rows`` is a view of ``x`` itself
                sh.x, sh.q, sh.scale = x, rows.div(scale).round_().to(torch.int8), scale
            return sh.q, sh.scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, scale = self._quantised(x)
            y = torch._int_mm(q, self.weight_t) * scale  # int32 * float32 -> float32, one pass
            if self.bias is not None:
                y.add_(self.bias / self.weight_scale)
            out = torch.empty(y.shape, dtype=x.dtype, device=y.device)
            torch.mul(y, self.weight_scale, out=out)
            return out.reshape(*x.shape[:-1], self.out_features)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-token"

    return Int8Linear


def check_supported() -> None:
    """Fail with a clear message where int8 products are not available (before the model loads)."""
    import torch

    try:
        a = torch.ones((17, 32), dtype=torch.int8)
        torch._int_mm(a, torch.ones((32, 32), dtype=torch.int8))
    except (RuntimeError, AttributeError) as e:
        raise ValueError(
            f"quantization='int8' needs int8 matrix products on the CPU, which this torch lacks ({e}); "
            "use quantization=None (bf16 or float32)"
        ) from None


def quantize_linears(model: Any) -> int:
    """Replace every ``nn.Linear`` of ``model`` except its output head by an int8 one; returns how many."""
    import torch

    cls = _int8_linear_class()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    done = 0
    for module in list(model.modules()):
        # layers of one module with the same input width read the same tensor in LLaMA-style blocks
        # (q/k/v of attention, gate/up of the MLP); the identity check makes sharing safe anyway
        groups: dict[int, _SharedInput] = {}
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear and child is not head:
                shared = groups.setdefault(child.in_features, _SharedInput())
                setattr(module, name, cls(child, shared))
                done += 1
    if not done:
        raise ValueError(f"quantization='int8' found no linear layers in {type(model).__name__}")
    return done
