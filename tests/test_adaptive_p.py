"""Adaptive-P (engine/samplers.py `adaptive_p`) against text-generation-webui's AdaptivePLogitsWarper, which
follows llama.cpp PR #17927: its transform on random logits with random per-row targets, decays and histories,
its moving average over a generation, and its state through the batch, replays and branches."""
from __future__ import annotations

import random

import pytest
import torch

from engine.generate import Engine
from engine.errors import ParamError
from engine.order import DEFAULT_ORDER
from engine.params import SamplingParams
from engine.rowstate import DecodeState
from assertions import assert_same_scores
from synthetic import B, PROMPT_LEN, V, pipeline
from synthetic import random_logits, random_tokens


class WebuiAdaptiveP:
    """text-generation-webui modules/sampler_hijack.py AdaptivePLogitsWarper, as written there, for one row;
    its own multinomial draw is left out: `transform` gives the logits it draws from, `update` takes the
    probability (at its input) of the token that was chosen."""

    DISTRIBUTION_WIDTH, PEAK_LOGIT_VALUE, SHARPNESS = 0.3, 5.0, 10.0
    INV_WIDTH = 1.0 / DISTRIBUTION_WIDTH

    def __init__(self, adaptive_target: float, adaptive_decay: float):
        self.target = adaptive_target
        self.decay = min(adaptive_decay, 0.99)
        self.weighted_sum = self.target / (1.0 - self.decay)
        self.total_weight = 1.0 / (1.0 - self.decay)

    def transform(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.softmax(logits, dim=-1)
        ema_avg = self.weighted_sum / self.total_weight if self.total_weight > 0 else self.target
        adapted_target = max(0.0, min(1.0, 2.0 * self.target - ema_avg))
        dist = torch.abs((probs - adapted_target) * self.INV_WIDTH)
        new_logits = self.PEAK_LOGIT_VALUE - self.SHARPNESS * dist * dist / (1.0 + dist)
        return torch.where(torch.isfinite(logits), new_logits, logits), probs

    def update(self, original_prob: float) -> None:
        self.weighted_sum = original_prob + self.decay * self.weighted_sum
        self.total_weight = 1.0 + self.decay * self.total_weight


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("generated", [0, 1, 9])
def test_adaptive_p_matches_text_generation_webui(seed: int, generated: int) -> None:
    rng = random.Random(seed * 100 + generated)
    logits = random_logits(seed, few_left_row=True)  # [B, V], some rows with -inf already
    tokens = random_tokens(seed, PROMPT_LEN + generated, 12)
    history = torch.rand(B, generated, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    values = [None if row in (5, 7) or rng.random() < 0.1 else
              (rng.choice([0.05, 0.3, 0.5, 0.9, 1.0]), rng.choice([0.0, 0.5, 0.9, 0.99])) for row in range(B)]
    params = [SamplingParams(adaptive_target=v[0], adaptive_decay=v[1]) if v else SamplingParams() for v in values]
    state = DecodeState.start(tokens[:, :PROMPT_LEN], V, tokens[:, PROMPT_LEN:], None, history)
    out = pipeline(params, logits, state)
    for row, value in enumerate(values):
        if value is None:
            assert torch.equal(out[row], logits[row]), f"disabled row {row} changed"
            continue
        reference = WebuiAdaptiveP(*value)
        for p in history[row].tolist():
            reference.update(p)
        assert_same_scores(out[row], reference.transform(logits[row])[0], f"row {row}, {value}")


def test_the_moving_average_follows_a_generation_and_its_replays(tiny) -> None:
    """A generation on the tiny model: at every step the row's adaptive stage equals the reference fed the
    same input distribution and the same choices, the recorded feedback is the chosen token's input
    probability, a replay rebuilds the state exactly, and a row alone equals the row in the batch."""
    engine = Engine(tiny)
    prompt = engine.encode("Once upon a time")
    params = [SamplingParams(adaptive_target=0.4, adaptive_decay=0.7, min_p=0.02, max_new_tokens=10, seed=4),
              SamplingParams(temperature=0.7, max_new_tokens=5, seed=1),  # leaves early: the batch shrinks
              SamplingParams(adaptive_target=0.9, adaptive_decay=0.0, top_k=20, max_new_tokens=10, seed=9)]
    result = engine.generate(prompt, params, [0, 0, 3])
    assert result.rows[1].adaptive_probs is None
    stage = 1 + params[0].order.index("adaptive_p")
    for row in (0, 2):
        out, reference = result.rows[row], WebuiAdaptiveP(params[row].adaptive_target, params[row].adaptive_decay)
        for step, token in enumerate(out.token_ids):
            replay = engine.replay(result, row, step)
            before = replay.probs[stage - 1]
            shaped, probs = reference.transform(torch.where(before > 0, before.log(), float("-inf")))
            torch.testing.assert_close(replay.probs[stage], shaped.softmax(-1), atol=1e-6, rtol=1e-4)
            assert out.adaptive_probs[step] == pytest.approx(float(before[token]), rel=1e-5)
            assert replay.chosen == token and replay.probs[-1][token] > 0
            reference.update(out.adaptive_probs[step])
        alone = engine.generate(prompt, [params[row]], [result.sample_indices[row]]).rows[0]
        assert alone.token_ids == out.token_ids  # (the logits of another batch size differ in the last bits)
        assert alone.adaptive_probs == pytest.approx(out.adaptive_probs, rel=1e-4, abs=1e-9)
        branched = engine.generate(prompt, [params[row]], [result.sample_indices[row]], forced=[out.token_ids[:4]])
        assert branched.rows[0].token_ids == out.token_ids  # forcing its own tokens: the same feedback


def test_adaptive_p_is_the_last_sampler_and_its_values_are_checked() -> None:
    assert DEFAULT_ORDER.index("adaptive_p") > DEFAULT_ORDER.index("mirostat")
    assert DEFAULT_ORDER[-1] == "renormalize"
    with pytest.raises(ParamError, match="^adaptive_decay: .*0.99"):
        SamplingParams(adaptive_target=0.5, adaptive_decay=0.995)  # text-generation-webui would clamp it silently
    with pytest.raises(ParamError, match="^adaptive_target: "):
        SamplingParams(adaptive_target=1.5)
    assert not SamplingParams(adaptive_target=0.5, do_sample=False).without_transformers_equivalent()
    assert "adaptive_target" in SamplingParams(adaptive_target=0.5).without_transformers_equivalent()
