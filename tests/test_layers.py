"""The layers of the package, read from every file's syntax tree (imports inside functions count):
scoring is a leaf, nothing below the evaluations imports them, only dist.py knows about ranks, data
acquisition is reached from the command line alone, and there is no import circle anywhere."""
from __future__ import annotations

import ast

from conftest import REPO
from test_download import cycles_through, import_graph

SRC = REPO / "src" / "alit"


def test_scoring_is_a_leaf():
    graph = import_graph()
    assert graph["alit.scoring"] == set()
    users = {m for m, edges in graph.items() if "alit.scoring" in edges}
    assert {"alit.criteria.rules", "alit.eval.sweep", "alit.tokens.job", "alit.train.pixels"} <= users


def test_criteria_train_and_tokens_do_not_import_the_evaluations():
    graph = import_graph()
    below = [m for m in graph if m.split(".")[1:2] in (["criteria"], ["train"], ["tokens"])]
    assert below and {m: sorted(e for e in graph[m] if e.startswith("alit.eval")) for m in below} == \
        {m: [] for m in below}


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert {m: cycles_through(graph, m) for m in graph if cycles_through(graph, m)} == {}


def test_only_dist_knows_about_ranks():
    users = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "torch.distributed" or n.startswith("torch.distributed.") for n in names):
                users.append(path.relative_to(SRC).as_posix())
    assert users == ["dist.py"]


def test_data_acquisition_is_reached_from_the_command_line_only():
    graph = import_graph()
    users = {m for m, edges in graph.items() if any(e.startswith("alit.data.acquire") for e in edges)}
    assert all(m.startswith(("alit.cli", "alit.data.acquire")) for m in users), users
