"""The reduction tree: ensemble means and variances, bitwise independent of the chunking.

Ensemble means and sample variances over members are accumulated as ``(count, mean, M2)``
triples combined by Chan's pairwise update along ONE fixed binary tree on the member indices
``0 .. members-1`` (the segment tree of ``[0, 2^L)``; empty subtrees are the identity).  Every
node's value depends only on its leaves, never on who computed it: a chunk computes the nodes of
its maximal aligned dyadic blocks (``chunk_nodes``), and ``TreeSweep`` merges sibling nodes in
member order as chunks arrive.  The same floating-point operations on the same operands happen
whatever the chunking, the number of workers or the completion order, so the reductions are
bitwise reproducible, and only ``O(log members)`` tree nodes (plus chunks that finished out of
order) are in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = [
    "STATS",
    "Node",
    "Stats",
    "TreeSweep",
    "chunk_nodes",
    "combine",
    "dyadic_blocks",
    "finish",
]

#: The three statistics of a tree node, in the order they are stored (``<name>_partial``).
STATS = ("count", "mean", "m2")

Stats = tuple[np.ndarray, np.ndarray, np.ndarray]  # count, mean, M2 (same shapes)
Node = tuple[int, int, Stats]  # level j, index k (covers [k 2^j, (k+1) 2^j)), stats


def combine(a: Stats, b: Stats) -> Stats:
    """Chan's update of ``(count, mean, M2)`` for the union of ``a`` (left) and ``b`` (right).

    An empty side (count 0) is the exact identity, so empty subtrees never change a value.

    Parameters
    ----------
    a, b : tuple of numpy.ndarray
        ``(count, mean, M2)`` of the left and the right subtree (same shapes).

    Returns
    -------
    tuple of numpy.ndarray
        ``(count, mean, M2)`` of their union.
    """
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = mb - ma
        mean = ma + delta * (nb / n)
        m2 = sa + sb + (delta * delta) * (na * nb / n)
    left, right = na > 0, nb > 0
    both = left & right
    mean = np.where(both, mean, np.where(left, ma, mb))
    m2 = np.where(both, m2, np.where(left, sa, sb))
    return n, mean, m2


def _leaves(values: np.ndarray, use: np.ndarray) -> Stats:
    """One leaf per member: ``(1, x, 0)`` where ``x`` is finite and the member used, else empty."""
    valid = np.isfinite(values) & use.reshape(use.shape + (1,) * (values.ndim - 1))
    count = valid.astype(np.float64)
    return count, np.where(valid, values, 0.0), np.zeros_like(count)


def dyadic_blocks(start: int, stop: int) -> list[tuple[int, int]]:
    """The maximal aligned dyadic blocks covering ``[start, stop)``, in order.

    Parameters
    ----------
    start, stop : int
        Member indices, ``0 <= start <= stop``.

    Returns
    -------
    list of tuple of int
        ``(level, index)`` pairs: the block covers ``[index 2^level, (index + 1) 2^level)``.
    """
    out = []
    while start < stop:
        level = (stop - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        out.append((level, start >> level))
        start += 1 << level
    return out


def chunk_nodes(values: np.ndarray, use: np.ndarray, first: int) -> list[Node]:
    """Tree nodes of the members ``first .. first+len(values)-1`` (pairwise, level by level).

    Parameters
    ----------
    values : numpy.ndarray
        One row per member (any trailing shape); non-finite values are left out.
    use : numpy.ndarray
        Bool per member: False leaves the whole member out (a failed member).
    first : int
        Index of the first member.

    Returns
    -------
    list of Node
        ``(level, index, (count, mean, M2))`` of the chunk's maximal dyadic blocks, in order.
    """
    count, mean, m2 = _leaves(values, use)
    nodes = []
    for level, index in dyadic_blocks(first, first + len(values)):
        block = slice((index << level) - first, ((index + 1) << level) - first)
        stats: Stats = (count[block], mean[block], m2[block])
        while stats[0].shape[0] > 1:
            stats = combine(
                tuple(s[0::2] for s in stats),  # type: ignore[arg-type]
                tuple(s[1::2] for s in stats),  # type: ignore[arg-type]
            )
        nodes.append((level, index, tuple(np.ascontiguousarray(s[0]) for s in stats)))
    return nodes  # type: ignore[return-value]


class TreeSweep:
    """Merges the chunks' tree nodes in member order; chunks may arrive in any order.

    Parameters
    ----------
    n_chunks : int
        Number of chunks of the run.
    load : callable or None, default None
        ``load(chunk)`` reads the nodes of a chunk stored earlier (``add_stored``).
    """

    def __init__(self, n_chunks: int, load: Callable[[int], list[Node]] | None = None) -> None:
        self.n_chunks = n_chunks
        self.next = 0
        self.ready: dict[int, list[Node]] = {}
        self.stored: set[int] = set()
        self.load = load
        self.stack: list[Node] = []

    def add(self, chunk: int, nodes: list[Node]) -> None:
        """The nodes of a chunk just computed."""
        self.ready[chunk] = nodes
        self._advance()

    def add_stored(self, chunks: Iterable[int]) -> None:
        """Chunks whose nodes are on disk: read when the sweep reaches them."""
        self.stored.update(chunks)
        self._advance()

    def _advance(self) -> None:
        while self.next < self.n_chunks:
            if self.next in self.ready:
                nodes = self.ready.pop(self.next)
            elif self.next in self.stored and self.load is not None:
                nodes = self.load(self.next)
            else:
                return
            for node in nodes:
                self._push(node)
            self.next += 1

    def _push(self, node: Node) -> None:
        level, index, stats = node
        while self.stack and index % 2 == 1:
            top_level, top_index, top_stats = self.stack[-1]
            if top_level != level or top_index != index - 1:
                break
            self.stack.pop()
            stats = combine(top_stats, stats)
            level, index = level + 1, index // 2
        self.stack.append((level, index, stats))

    def result(self) -> Stats:
        """The root of the tree (right-to-left fold of the remaining maximal blocks).

        Returns
        -------
        tuple of numpy.ndarray
            ``(count, mean, M2)`` over all members.

        Raises
        ------
        RuntimeError
            If a chunk has not been added yet.
        """
        if self.next < self.n_chunks or not self.stack:
            raise RuntimeError("the reduction tree is incomplete")
        acc = self.stack[-1][2]
        for _, _, stats in reversed(self.stack[:-1]):
            acc = combine(stats, acc)
        return acc

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, sample variance (ddof=1), count)`` of the root; NaN where there are too few
        members.

        Returns
        -------
        tuple of numpy.ndarray
            Mean, variance (float64) and count (int64).
        """
        return finish(self.result())


def finish(stats: Stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, sample variance (ddof=1), count)``; NaN where there are too few members.

    Parameters
    ----------
    stats : tuple of numpy.ndarray
        ``(count, mean, M2)``.

    Returns
    -------
    tuple of numpy.ndarray
        Mean, variance (float64) and count (int64).
    """
    count, mean, m2 = stats
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(count > 1, m2 / (count - 1.0), np.nan)
    return np.where(count > 0, mean, np.nan), var, count.astype(np.int64)
