"""Canonical Huffman coding of integer symbol streams (Huffman 1952), the last stage of Deep
Compression (Han et al. 2016, §4: Huffman coding of the cluster indices and the index deltas).

A code is described by its code lengths alone: canonical codes assign, in order of (length,
symbol), consecutive binary numbers, so a decoder rebuilds the exact code from one byte per symbol
of the alphabet. Bits are packed most significant first. Code lengths are limited to
:data:`MAX_CODE_LENGTH` (frequencies are halved until the code fits, which only happens for
pathological, Fibonacci-like distributions) so that decoding is one table look-up per symbol.

Example:
    >>> code = HuffmanCode.from_frequencies([8, 4, 2, 1, 1])
    >>> code.lengths.tolist(), [format(c, f"0{n}b") for c, n in zip(code.codes, code.lengths)]
    ([1, 2, 3, 4, 4], ['0', '10', '110', '1110', '1111'])
    >>> data, n_bits = code.encode(np.array([0, 3, 1]))
    >>> code.decode(data, 3, n_bits).tolist()
    [0, 3, 1]
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slimkit.errors import DataError

MAX_CODE_LENGTH = 20
_CHUNK = 1 << 16  # decoding windows computed per chunk of bit positions


def huffman_code_lengths(frequencies: Sequence[int] | np.ndarray) -> np.ndarray:
    """Optimal (unrestricted) Huffman code length of each symbol; 0 for unused symbols.

    A lone used symbol gets length 1, so that every coded symbol costs at least one bit.
    """
    freq = np.asarray(frequencies, dtype=np.int64)
    lengths = np.zeros(len(freq), dtype=np.int64)
    used = np.flatnonzero(freq > 0)
    if len(used) == 1:
        lengths[used] = 1
    if len(used) <= 1:
        return lengths
    # heap of (weight, tie-break, symbols under this node); merging deepens every symbol by 1
    heap = [(int(freq[s]), int(s), [int(s)]) for s in used]
    heapq.heapify(heap)
    tie = len(freq)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        lengths[s1] += 1
        lengths[s2] += 1
        heapq.heappush(heap, (w1 + w2, tie, s1 + s2))
        tie += 1
    return lengths


def limited_code_lengths(
    frequencies: Sequence[int] | np.ndarray, max_length: int = MAX_CODE_LENGTH
) -> np.ndarray:
    """Huffman code lengths of at most ``max_length`` bits (halving frequencies until they fit)."""
    freq = np.asarray(frequencies, dtype=np.int64)
    if np.count_nonzero(freq) > 1 << max_length:
        raise DataError(
            f"{np.count_nonzero(freq)} symbols do not fit codes of {max_length} bits; "
            "use a smaller alphabet"
        )
    lengths = huffman_code_lengths(freq)
    while lengths.max(initial=0) > max_length:
        freq = np.where(freq > 0, np.maximum(freq >> 1, 1), 0)
        lengths = huffman_code_lengths(freq)
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical code of each symbol from its length (0 where the length is 0)."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, previous = 0, 0
    for symbol in sorted(np.flatnonzero(lengths > 0), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        codes[symbol] = code
        previous = int(lengths[symbol])
        code += 1
    return codes


def check_code_lengths(lengths: np.ndarray) -> None:
    """Raise :class:`DataError` unless ``lengths`` describe a prefix code (Kraft's inequality)."""
    if lengths.min(initial=0) < 0 or lengths.max(initial=0) > MAX_CODE_LENGTH:
        raise DataError(f"Huffman code lengths must lie in [0, {MAX_CODE_LENGTH}]")
    kraft = sum(2.0 ** -int(n) for n in lengths if n > 0)
    if kraft > 1.0:
        raise DataError(f"Huffman code lengths violate Kraft's inequality (sum {kraft} > 1)")


@dataclass(frozen=True, eq=False)
class HuffmanCode:
    """A canonical prefix code over the symbols ``0 .. len(lengths) - 1``.

    Attributes:
        lengths: code length per symbol (0: the symbol cannot be coded), int64.
        codes: canonical code per symbol, int64.
    """

    lengths: np.ndarray
    codes: np.ndarray

    @classmethod
    def from_lengths(cls, lengths: Sequence[int] | np.ndarray) -> HuffmanCode:
        """The canonical code with these lengths (as stored in a file)."""
        array = np.asarray(lengths, dtype=np.int64)
        check_code_lengths(array)
        return cls(array, canonical_codes(array))

    @classmethod
    def from_frequencies(cls, frequencies: Sequence[int] | np.ndarray) -> HuffmanCode:
        """The optimal length-limited code for these symbol counts."""
        return cls.from_lengths(limited_code_lengths(frequencies))

    @classmethod
    def for_symbols(cls, symbols: np.ndarray, alphabet_size: int) -> HuffmanCode:
        """The code fitted to a stream of symbols in ``[0, alphabet_size)``."""
        return cls.from_frequencies(np.bincount(symbols, minlength=alphabet_size))

    def cost(self, symbols: np.ndarray) -> int:
        """Bits needed to encode ``symbols``."""
        return int(self.lengths[symbols].sum())

    def encode(self, symbols: np.ndarray) -> tuple[bytes, int]:
        """Pack the codes of ``symbols`` (MSB first); returns ``(data, number of bits)``."""
        symbols = np.asarray(symbols, dtype=np.int64)
        n = self.lengths[symbols]
        if n.size and n.min() == 0:
            raise DataError("a symbol to encode has no code (its frequency was 0)")
        total = int(n.sum())
        starts = np.cumsum(n) - n
        offset = np.arange(total, dtype=np.int64) - np.repeat(starts, n)  # bit index within code
        shift = np.repeat(n, n) - 1 - offset
        bits = (np.repeat(self.codes[symbols], n) >> shift) & 1
        return np.packbits(bits.astype(np.uint8)).tobytes(), total

    def decode(self, data: bytes, count: int, n_bits: int) -> np.ndarray:
        """Decode ``count`` symbols from ``data`` holding ``n_bits`` coded bits.

        Raises:
            DataError: the bits do not decode to exactly ``count`` symbols in ``n_bits`` bits.
        """
        if n_bits > 8 * len(data) or n_bits < 0:
            raise DataError(f"Huffman stream holds {8 * len(data)} bits; {n_bits} were announced")
        if count > n_bits:  # every code is at least one bit long
            raise DataError(f"{n_bits} Huffman bits cannot hold {count} symbols")
        if count == 0:
            if n_bits:
                raise DataError("Huffman stream has bits but no symbols")
            return np.zeros(0, dtype=np.int64)
        width = int(self.lengths.max(initial=0))
        if width == 0:
            raise DataError("Huffman code has no symbols but the stream announces some")
        # look-up tables over every width-bit window: the symbol it starts with and its length
        table_symbol = np.zeros(1 << width, dtype=np.int64)
        table_length = np.zeros(1 << width, dtype=np.int64)
        for symbol in np.flatnonzero(self.lengths > 0):
            n, code = int(self.lengths[symbol]), int(self.codes[symbol])
            table_symbol[code << (width - n) : (code + 1) << (width - n)] = symbol
            table_length[code << (width - n) : (code + 1) << (width - n)] = n
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:n_bits].astype(np.int64)
        bits = np.concatenate([bits, np.zeros(width, dtype=np.int64)])
        symbols_of, lengths_of = table_symbol.tolist(), table_length.tolist()
        out = [0] * count
        position, chunk_start, chunk_stop, windows = 0, 0, 0, [0]
        for index in range(count):
            if position >= n_bits:
                raise DataError(f"Huffman stream ends after {index} of {count} symbols")
            if position >= chunk_stop:  # windows of the next chunk of bit positions
                chunk_start, chunk_stop = position, min(position + _CHUNK, n_bits)
                window = np.zeros(chunk_stop - position, dtype=np.int64)
                for j in range(width):
                    window = (window << 1) | bits[position + j : chunk_stop + j]
                windows = window.tolist()
            value = windows[position - chunk_start]
            length = lengths_of[value]
            if length == 0:
                raise DataError(f"Huffman stream holds an invalid code at bit {position}")
            out[index] = symbols_of[value]
            position += length
        if position != n_bits:
            raise DataError(f"Huffman stream decodes to {position} bits; {n_bits} were announced")
        return np.asarray(out, dtype=np.int64)
