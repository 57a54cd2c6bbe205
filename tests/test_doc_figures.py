"""Every results file the docs cite exists, and every marked figure matches its results file.

The convention (bench/README.md, "Figures in the docs"): a figure block, an HTML comment placed before the text that
quotes the numbers, names a results file and lists quoted text with the value it comes from:

    <!-- figures bench/results/neighbor_list_threads1.json
    "[[38]]x wall ([[19]]x CPU)" = {summary.speedup_vs_get_all_neighbors_wall.median}; {summary.speedup_vs_get_all_neighbors_cpu.median}
    "COV-R [[84.3]] %" = {bench/results/other.json:metrics.cov_recall} * 100
    -->

- The quoted text must occur in the doc between the block and the next heading (with the [[ ]] marks removed;
  runs of white space, line breaks included, count as one space).
- Each [[number]] (or the only number of a text without marks) is compared with its expression, ``;``-separated
  and in order: ``{path}`` is a value of the block's file (``a.b.0.c``: keys and list indices), ``{file:path}``
  one of another file; ``+ - * /``, parentheses and numbers combine them; ``{a.*.b}`` is the list of ``b`` over
  the list (or object values) ``a``, reduced by ``max``, ``min``, ``len``, ``sum`` or ``median``.
- Rounding: the number must equal the value rounded to the decimals shown (|value - shown| <= half a unit of the
  last digit shown); thousands separators are ignored.
"""

from __future__ import annotations

import ast
import itertools
import json
import operator
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md", ROOT / "bench" / "README.md", *ROOT.glob("plugins/*/README.md")])

BLOCK = re.compile(r"<!-- figures (\S+)\n(.*?)\n-->", re.S)
LINE = re.compile(r'^"(.*)"\s*=\s*(.+)$')
NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
MARKED = re.compile(r"\[\[(.*?)\]\]")
PLACE = re.compile(r"\{([^{}]+)\}")
CITED = re.compile(r"bench/results/[A-Za-z0-9_{},.-]*?\.json")
HEADING = re.compile(r"^#{1,6} ", re.M)
FUNCTIONS = {"max": max, "min": min, "len": len, "sum": sum, "median": statistics.median}
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def expand_braces(path: str) -> list[str]:
    """``a_{x,y}_b{,_c}.json`` -> the four names, as the shell would expand them."""
    parts = re.split(r"(\{[^{}]*\})", path)
    options = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(choice) for choice in itertools.product(*options)]


def cited_files(text: str) -> set[str]:
    """Results files a doc names, brace patterns expanded; names with a placeholder (DATASET, TAG) are templates."""
    found = set()
    for match in CITED.findall(text):
        for name in expand_braces(match):
            if not re.search(r"[A-Z]{2,}", name):
                found.add(name)
    return found


def lookup(data: object, path: str, where: str, full: str = "") -> float | list[float]:
    """The number at ``path`` (keys and list indices joined by dots); a ``*`` segment maps over a list (or the
    values of an object)."""
    full = full or path
    head, _, rest = path.partition(".")
    if isinstance(data, dict) and head not in data:  # a key with dots in it (``0.002``): the longest that is one
        segments = path.split(".")
        for n in range(len(segments), 1, -1):
            if ".".join(segments[:n]) in data:
                head, rest = ".".join(segments[:n]), ".".join(segments[n:])
                break
    if head == "*":
        if not isinstance(data, (list, dict)):
            raise AssertionError(f"{where}: '*' applied to {type(data).__name__}, not a list or object")
        items = data if isinstance(data, list) else list(data.values())
        return [lookup(item, rest, where, full) if rest else _number(item, full, where) for item in items]  # type: ignore[misc]
    try:
        value = data[int(head)] if isinstance(data, list) else data[head]  # type: ignore[index]
    except (KeyError, IndexError, ValueError, TypeError):
        raise AssertionError(f"{where}: no {full!r} in the results file (failed at {head!r})") from None
    return lookup(value, rest, where, full) if rest else _number(value, full, where)


def _number(value: object, path: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AssertionError(f"{where}: {path!r} is {value!r}, not a number")
    return float(value)


def evaluate(expression: str, default_file: str, where: str) -> float:
    """The value of one expression: ``{path}`` / ``{file:path}`` placeholders combined by + - * /."""
    values: list[float | list[float]] = []

    def substitute(match: re.Match[str]) -> str:
        file, _, path = match.group(1).rpartition(":")
        source = ROOT / (file or default_file)
        if not source.exists():
            raise AssertionError(f"{where}: results file {file or default_file} does not exist")
        values.append(lookup(json.loads(source.read_text()), path, f"{where} ({file or default_file})"))
        return f"__v{len(values) - 1}"

    tree = ast.parse(PLACE.sub(substitute, expression), mode="eval")

    def walk(node: ast.AST) -> float | list[float]:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            if len(node.args) != 1 or not isinstance(argument := walk(node.args[0]), list):
                raise AssertionError(f"{where}: {node.func.id}() takes one list ({{path.*.key}})")
            return FUNCTIONS[node.func.id](argument)
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](scalar(node.left), scalar(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -scalar(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id.startswith("__v"):
            return values[int(node.id[3:])]
        raise AssertionError(f"{where}: {expression!r}: only numbers, {{paths}}, + - * / and {sorted(FUNCTIONS)}")

    def scalar(node: ast.AST) -> float:
        value = walk(node)
        if isinstance(value, list):
            raise AssertionError(f"{where}: {expression!r}: a list ({{path.*}}) needs one of {sorted(FUNCTIONS)}")
        return value

    return scalar(tree)


def shown_numbers(quoted: str, where: str) -> list[str]:
    marked = MARKED.findall(quoted)
    if marked:
        for number in marked:
            if not NUMBER.fullmatch(number):
                raise AssertionError(f"{where}: [[{number}]] is not a number")
        return marked
    found = NUMBER.findall(quoted)
    if len(found) != 1:
        raise AssertionError(f"{where}: {quoted!r} holds {len(found)} numbers; mark the checked ones with [[ ]]")
    return found


def matches(shown: str, value: float) -> bool:
    text = shown.replace(",", "")
    mantissa = text.split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(text.split("e")[1]) if "e" in text else 0
    half_unit = 0.5 * 10.0 ** (exponent - decimals)
    return abs(value - float(text)) <= half_unit * (1 + 1e-9)


def check_doc(path: Path) -> list[str]:
    """Problems of one doc: missing results files and figures that do not match their files."""
    text = path.read_text()
    name = path.relative_to(ROOT)
    problems = [f"{name}: cites {cited}, which does not exist" for cited in sorted(cited_files(text))
                if not (ROOT / cited).exists()]
    for block in BLOCK.finditer(text):
        default_file = block.group(1)
        end = HEADING.search(text, block.end())
        section = text[block.end(): end.start() if end else len(text)]
        lines = [line for line in block.group(2).splitlines() if line.strip()]
        if not lines:
            problems.append(f"{name}: empty figures block for {default_file}")
        for line in lines:
            where = f"{name}, figure {line.split('=')[0].strip()}"
            parsed = LINE.match(line.strip())
            try:
                if parsed is None:
                    raise AssertionError(f"{name}: figure line {line!r} is not '\"TEXT\" = EXPR; EXPR ...'")
                quoted, expressions = parsed.group(1), [e.strip() for e in parsed.group(2).split(";")]
                if " ".join(MARKED.sub(r"\1", quoted).split()) not in " ".join(section.split()):
                    raise AssertionError(f"{where}: text not found between the block and the next heading")
                numbers = shown_numbers(quoted, where)
                if len(numbers) != len(expressions):
                    raise AssertionError(f"{where}: {len(numbers)} numbers but {len(expressions)} expressions")
                for shown, expression in zip(numbers, expressions, strict=True):
                    value = evaluate(expression, default_file, where)
                    if not matches(shown, value):
                        raise AssertionError(f"{where}: shows {shown}, the results file gives {value:.6g} ({expression})")
            except AssertionError as problem:
                problems.append(str(problem))
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_figures_match_their_results_files(doc: Path) -> None:
    problems = check_doc(doc)
    assert not problems, "\n".join(problems)


def test_benchmarks_doc_marks_its_figures() -> None:
    assert len(BLOCK.findall((ROOT / "docs" / "benchmarks.md").read_text())) >= 10


def test_checker_catches_a_wrong_number_a_missing_file_and_missing_text(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "r.json").write_text(json.dumps({"a": {"b": [0.8437, 1175.6]}, "n": 27136}))
    doc = tmp_path / "doc.md"

    def problems(body: str) -> list[str]:
        doc.write_text(body)
        return check_doc(doc)

    good = ('<!-- figures bench/results/r.json\n"COV-R [[84.4]] % in [[1,176]] s" = {a.b.0} * 100; {a.b.1}\n'
            '"[[2.4]]x the data" = {n} / 11249\n-->\nCOV-R 84.4 % in 1,176 s, 2.4x the data.\n')
    assert problems(good) == []
    assert "shows 84.3" in problems(good.replace("84.4", "84.3"))[0]
    assert "shows 5" in problems(good.replace("2.4]]x", "5]]x").replace("2.4x", "5x"))[0]
    assert "text not found" in problems(good.replace("in 1,176 s,", "in 1,176 s\n## Next\n"))[0]
    assert "does not exist" in problems(good + "See bench/results/{r,gone}.json.\n")[0]
    assert "no 'a.c'" in problems(good.replace("{a.b.1}", "{a.c}"))[0]
    assert problems(good.replace("[[1,176]] s\" = {a.b.0} * 100; {a.b.1}", "[[1,176]] s\" = {a.b.0} * 100; max({a.b.*})")) == []
    assert "needs one of" in problems(good.replace("{n} / 11249", "{a.b.*} / 11249"))[0]


def test_a_key_with_dots_is_found_as_it_is_written() -> None:
    data = {"runs": {"0.002": {"valid": 0.98}, "0.006": {"valid": 1.0}}}
    assert lookup(data, "runs.0.002.valid", "test") == 0.98
    assert lookup(data, "runs.0.006.valid", "test") == 1.0
