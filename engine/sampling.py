"""Choosing the next token: greedy argmax, or seeded sampling with counter-based noise.

A row's random numbers are a pure function of (seed, sample index, step, token id): no torch.multinomial,
no global RNG, nothing that depends on the batch size or on the neighbouring rows. Sampling uses the
Gumbel-max trick: argmax(log p + Gumbel noise) is a draw from p. Because the noise of a (seed, sample, step)
is the same whatever the settings, two configurations with the same seed are "coupled": they pick the same
token whenever it is still the winner after their processors, so differences in a sweep come from the
parameters, not from the dice.
"""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2**32 for int64 tensors holding 32-bit values, with no int64 overflow.

    Splitting the constant into 16-bit halves keeps every product below 2**48, so the result is the same on
    every device and backend (signed int64 overflow would not be).
    """
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (Wellons' lowbias32) on int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_keys(seeds: torch.Tensor, sample_indices: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """One 32-bit key per row from (seed, sample index, step). seeds, sample_indices: [B] long, step: one for
    every row or [B] long (each row's own: rows that joined a running batch) -> [B] int32."""
    seeds = seeds.to(torch.long)
    key = hash32((seeds & _MASK32) ^ hash32((seeds >> 32) & _MASK32))
    key = hash32(key ^ (sample_indices.to(torch.long) & _MASK32))
    key = hash32(key ^ (step & _MASK32))
    return _as_int32(key)


def _as_int32(x: torch.Tensor) -> torch.Tensor:
    """32-bit values held in int64 -> the int32 tensor with the same bits."""
    return ((x ^ 0x80000000) - 0x80000000).to(torch.int32)


def hash32_int32(x: torch.Tensor) -> torch.Tensor:
    """hash32 on int32 tensors with native wrapping multiplies: the same bits, about 30x faster on [B, V].

    Arithmetic right shifts are masked to behave as logical ones. Tests check it equals `hash32`. It works in
    place on one copy with one scratch tensor rather than a fresh [B, V] temporary per operation (the speed-up
    was not measured reliably on a busy machine; the engine benchmark is the place to confirm it).
    """
    return _hash32_int32_(x.clone())


_ROUNDS = ((16, 0xFFFF, 0x7FEB352D), (15, 0x1FFFF, 0x846CA68B - (1 << 32)), (16, 0xFFFF, 1))  # (shift, mask, mul)


def _hash32_int32_(x: torch.Tensor, premixed: bool = False) -> torch.Tensor:
    """hash32_int32 in place on x (int32), which the caller owns: one pass fewer than copying it first.
    premixed: x already holds y ^ (y >>> 16) for the value y to hash (the first xor-shift done)."""
    shifted = torch.empty_like(x)
    for r, (shift, mask, multiplier) in enumerate(_ROUNDS):
        if not (premixed and r == 0):
            torch.bitwise_right_shift(x, shift, out=shifted)
            x ^= shifted.bitwise_and_(mask)
        if multiplier != 1:
            x *= multiplier
    return x


def _xorshift16(x: torch.Tensor) -> torch.Tensor:
    """x ^ (x >>> 16) on int32 (a logical shift: the arithmetic one, masked)."""
    return x ^ ((x >> 16) & 0xFFFF)


_TOKEN_HASHES: dict[tuple[int, torch.device], torch.Tensor] = {}
_TOKEN_PREMIXED: dict[tuple[int, torch.device], torch.Tensor] = {}


def _token_premixed(vocab_size: int, device: torch.device) -> torch.Tensor:
    """[V] int32: each token's hash h with the first xor-shift of hash32 applied, h ^ (h >>> 16), once per
    vocabulary. The shift distributes over xor, (k ^ h) >>> 16 == (k >>> 16) ^ (h >>> 16), so the first round of
    hash32(k ^ h) is _xorshift16(k) ^ _xorshift16(h): a [B] and a [V] part instead of three passes over [B, V]."""
    key = (vocab_size, device)
    if key not in _TOKEN_PREMIXED:
        _TOKEN_PREMIXED[key] = _xorshift16(_token_hashes(vocab_size, device))
    return _TOKEN_PREMIXED[key]


def _token_hashes(vocab_size: int, device: torch.device) -> torch.Tensor:
    """hash of every token id [V] int32, computed once per vocabulary and device."""
    key = (vocab_size, device)
    if key not in _TOKEN_HASHES:
        _TOKEN_HASHES[key] = _as_int32(hash32(torch.arange(vocab_size, device=device, dtype=torch.long) + 0x9E3779B9))
    return _TOKEN_HASHES[key]


def bits_to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """32-bit hashes (any integer dtype) -> float32 uniforms strictly inside (0, 1), from the top 23 bits.

    With k < 2**23, k + 0.5 needs 24 significant bits, which a float32 holds exactly, so u = (k + 0.5) / 2**23
    lies in [2**-24, 1 - 2**-24] with no rounding for any bit pattern: never 0, never 1, so the Gumbel noise
    -log(-log u) is always finite. (With 24 bits, 2**24 - 0.5 rounds up to 2**24: u = 1 and +inf noise, which
    made that token win whatever its probability; tests check all 2**24 patterns.)
    """
    # the same operations as (((bits >> 9) & 0x7FFFFF).float() + 0.5) * 2**-23, in place after the first two
    return ((bits >> 9).bitwise_and_(0x7FFFFF).to(torch.float32).add_(0.5)).mul_(1.0 / (1 << 23))


def uniform_noise(keys: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniform numbers in (0, 1), [B, V] float32, one per (row key, token id). keys: [B] int32."""
    # hash32_int32(keys[:, None] ^ token hashes), its first xor-shift done on the [B] and [V] parts apart
    mixed = _xorshift16(keys)[:, None] ^ _token_premixed(vocab_size, keys.device)[None, :]  # [B, V] int32, fresh
    return bits_to_uniform(_hash32_int32_(mixed, premixed=True))  # [B, V]


def gumbel_noise(keys: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Standard Gumbel noise [B, V]: -log(-log(u))."""
    return _log_neg_log(uniform_noise(keys, vocab_size)).neg_()


def _log_neg_log(u: torch.Tensor) -> torch.Tensor:
    """log(-log(u)) in place on u [B, V]: minus the Gumbel noise (subtracting it adds the noise, bit for bit, since
    a - b is a + (-b) in IEEE arithmetic, and saves the negation pass)."""
    return u.log_().neg_().log_()


XTC_STREAM = 0x58544331  # "XTC1": the stream of XTC's per-row, per-step decision


def row_uniform(keys: torch.Tensor, stream: int) -> torch.Tensor:
    """One uniform number in (0, 1) per row, [B] float64, from the row keys [B] on a stream of its own.

    The stream constant is hashed together with the key (two rounds), so these numbers are not a simple
    function of the per-token noise (hash(key ^ hash(token id))) and do not correlate with the token draw.
    """
    bits = hash32(hash32((keys.to(torch.long) & _MASK32) ^ (stream & _MASK32)) ^ 0x632BE5AB)
    return (((bits >> 8) & 0xFFFFFF).to(torch.float64) + 0.5) * (1.0 / (1 << 24))


def choose_next(scores: torch.Tensor, greedy: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Next token per row. scores: [B, V] final (processed) logits; greedy: [B] bool; keys: [B] -> [B] long.

    Sampled rows take argmax(scores + Gumbel): the softmax of the scores is the distribution sampled from
    (temperature is already inside the scores as a processor). A token whose score is -inf (or NaN) is never
    chosen, by either path, whatever the noise; a row with nothing left is the caller's to handle.
    """
    any_greedy, all_greedy = torch.stack([greedy.any(), greedy.all()]).tolist()  # one transfer
    if any_greedy:  # (a batch with no greedy row skips this argmax: the where below would drop it anyway)
        chosen = _removed_stay_removed(scores.clone()).argmax(dim=-1)
        if all_greedy:
            return chosen
    sampled = _gumbel_max(scores, keys)
    return torch.where(greedy, chosen, sampled) if any_greedy else sampled


def _gumbel_max(scores: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """argmax(scores + Gumbel noise) per row, removed (-inf) and NaN tokens never chosen: scores [B, V] -> [B] long.

    A row whose truncations left few tokens (top_p 0.5 keeps tens of 49k) draws noise for those tokens only: the
    noise of a (row key, token) pair is computed element by element (integer hashing, exact conversions, log),
    so it has the same bits wherever it is computed, and the first of the largest perturbed scores is the token
    argmax over the whole row picks (tests/test_step_shortcuts.py checks it bit for bit)."""
    left = torch.count_nonzero(scores != float("-inf"), dim=-1)  # [B] tokens not removed (NaN counted: see below)
    sparse = left <= _SPARSE_MOST  # [B]
    if not bool(sparse.any()):
        return _gumbel_max_dense(scores, keys)
    if bool(sparse.all()):
        return _gumbel_max_sparse(scores, keys, int(left.max()))
    dense_rows, sparse_rows = (~sparse).nonzero()[:, 0], sparse.nonzero()[:, 0]
    out = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
    out[dense_rows] = _gumbel_max_dense(scores[dense_rows], keys[dense_rows])
    out[sparse_rows] = _gumbel_max_sparse(scores[sparse_rows], keys[sparse_rows], int(left[sparse_rows].max()))
    return out


_SPARSE_MOST = 1024  # a row with at most this many tokens left draws noise for those only


def _gumbel_max_dense(scores: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Every token's noise: scores [B, V] -> [B] long."""
    # 1. perturb every score with the row's Gumbel noise (finite for every bit pattern): scores - (-noise)
    perturbed = torch.sub(scores, _log_neg_log(uniform_noise(keys, scores.shape[1])))  # [B, V]
    # 2. a removed token stays removed whatever its noise: -inf plus finite noise is -inf, and a NaN is made -inf
    # after adding, so no NaN can reach argmax (which would take it for the largest)
    return _removed_stay_removed(perturbed).argmax(dim=-1)


def _gumbel_max_sparse(scores: torch.Tensor, keys: torch.Tensor, most: int) -> torch.Tensor:
    """The noise of the tokens left only: scores [b, V] with at most `most` entries per row that are not -inf
    -> [b] long (0 for a row with none left, as argmax over a row of -inf gives).

    topk(most) holds every entry that is not -inf (NaN sorts as the largest, so a NaN cannot push out a token
    left); the NaN among them are then dropped like the -inf fillers."""
    values, tokens = scores.topk(max(1, most), dim=-1, sorted=False)  # [b, k]
    mixed = _xorshift16(keys)[:, None] ^ _token_premixed(scores.shape[1], keys.device)[tokens]  # [b, k] int32, fresh
    perturbed = torch.sub(values, _log_neg_log(bits_to_uniform(_hash32_int32_(mixed, premixed=True))))  # [b, k]
    perturbed = _removed_stay_removed(perturbed)
    best = perturbed.amax(dim=-1, keepdim=True)  # [b, 1]
    # argmax over the whole row takes the first (lowest token id) of equal maxima; a row with nothing left: 0
    first = torch.where(perturbed == best, tokens, scores.shape[1]).amin(dim=-1)  # [b]
    return torch.where((first == scores.shape[1]) | (best[:, 0] == float("-inf")), 0, first)


def _removed_stay_removed(scores: torch.Tensor) -> torch.Tensor:
    """In place: NaN -> -inf, every other value as it is (one pass: what masking the tokens that are not > -inf
    with -inf does)."""
    return scores.nan_to_num_(nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
