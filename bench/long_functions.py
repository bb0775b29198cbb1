"""The longest functions and methods of the package, by line count (issue 13 evidence).

A function's length is its source span, ``def`` line to last line, docstring and comments included
(what a reader scrolls through); a nested function counts inside its parent and on its own. Reads the
source with `ast` (imports nothing of the package):

    python bench/long_functions.py                  # the ten longest
    python bench/long_functions.py --most 20
    python bench/long_functions.py --package /tmp/wt_before/platform/videopolicy   # another checkout's tree
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "videopolicy"


def functions(package: Path) -> list[tuple[int, str]]:
    """(lines, 'path:line qualified.name') for every function in the package."""
    out = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)

        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    name = f"{prefix}{child.name}"
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    out.append((child.end_lineno - first + 1, f"{rel}:{child.lineno} {name}"))
                    walk(child, f"{name}.")
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")
                else:
                    walk(child, prefix)

        walk(ast.parse(path.read_text(), filename=str(path)), "")
    return sorted(out, key=lambda t: (-t[0], t[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--most", type=int, default=10, help="how many to list (default 10)")
    parser.add_argument("--package", type=Path, default=PACKAGE, help="the videopolicy folder to read")
    args = parser.parse_args(argv)
    found = functions(args.package.resolve())
    print(f"functions {len(found)}, over 50 lines {sum(n > 50 for n, _ in found)}")
    for n, where in found[: args.most]:
        print(f"  {n:4d}  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
