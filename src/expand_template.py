"""Expand a kernel template ``name.pyx.tp`` into Cython source (run by src/meson.build).

Usage::

    python expand_template.py TEMPLATE OUTPUT [OUTPUT ...]

Every OUTPUT receives the same text (a SIMD build needs its own file name, because
Cython names the module's init function after the file). The templates use
``Cython.Tempita`` syntax; the names below are shared by all of them, so that a pattern
that fused types cannot express is written once here and not once per kernel.
"""

from __future__ import annotations

import sys
from pathlib import Path

from Cython.Tempita import Template

#: Factor widths that get a literal-k specialization: the compiler then unrolls the
#: length-k loops and keeps the per-row arrays in registers (src/meson.build forces the
#: inlining that this needs).
LITERAL_K = range(1, 17)

#: The vector-type families of the hand-written SIMD loops: (suffix, scalar C type,
#: Cython name of the 256-bit vector type, lanes per vector).
VECTOR_TYPES = [("d", "double", "vd", "VW_D"), ("f", "float", "vf", "VW_F")]


def dispatch_k(call: str, *, local: str | None = None, large: str | None = None,
               indent: int = 4) -> str:
    """The if/elif ladder that calls a kernel with k as a literal for k in LITERAL_K.

    Parameters
    ----------
    call : str
        The call, with ``{k}`` where the width goes (a literal in each branch).
    local : str, optional
        The call for the remaining k <= KMAX (run-time k, per-row arrays still local).
        Defaults to ``call`` with the run-time ``k``.
    large : str, optional
        The call for k > KMAX; without it the ``local`` call covers every other k.
    indent : int
        Columns of the ladder's ``if`` in the template (the first line is placed by the
        template itself).

    Returns
    -------
    str
        Cython source of the ladder.
    """
    pad = " " * indent
    lines = []
    for i, k in enumerate(LITERAL_K):
        lines.append(f"{'if' if i == 0 else 'elif'} k == {k}:")
        lines.append(f"    {call.format(k=k)}")
    rest = local if local is not None else call.format(k="k")
    if large is None:
        lines += ["else:", f"    {rest}"]
    else:
        lines += ["elif k <= KMAX:", f"    {rest}", "else:", f"    {large}"]
    return ("\n" + pad).join(lines)


NAMESPACE = {"LITERAL_K": LITERAL_K, "VECTOR_TYPES": VECTOR_TYPES, "dispatch_k": dispatch_k}


def expand(template: Path) -> str:
    """The Cython source of ``template``, headed by a do-not-edit line."""
    text = Template(template.read_text(), name=template.name, namespace=NAMESPACE)
    head = f"# Generated from src/{template.name} by src/expand_template.py: do not edit.\n"
    return head + text.substitute()


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    source = expand(Path(argv[1]))
    for out in argv[2:]:
        Path(out).write_text(source)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
