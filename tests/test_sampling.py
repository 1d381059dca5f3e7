"""Counter-based sampling: portable hashing, correct distribution, randomness independent of the batch."""
import torch

from engine.sampling import _as_int32, choose_next, hash32, hash32_int32, row_keys, uniform_noise


def test_fast_int32_hash_equals_the_overflow_free_reference() -> None:
    x = torch.randint(0, 2**32, (10_000,), dtype=torch.long)
    x[:4] = torch.tensor([0, 1, 2**31, 2**32 - 1])
    assert torch.equal(hash32_int32(_as_int32(x)), _as_int32(hash32(x)))


def test_noise_is_uniform_and_strictly_inside_0_1() -> None:
    u = uniform_noise(row_keys(torch.arange(64), torch.zeros(64, dtype=torch.long), 0), 4096)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.std()) - 0.2887) < 0.01


def test_gumbel_max_samples_the_softmax_distribution() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 40_000
    keys = row_keys(torch.arange(n), torch.zeros(n, dtype=torch.long), 3)
    chosen = choose_next(probs.log().expand(n, -1), torch.zeros(n, dtype=torch.bool), keys)
    freq = torch.bincount(chosen, minlength=4).float() / n
    assert torch.allclose(freq, probs, atol=0.01), freq


def test_a_rows_randomness_depends_only_on_seed_sample_and_step() -> None:
    seeds, samples = torch.tensor([5, 9, 5, 5]), torch.tensor([0, 0, 1, 0])
    keys = row_keys(seeds, samples, step=7)
    assert keys[0] == keys[3] and len({int(k) for k in keys[:3]}) == 3
    alone = row_keys(torch.tensor([5]), torch.tensor([1]), step=7)
    assert torch.equal(uniform_noise(alone, 100)[0], uniform_noise(keys, 100)[2])
    assert not torch.equal(row_keys(seeds, samples, 7), row_keys(seeds, samples, 8))


def test_greedy_rows_take_the_argmax() -> None:
    scores = torch.tensor([[0.0, 5.0, 1.0], [3.0, 2.0, 1.0]])
    keys = row_keys(torch.tensor([1, 2]), torch.tensor([0, 0]), 0)
    assert choose_next(scores, torch.tensor([True, True]), keys).tolist() == [1, 0]
