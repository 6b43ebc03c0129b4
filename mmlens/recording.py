"""What `HookedLVLM.trace` records per step: every layer's lens statistics, last position only."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from mmlens.lens import (
    Lens,
    adjacent_divergences,
    candidate_probs,
    entropy,
    final_jsd,
    hf_hidden_states,
    lens_logits,
    log_probs,
)


def resid_hook_names(kept_blocks: list[int]) -> list[str]:
    """Hook names whose outputs are the recorded layers, in order.

    Layer 0 (the embedding output, image features merged in) is the input of the first block
    that runs, which is block 0 unless block 0 is skipped.
    """
    first = kept_blocks[0]
    return [f"blocks.{first}.hook_resid_pre"] + [f"blocks.{b}.hook_resid_post" for b in kept_blocks]


ROWS_AT_ONCE = 8  # batch rows whose [layer x vocabulary] statistics are computed together


@dataclass
class LayerRecorder:
    """Captures the last position of each residual hook and turns a step into lens statistics."""

    hook_names: list[str]
    final_norm: nn.Module
    unembed: nn.Module
    lens: Lens
    top_k: int
    rival_ids: list[int]
    keep_features: bool
    captured: dict[str, Tensor] = field(default_factory=dict)
    rows: list[dict[str, list[np.ndarray]]] = field(default_factory=list)  # one per batch row

    def hooks(self) -> list[tuple[str, Callable[[Tensor, object], None]]]:
        """Forward hooks for `bridge.hooks(fwd_hooks=...)`."""
        return [(name, self._capture_as(name)) for name in self.hook_names]

    def _capture_as(self, name: str) -> Callable[[Tensor, object], None]:
        # Alias hooks report their canonical name, so capture under the name we asked for.
        # Cloned: a view of the last position would keep the whole [batch x positions x d]
        # activation alive.
        def capture(activation: Tensor, hook: object) -> None:
            self.captured[name] = activation[:, -1].detach().clone()

        return capture

    def record(
        self,
        step: int,
        logits: Tensor,
        tokens: Sequence[int],
        active: Sequence[bool] | None = None,
    ) -> None:
        """Store one generation step's statistics for every active batch row (the
        `greedy_decode_batch` callback). Rows are computed together, a few at a time (the
        layers x vocabulary matrices of a chunk live at once), and copied to the host once per
        statistic and chunk."""
        while len(self.rows) < len(tokens):
            self.rows.append({})
        rows = [row for row in range(len(tokens)) if active is None or active[row]]
        device = self.captured[self.hook_names[-1]].device  # blocks may sit on several devices
        captured = [self.captured[name].to(device) for name in self.hook_names]
        stacked = torch.stack(captured, dim=1)
        for start in range(0, len(rows), ROWS_AT_ONCE):
            chunk = rows[start : start + ROWS_AT_ONCE]
            resid = stacked[torch.as_tensor(chunk, device=stacked.device)]  # [row, layer, d]
            self._record_rows(chunk, [int(tokens[row]) for row in chunk], resid)
        self.captured.clear()

    def _record_rows(self, rows: list[int], tokens: list[int], resid: Tensor) -> None:
        layer_logprobs = log_probs(lens_logits(resid, self.final_norm, self.unembed, self.lens))
        index = torch.as_tensor(tokens, device=layer_logprobs.device)
        n_layers = layer_logprobs.shape[1]
        chosen = layer_logprobs.gather(-1, index[:, None, None].expand(-1, n_layers, 1))
        top = layer_logprobs.topk(self.top_k, dim=-1)
        top1 = top.indices[..., 0]  # [row, layer]
        jsd, paper_jsd = adjacent_divergences(layer_logprobs)
        values = {
            "logprob": chosen[..., 0],
            "entropy": entropy(layer_logprobs),
            "jsd": jsd,
            "paper_jsd": paper_jsd,
            "topk_ids": top.indices,
            "topk_probs": top.values.exp(),
            "rival_logprobs": layer_logprobs[..., self.rival_ids],
            "rank": (layer_logprobs > chosen).sum(dim=-1),
            # [source layer, layer]: how every layer rates each layer's top-1 token.
            "top1_logprobs": layer_logprobs.gather(
                -1, top1[:, None, :].expand(-1, n_layers, -1)
            ).transpose(-1, -2),
            "final_jsd": final_jsd(layer_logprobs),
            "candidate_prob": candidate_probs(layer_logprobs),
        }
        if self.keep_features:
            values["features"] = self._features(resid).float()
        for name, value in values.items():
            # One copy per statistic: views would keep the whole [row x layer x vocab] alive.
            host = value.cpu().numpy()
            for position, row in enumerate(rows):
                self.rows[row].setdefault(name, []).append(host[position].copy())

    def _features(self, resid: Tensor) -> Tensor:
        """Raw residuals; with the paper lens, HF `hidden_states` (the last layer final-normed),
        which is what the paper's t-SNE embedded."""
        return hf_hidden_states(resid, self.final_norm) if self.lens == "paper" else resid

    def arrays(self, row: int = 0) -> dict[str, np.ndarray]:
        """Stack a batch row's steps: every array gets a leading `step` axis."""
        return {name: np.stack(values) for name, values in self.rows[row].items()}
