"""RobNet architecture codes without torch: parsing, the canonical text, the published codes and the
statistics the search filters by (a sweep definition imports this, and ``sweep.py --list`` stays light).

A cell is 14 two-bit edge codes: ``00`` zero, ``01`` 3x3 separable conv, ``10`` identity, ``11`` both.
Node i (0..3) reads ``[c_{k-2}, c_{k-1}, n_0, ..., n_{i-1}]``; the codes list node 0's 2 edges, then node
1's 3, node 2's 4 and node 3's 5 (the published order).

Statistics (averaged over the cells of a cell-free code):

- density D: ones over bit slots (RobNet-large 22/28);
- separable convs per cell, the computational budget (RobNet-large 13);
- direct-conv portion: of the 4 *direct* edges, the chain c_{k-1} -> n_0 -> n_1 -> n_2 -> n_3 (each
  node's edge from the state just before it), the fraction that carry a conv (RobNet-large 3 of 4).
  The supplement filters on "a portion of direct convolutions larger than 0.5" without defining it;
  read as convs among all convs it could not exceed 4/13 for RobNet-large, whose own code passes the
  filter, so it is read as the portion of direct edges with a conv.
"""

from __future__ import annotations

from collections.abc import Sequence

from tune_robust.errors import ConfigError

EDGES = 14
NODES = 4
CODES = ("00", "01", "10", "11")
# The published codes (robnet_codes.json): RobNet-large (v1 and v2 share it) and RobNet-free's 20.
LARGE = "11 11 11 11 11 01 11 01 10 11 01 01 01 11"
FREE = (
    "11 10 11 11 10 11 01 01 10 11 11 00 11 01/11 00 01 10 01 00 10 10 00 01 11 10 11 00/"
    "11 11 11 01 01 11 01 00 10 00 10 10 00 11/10 11 10 01 01 10 10 01 10 11 00 00 01 10/"
    "11 11 01 00 10 10 10 01 10 01 00 10 01 11/11 10 11 11 11 01 10 11 00 10 01 11 01 11/"
    "11 11 11 10 10 01 11 10 01 10 10 10 01 10/01 11 11 11 01 11 11 11 01 11 01 11 10 00/"
    "11 11 11 11 11 01 01 11 10 01 00 10 01 11/10 11 01 00 11 11 10 11 01 11 11 11 11 00/"
    "11 10 11 00 00 00 11 00 01 10 00 01 10 11/01 11 01 11 11 10 10 11 10 11 01 11 10 00/"
    "11 11 10 10 01 00 10 11 11 01 10 10 00 01/01 11 11 11 01 01 11 01 01 11 11 01 10 10/"
    "01 11 11 11 11 01 00 01 10 10 11 10 10 11/11 11 00 11 11 01 00 01 10 00 11 01 11 11/"
    "11 11 01 11 11 10 11 10 10 10 10 10 11 11/10 11 01 11 11 01 11 00 11 11 00 10 00 01/"
    "11 10 11 11 11 11 11 10 11 00 11 01 11 11/11 11 01 01 11 11 01 00 00 10 00 01 01 11"
)

Cell = tuple[str, ...]


def parse_code(text: str) -> tuple[Cell, ...]:
    """Cells from ``"11 01 ... 10/11 ..."`` (cells separated by ``/``; the 14 codes of a cell by spaces,
    commas or nothing: ``"1101..."`` with 28 bits works too)."""
    cells = []
    for i, part in enumerate(str(text).split("/")):
        bits = "".join(ch for ch in part if ch not in " ,-[]'\"")
        if len(bits) != 2 * EDGES or set(bits) - {"0", "1"}:
            raise ConfigError(
                f"robnet code, cell {i}: expected {EDGES} two-bit edge codes (00 zero, 01 sep conv, 10 "
                f"identity, 11 both), got {part.strip()!r}"
            )
        cells.append(tuple(bits[j : j + 2] for j in range(0, 2 * EDGES, 2)))
    return tuple(cells)


def format_code(cells: Sequence[Sequence[str]]) -> str:
    """The canonical text of a code (what ``model.code`` holds and ``parse_code`` reads)."""
    return "/".join(" ".join(cell) for cell in cells)


def edge_inputs() -> list[int]:
    """For each of the 14 edges, the state it reads (0 = c_{k-2}, 1 = c_{k-1}, 2 + i = node i)."""
    return [j for i in range(NODES) for j in range(2 + i)]


# Edge index of each node's direct edge: from the state just before it (c_{k-1} for node 0, node i-1
# for node i), i.e. the chain c_{k-1} -> n_0 -> n_1 -> n_2 -> n_3.
DIRECT_EDGES = tuple(offset + 1 + i for i, offset in enumerate((0, 2, 5, 9)))


def arch_stats(arch: Sequence[Sequence[str]]) -> dict[str, float]:
    """Density D (ones / bit slots), separable convs per cell (the computational budget) and the
    portion of direct edges that carry a conv, averaged over the cells."""
    cells = [tuple(c) for c in arch]
    ones = sum(code.count("1") for cell in cells for code in cell)
    convs = [sum(code[1] == "1" for code in cell) for cell in cells]
    direct = [sum(cell[e][1] == "1" for e in DIRECT_EDGES) / len(DIRECT_EDGES) for cell in cells]
    return {
        "arch_density": ones / (2 * EDGES * len(cells)),
        "arch_sep_convs": sum(convs) / len(cells),
        "arch_direct_conv_portion": sum(direct) / len(cells),
    }
