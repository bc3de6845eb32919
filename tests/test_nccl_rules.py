"""NCCL's rules, held where gloo forgives them (STYLE 9c): every tensor handed to a collective is on the rank's device.

gloo all-reduces a CPU tensor; NCCL refuses it ("No backend type associated with device type cpu"), even with one
rank. Every distributed test here runs gloo, so none of them can see it: this test reads the code instead.

What it reads, found by glob so a new module, script or notebook is covered without editing this file: every module
under lib/ (the training programs included) and every code cell of every notebook, a `%%writefile x.py` cell as the
script it writes.

How: parse each source; find each call of a torch.distributed collective, and of any function that hands one of its
own parameters to one (`distributed.all_reduce_sum(t, ctx)`); follow each tensor argument back to where it was made
in the same scope (or the module's), through names, methods, indexing and arithmetic; fail when torch made it on
the CPU: a factory without `device=` (torch.tensor, zeros, ones, empty, full, arange, ...), torch.from_numpy,
`.cpu()`, `.to("cpu")`. A tensor whose origin cannot be read (a parameter, a function's result) is not judged.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field

import pytest
from conftest import ROOT

# torch.distributed's tensor collectives (the *_object ones pickle Python objects onto the current device themselves)
COLLECTIVES = {"all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
               "reduce_scatter_tensor", "reduce", "gather", "scatter", "send", "recv", "isend", "irecv",
               "all_to_all", "all_to_all_single"}
FACTORIES = {"tensor", "as_tensor", "asarray", "zeros", "ones", "empty", "full", "arange", "range", "linspace",
             "logspace", "eye", "rand", "randn", "randint", "randperm", "scalar_tensor", "empty_strided",
             "normal", "bernoulli", "tril_indices", "triu_indices"}  # on the CPU unless device= says otherwise
ALWAYS_CPU = {"from_numpy", "frombuffer", "from_file"}
LIKE = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like"}
COMBINE = {"stack", "cat", "concat", "concatenate", "hstack", "vstack", "dstack", "where", "maximum", "minimum"}
KEEP_DEVICE_ATTRS = {"grad", "data", "T", "mT", "real", "imag"}
DTYPES = {"float", "float16", "half", "bfloat16", "float32", "float64", "double", "int", "int8", "uint8", "int16",
          "int32", "int64", "long", "bool", "complex64", "complex128"}
NOT_TENSOR_ARGS = {"op", "group", "src", "dst", "async_op", "group_src", "group_dst", "tag"}
NOT_TENSOR_MODULES = {"np", "numpy", "math", "json", "os", "time", "functools", "operator"}


@dataclass
class Source:
    """One piece of Python: a module, a script a notebook writes, or a notebook's kernel cell."""

    name: str  # where a reader finds it: "lib/distrinews/x.py", "notebooks/10_x.ipynb cell 10 (overlap.py)"
    text: str
    first_line: int = 1  # the line of `name` that holds the text's line 1 (a %%writefile body starts on line 2)

    def where(self, line: int) -> str:
        if self.first_line == 1:
            return f"{self.name}, line {line}"
        return f"{self.name} line {line} (cell line {line + self.first_line - 1})"


def notebook_sources(path, rel=None) -> list[Source]:
    """Every code cell of a notebook as Python: a %%writefile x.py cell as x.py, any other through IPython's own
    transformation (`!cmd` becomes get_ipython().system(...), so a cell with shell lines still parses)."""
    from IPython.core.inputtransformer2 import TransformerManager

    rel = rel or path.relative_to(ROOT)
    sources = []
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        text = "".join(cell["source"])
        python = TransformerManager().transform_cell(text)
        if text.startswith("%%writefile"):
            call = ast.parse(python).body[0].value  # run_cell_magic('writefile', LINE, BODY)
            _, line, body = (ast.literal_eval(arg) for arg in call.args)
            name = line.split()[-1]
            if name.endswith(".py"):
                sources.append(Source(f"{rel} cell {i} ({name})", body, first_line=2))
        else:
            sources.append(Source(f"{rel} cell {i}", python))
    return sources


def course_sources() -> list[Source]:
    """The library's modules (the training programs among them) and every notebook's code, found by glob."""
    modules = [Source(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "lib").rglob("*.py"))]
    cells = [s for nb in sorted((ROOT / "notebooks").glob("*.ipynb")) for s in notebook_sources(nb)]
    return modules + cells


# -- the analysis ------------------------------------------------------------------------------------------------

@dataclass
class Verdict:
    kind: str  # "device": made on a device; "cpu": made on the CPU; "param": a parameter of the enclosing function
    node: ast.AST | None = None  # where it was made on the CPU
    param: tuple[str, int] | None = None  # the parameter's name and positional index (-1: keyword-only)


UNKNOWN = None


@dataclass
class Scope:
    node: ast.AST  # the module or function
    parent: Scope | None
    assigned: dict[str, list[tuple[int, ast.AST | None]]] = field(default_factory=dict)  # name -> (line, value)
    params: dict[str, int] = field(default_factory=dict)  # name -> positional index (self/cls not counted)


FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def own_nodes(scope_node):
    """The nodes of a module or function body, not descending into nested functions."""
    todo = list(ast.iter_child_nodes(scope_node))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, FUNCTIONS):
            todo.extend(ast.iter_child_nodes(node))


def bind(scope: Scope, target, value, line: int):
    """Record `target = value`; unpacking pairs elements where it can, else binds the names to an unknown value."""
    if isinstance(target, ast.Name):
        scope.assigned.setdefault(target.id, []).append((line, value))
    elif isinstance(target, (ast.Tuple, ast.List)):
        for i, element in enumerate(target.elts):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                bind(scope, element, value.elts[i], line)
            elif isinstance(value, (ast.GeneratorExp, ast.ListComp)):
                bind(scope, element, value.elt, line)
            else:
                bind(scope, element, None, line)
    elif isinstance(target, ast.Starred):
        bind(scope, target.value, None, line)


def build_scope(node, parent: Scope | None, in_class: bool = False) -> Scope:
    scope = Scope(node, parent)
    if isinstance(node, FUNCTIONS):
        names = [a.arg for a in node.args.posonlyargs + node.args.args]
        if in_class and names and names[0] in ("self", "cls"):
            names = names[1:]
        scope.params = {name: i for i, name in enumerate(names)}
        scope.params.update({a.arg: -1 for a in node.args.kwonlyargs})
    for sub in own_nodes(node):
        if isinstance(sub, ast.Assign):
            for target in sub.targets:
                bind(scope, target, sub.value, sub.lineno)
        elif isinstance(sub, (ast.AnnAssign, ast.NamedExpr)) and sub.value is not None:
            bind(scope, sub.target, sub.value, sub.lineno)
        elif isinstance(sub, (ast.For, ast.AsyncFor, ast.comprehension)):
            bind(scope, sub.target, None, getattr(sub, "lineno", getattr(sub.target, "lineno", 0)))
        elif isinstance(sub, ast.withitem) and sub.optional_vars is not None:
            bind(scope, sub.optional_vars, None, sub.optional_vars.lineno)
    return scope


class Analysis:
    """The collective calls of one source, each tensor argument judged by where it was made."""

    def __init__(self, source: Source, wrappers: dict[str, set]):
        self.source, self.wrappers = source, wrappers
        self.tree = ast.parse(source.text)
        self.dist_names, self.direct = {"dist"}, {}  # aliases of torch.distributed; names imported from it
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == "torch.distributed" and a.asname:
                        self.dist_names.add(a.asname)
            elif isinstance(node, ast.ImportFrom) and node.module == "torch":
                self.dist_names |= {a.asname or a.name for a in node.names if a.name == "distributed"}
            elif isinstance(node, ast.ImportFrom) and node.module == "torch.distributed":
                self.direct.update({a.asname or a.name: a.name for a in node.names if a.name in COLLECTIVES})
        self._scope_of: dict[ast.AST, Scope] = {}
        self._index(self.tree, None, False)

    def _index(self, node, parent, in_class):
        scope = build_scope(node, parent, in_class)
        todo = [(child, False) for child in ast.iter_child_nodes(node)]
        while todo:
            sub, sub_in_class = todo.pop()
            self._scope_of[sub] = scope
            if isinstance(sub, FUNCTIONS):
                self._index(sub, scope, sub_in_class)
            else:
                todo.extend((c, isinstance(sub, ast.ClassDef)) for c in ast.iter_child_nodes(sub))

    def text(self, node) -> str:
        return (ast.get_source_segment(self.source.text, node) or ast.unparse(node)).replace("\n", " ")

    # which calls hand tensors to a collective, and which of their arguments

    def is_dist(self, node) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.dist_names
        return (isinstance(node, ast.Attribute) and node.attr == "distributed" and isinstance(node.value, ast.Name)
                and node.value.id == "torch")

    def collective_arguments(self, call: ast.Call) -> list[ast.AST] | None:
        """The arguments of `call` that reach a collective as tensors, or None when it is no collective."""
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        real = ((isinstance(func, ast.Attribute) and func.attr in COLLECTIVES and self.is_dist(func.value))
                or (isinstance(func, ast.Name) and func.id in self.direct))
        if real:
            return list(call.args) + [k.value for k in call.keywords if k.arg not in NOT_TENSOR_ARGS]
        if name in self.wrappers:
            slots = self.wrappers[name]
            return ([a for i, a in enumerate(call.args) if i in slots]
                    + [k.value for k in call.keywords if k.arg in slots])
        return None

    def collective_calls(self):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and (args := self.collective_arguments(node)) is not None:
                yield node, args

    # where a tensor was made

    def lookup(self, name: str, scope: Scope, line: int, depth: int):
        while scope is not None:
            earlier = [(ln, v) for ln, v in scope.assigned.get(name, ()) if ln < line]
            if earlier:
                ln, value = max(earlier, key=lambda lv: lv[0])  # the binding in force at `line`
                return UNKNOWN if value is None else self.judge(value, scope, ln, depth + 1)
            if name in scope.params:
                return Verdict("param", param=(name, scope.params[name]))
            if scope.assigned.get(name):  # bound only later in this scope: a loop's next turn, or not yet
                return UNKNOWN
            scope, line = scope.parent, 10**9  # a global: its last binding in the module
        return UNKNOWN

    def judge(self, node, scope: Scope, line: int, depth: int = 0):
        """Where the tensor `node` evaluates to was made: Verdict("device"/"cpu"/"param"), or UNKNOWN."""
        if depth > 30:
            return UNKNOWN
        if isinstance(node, ast.Name):
            return self.lookup(node.id, scope, line, depth)
        if isinstance(node, ast.Call):
            return self.judge_call(node, scope, line, depth)
        if isinstance(node, ast.Attribute) and node.attr in KEEP_DEVICE_ATTRS:
            return self.judge(node.value, scope, line, depth + 1)
        if isinstance(node, (ast.Subscript, ast.Starred)):
            return self.judge(node.value, scope, line, depth + 1)
        if isinstance(node, ast.BinOp):
            return self.combine([node.left, node.right], scope, line, depth, arithmetic=True)
        if isinstance(node, ast.UnaryOp):
            return self.judge(node.operand, scope, line, depth + 1)
        if isinstance(node, ast.IfExp):
            return self.combine([node.body, node.orelse], scope, line, depth)
        if isinstance(node, (ast.List, ast.Tuple)):
            return self.combine(node.elts, scope, line, depth)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return self.judge(node.elt, self._scope_of.get(node, scope), line, depth + 1)
        return UNKNOWN

    def combine(self, nodes, scope, line, depth, arithmetic=False):
        """Several tensors: one on the CPU spoils a list; in arithmetic one on a device carries the result there
        (a CPU scalar tensor may join a GPU one), and a CPU tensor with a Python number stays on the CPU."""
        verdicts = [self.judge(n, scope, line, depth + 1) for n in nodes]
        kinds = {v.kind for v in verdicts if v is not None}
        if arithmetic and "device" in kinds:
            return Verdict("device")
        for v in verdicts:
            if v is not None and v.kind in ("cpu", "param"):
                return v
        return Verdict("device") if "device" in kinds else UNKNOWN

    def device_keyword(self, call: ast.Call):
        """Verdict of a `device=` keyword: "cpu" for a literal CPU device, else the rank's device; None if absent."""
        for k in call.keywords:
            if k.arg == "device":
                return Verdict("cpu", node=call) if names_cpu(k.value) else Verdict("device")
        return None

    def judge_call(self, call: ast.Call, scope, line, depth):
        func = call.func
        if not isinstance(func, ast.Attribute):
            return UNKNOWN
        if isinstance(func.value, ast.Name) and func.value.id == "torch":
            if func.attr in ALWAYS_CPU:
                return Verdict("cpu", node=call)
            if func.attr in FACTORIES:
                return self.device_keyword(call) or Verdict("cpu", node=call)
            if func.attr in LIKE:
                return self.device_keyword(call) or (self.judge(call.args[0], scope, line, depth + 1)
                                                     if call.args else UNKNOWN)
            if func.attr in COMBINE and call.args:
                return self.judge(call.args[0], scope, line, depth + 1)
            return UNKNOWN
        if isinstance(func.value, ast.Name) and (func.value.id in self.dist_names
                                                 or func.value.id in NOT_TENSOR_MODULES):
            return UNKNOWN
        if func.attr == "cpu":
            return Verdict("cpu", node=call)
        if func.attr == "cuda":
            return Verdict("device")
        if func.attr == "to":
            moved = self.device_keyword(call)
            if moved:
                return moved
            first = call.args[0] if call.args else None
            if first is None:
                return self.judge(func.value, scope, line, depth + 1)
            if names_cpu(first):
                return Verdict("cpu", node=call)
            is_dtype = (isinstance(first, ast.Attribute) and first.attr in DTYPES and isinstance(first.value, ast.Name)
                        and first.value.id == "torch")
            return self.judge(func.value, scope, line, depth + 1) if is_dtype else Verdict("device")
        return self.judge(func.value, scope, line, depth + 1)  # a tensor's method keeps its device

    # the findings

    def parameters_reaching_collectives(self) -> dict[str, set]:
        """{function name: positional indexes and names of its parameters that it hands to a collective}."""
        found: dict[str, set] = {}
        for call, args in self.collective_calls():
            scope = self._scope_of[call]
            if not isinstance(scope.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for arg in args:
                verdict = self.judge(arg, scope, call.lineno)
                if verdict is not None and verdict.kind == "param":
                    name, index = verdict.param
                    found.setdefault(scope.node.name, set()).update({name} | ({index} if index >= 0 else set()))
        return found

    def cpu_tensors(self) -> list[str]:
        """One line per tensor made on the CPU and handed to a collective: where, the call, and where it was made."""
        problems = []
        for call, args in self.collective_calls():
            for arg in args:
                verdict = self.judge(arg, self._scope_of[call], call.lineno)
                if verdict is not None and verdict.kind == "cpu":
                    made = verdict.node
                    problems.append(f"{self.source.where(call.lineno)}: `{self.text(call)}` gets `{self.text(arg)}`, "
                                    f"made on the CPU at line {made.lineno}: `{self.text(made)}`")
        return problems


def names_cpu(node) -> bool:
    """Whether a device expression is literally the CPU: "cpu", "cpu:0", torch.device("cpu")."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.startswith("cpu")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "device":
        return bool(node.args) and names_cpu(node.args[0])
    return False


def find_cpu_tensors_in_collectives(sources: list[Source]) -> list[str]:
    """Every collective fed a CPU tensor in `sources`; wrappers (a function handing its parameter to a collective,
    or to another wrapper) are found across all of them first, so a script's call of a library helper counts."""
    analyses = [Analysis(s, {}) for s in sources]
    wrappers: dict[str, set] = {}
    while True:
        for a in analyses:
            a.wrappers = wrappers
        found: dict[str, set] = {}
        for a in analyses:
            for name, slots in a.parameters_reaching_collectives().items():
                found.setdefault(name, set()).update(slots)
        if found == wrappers:
            break
        wrappers = found
    return [problem for a in analyses for problem in a.cpu_tensors()]


NCCL_REFUSES = ("NCCL refuses a CPU tensor (\"No backend type associated with device type cpu\"), even on one "
                "rank; make it on the rank's device (device=ctx.device) or move it there (.to(ctx.device)):\n")


# -- the tests -----------------------------------------------------------------------------------------------------

def test_every_collective_in_the_library_and_the_notebooks_gets_a_tensor_on_the_ranks_device():
    sources = course_sources()
    names = {s.name.split(" cell")[0] for s in sources}
    assert "lib/distrinews/train_ddp.py" in names and "notebooks/10_ddp_internals.ipynb" in names
    problems = find_cpu_tensors_in_collectives(sources)
    assert not problems, NCCL_REFUSES + "\n".join(problems)


def test_the_check_sees_the_collectives_it_must_judge():
    """Guards the check against going blind: it finds the known collectives, a library wrapper's included."""
    sources = course_sources()
    analyses = {s.name: Analysis(s, {"all_reduce_sum": {0, "tensor"}}) for s in sources}
    calls = {name: [an.text(call) for call, _ in an.collective_calls()] for name, an in analyses.items()}
    assert any("dist.all_reduce(sums)" in c for c in calls["lib/distrinews/train_ddp.py"])
    assert any("all_reduce_sum(totals, ctx)" in c for c in calls["lib/distrinews/bench_train.py"])
    overlap = next(name for name in calls if name.endswith("(overlap.py)"))
    assert any("all_reduce(step_ms" in c for c in calls[overlap])
    wrappers: dict[str, set] = {}
    for an in analyses.values():
        for name, slots in an.parameters_reaching_collectives().items():
            wrappers.setdefault(name, set()).update(slots)
    assert wrappers["all_reduce_sum"] == {0, "tensor"}  # distributed.all_reduce_sum(tensor, ctx)


def check(code: str) -> list[str]:
    return find_cpu_tensors_in_collectives([Source("snippet.py", code)])


BAD = {
    "a factory without device=": "import torch\nimport torch.distributed as dist\n"
                                 "step_ms = torch.tensor([1.0])\ndist.all_reduce(step_ms)\n",
    "torch.distributed spelled out, in a function": (
        "import torch\n\ndef f(x):\n    elapsed = torch.tensor([x])\n"
        "    torch.distributed.all_reduce(elapsed, op=torch.distributed.ReduceOp.MAX)\n"),
    "a factory inline": "import torch.distributed as dist\ndist.all_reduce(torch.zeros(4))\n",
    "moved back to the CPU": "import torch.distributed as dist\nt = torch.ones(2, device=d).cpu()\ndist.broadcast(t, 0)\n",
    "to('cpu')": "import torch.distributed as dist\nt = torch.ones(2, device=d).to('cpu')\ndist.broadcast(t, src=0)\n",
    "a literal CPU device": "from torch import distributed as D\nt = torch.zeros(2, device='cpu')\nD.all_reduce(t)\n",
    "from numpy": "import torch.distributed as dist\nt = torch.from_numpy(a)\ndist.all_reduce(t)\n",
    "a dtype is no device": "import torch.distributed as dist\nt = torch.zeros(2).to(torch.float64)\n"
                            "dist.all_reduce(t)\n",
    "arithmetic and methods keep the CPU": "import torch.distributed as dist\nw = torch.arange(3.0) * 2\n"
                                           "dist.all_reduce(w.float().clone()[0])\n",
    "a list for all_gather": "import torch.distributed as dist\nout = [torch.zeros(2) for _ in range(2)]\n"
                             "dist.all_gather(out, torch.ones(2, device=d))\n",
    "stacked CPU tensors": "import torch.distributed as dist\nt = torch.stack([torch.tensor(1.0), x])\n"
                           "dist.all_reduce(t)\n",
    "a global, from a function": "import torch.distributed as dist\nT = torch.zeros(3)\ndef f():\n"
                                 "    dist.all_reduce(T)\n",
    "a name imported from torch.distributed": "from torch.distributed import all_reduce\n"
                                              "all_reduce(torch.ones(1))\n",
    "through a helper that all-reduces its parameter": (
        "import torch.distributed as dist\ndef total(t, ctx):\n    dist.all_reduce(t)\n    return t\n"
        "def report(ctx):\n    n = torch.tensor([3.0])\n    return total(n, ctx)\n"),
    "through a helper of a helper, by keyword": (
        "import torch.distributed as dist\ndef a(tensor):\n    dist.all_reduce(tensor)\n"
        "def b(x, ctx):\n    a(tensor=x)\nb(torch.zeros(1), None)\n"),
}
GOOD = {
    "device=": "import torch.distributed as dist\nt = torch.tensor([1.0], device=ctx.device)\ndist.all_reduce(t)\n",
    "moved": "import torch.distributed as dist\nc = torch.zeros(4, dtype=torch.float64)\nt = c.to(ctx.device)\n"
             "dist.all_reduce(t)\n",
    "reassigned after a move": "import torch.distributed as dist\nt = torch.zeros(4)\nt = t.to(device)\n"
                               "dist.all_reduce(t)\n",
    ".cuda()": "import torch.distributed as dist\nt = torch.zeros(4).cuda()\ndist.all_reduce(t)\n",
    "like a device tensor": "import torch.distributed as dist\nx = torch.ones(2, device=d)\n"
                            "dist.all_reduce(torch.zeros_like(x))\n",
    "arithmetic with a device tensor": "import torch.distributed as dist\nw = torch.arange(3.0, device=d) + 100\n"
                                       "dist.broadcast(w, src=0)\n",
    "unknown origin": "import torch.distributed as dist\ng = model.weight.grad\ndist.all_reduce(g)\n",
    "objects": "import torch.distributed as dist\nout = [None] * 2\ndist.all_gather_object(out, {'a': 1})\n",
    "not torch.distributed": "import functools\nfunctools.reduce(f, torch.zeros(3))\nx.gather(torch.zeros(2))\n",
    "other scopes' names": "import torch.distributed as dist\nt = torch.zeros(1)\ndef f(t):\n    dist.all_reduce(t)\n"
                           "f(torch.ones(1, device=d))\n",
}


@pytest.mark.parametrize("case", BAD)
def test_the_check_fails_on_a_cpu_tensor_in_a_collective(case):
    problems = check(BAD[case])
    assert len(problems) == 1, problems
    assert problems[0].startswith("snippet.py, line ") and "made on the CPU at line" in problems[0]


@pytest.mark.parametrize("case", GOOD)
def test_the_check_accepts_tensors_on_the_ranks_device(case):
    assert check(GOOD[case]) == []


def test_a_failure_names_the_cell_the_script_line_and_the_expression(tmp_path):
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": "%%writefile bad.py\nimport torch\nimport torch.distributed as dist\n"
                      "step_ms = torch.tensor([1.0])\ndist.all_reduce(step_ms)\n"}
    kernel = {**cell, "source": "!torchrun bad.py\nimport torch.distributed as dist\ndist.all_reduce(torch.ones(1))"}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": "x"}, cell, kernel],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    problems = find_cpu_tensors_in_collectives(notebook_sources(path, rel="nb.ipynb"))
    assert problems == [
        "nb.ipynb cell 1 (bad.py) line 4 (cell line 5): `dist.all_reduce(step_ms)` gets `step_ms`, made on the CPU "
        "at line 3: `torch.tensor([1.0])`",
        "nb.ipynb cell 2, line 3: `dist.all_reduce(torch.ones(1))` gets `torch.ones(1)`, made on the CPU at line 3: "
        "`torch.ones(1)`"]
