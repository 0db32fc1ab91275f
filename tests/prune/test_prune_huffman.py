"""Canonical Huffman coding: exact codes, optimality against brute force, round trips, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from slimkit.errors import DataError
from slimkit.techniques.prune.huffman import (
    MAX_CODE_LENGTH,
    HuffmanCode,
    huffman_code_lengths,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_known_distribution_gets_the_textbook_canonical_code() -> None:
    code = HuffmanCode.from_frequencies([8, 4, 2, 1, 1])
    assert code.lengths.tolist() == [1, 2, 3, 4, 4]
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(code.codes, code.lengths, strict=True)]
    assert words == ["0", "10", "110", "1110", "1111"]
    # dyadic probabilities: the mean code length equals the entropy exactly
    p = np.array([8, 4, 2, 1, 1]) / 16
    assert float((p * code.lengths).sum()) == pytest.approx(float(-(p * np.log2(p)).sum()))


def test_canonical_codes_are_prefix_free_and_ordered() -> None:
    rng = np.random.default_rng(1)
    code = HuffmanCode.from_frequencies(rng.integers(0, 50, size=40))
    words = sorted(
        (int(n), s, format(int(code.codes[s]), f"0{int(n)}b"))
        for s, n in enumerate(code.lengths)
        if n > 0
    )
    for (_, _, a), (_, _, b) in itertools.combinations(words, 2):
        assert not b.startswith(a) and not a.startswith(b)
    values = [int(w, 2) << (MAX_CODE_LENGTH - len(w)) for _, _, w in words]
    assert values == sorted(values)  # canonical: consecutive in (length, symbol) order


def _brute_force_cost(frequencies: list[int]) -> int:
    """The cheapest prefix code, by trying every vector of code lengths (Kraft's inequality)."""
    n = len(frequencies)
    best = math.inf
    for lengths in itertools.product(range(1, n), repeat=n):
        if sum(2.0**-k for k in lengths) <= 1.0:
            best = min(best, sum(f * k for f, k in zip(frequencies, lengths, strict=True)))
    return int(best)


@pytest.mark.parametrize("seed", range(12))
def test_huffman_is_optimal_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frequencies = rng.integers(1, 100, size=int(rng.integers(2, 7))).tolist()
    lengths = huffman_code_lengths(frequencies)
    cost = int(sum(f * k for f, k in zip(frequencies, lengths.tolist(), strict=True)))
    assert cost == _brute_force_cost(frequencies)


@pytest.mark.parametrize(
    "symbols",
    [
        np.random.default_rng(0).geometric(0.3, size=5000).clip(max=31) - 1,
        np.random.default_rng(1).integers(0, 64, size=3000),
        np.zeros(17, dtype=np.int64),  # one symbol: one bit each
        np.array([5, 5, 0, 31]),
        np.zeros(0, dtype=np.int64),
    ],
    ids=["geometric", "uniform", "single", "sparse-alphabet", "empty"],
)
def test_round_trip(symbols: np.ndarray) -> None:
    code = HuffmanCode.for_symbols(symbols, 64)
    data, n_bits = code.encode(symbols)
    assert n_bits == code.cost(symbols) and len(data) == math.ceil(n_bits / 8)
    assert code.decode(data, len(symbols), n_bits).tolist() == symbols.tolist()
    # the decoder needs nothing but the code lengths
    rebuilt = HuffmanCode.from_lengths(code.lengths)
    assert rebuilt.decode(data, len(symbols), n_bits).tolist() == symbols.tolist()


def test_lengths_are_limited_for_fibonacci_frequencies() -> None:
    frequencies = [1, 1]
    while len(frequencies) < 30:
        frequencies.append(frequencies[-1] + frequencies[-2])
    assert huffman_code_lengths(frequencies).max() == 29  # unrestricted: one level per symbol
    code = HuffmanCode.from_frequencies(frequencies)
    assert code.lengths.max() <= MAX_CODE_LENGTH
    assert sum(2.0 ** -int(n) for n in code.lengths) <= 1.0
    symbols = np.arange(30).repeat(3)
    data, n_bits = code.encode(symbols)
    assert code.decode(data, len(symbols), n_bits).tolist() == symbols.tolist()


def test_corrupt_streams_raise_data_errors() -> None:
    code = HuffmanCode.from_frequencies([8, 4, 2, 1, 1])
    symbols = np.array([0, 1, 2, 3, 4, 4, 3])
    data, n_bits = code.encode(symbols)
    with pytest.raises(DataError, match="ends after"):
        code.decode(data, len(symbols) + 5, n_bits)
    with pytest.raises(DataError, match="cannot hold"):
        code.decode(data, 10**12, n_bits)
    with pytest.raises(DataError, match="bits; 400 were announced"):
        code.decode(data, len(symbols), 400)
    with pytest.raises(DataError, match="Kraft"):
        HuffmanCode.from_lengths([1, 1, 1])
    incomplete = HuffmanCode.from_lengths([1, 0])  # only the code "0" exists
    with pytest.raises(DataError, match="invalid code"):
        incomplete.decode(b"\xff", 1, 8)
    with pytest.raises(DataError, match="has no code"):
        incomplete.encode(np.array([1]))
