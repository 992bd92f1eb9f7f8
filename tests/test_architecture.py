"""The package's structure, checked from the source with `ast` (nothing is imported).

* `monitor/core` is pure logic: it never imports `monitor.io` or `monitor.app`, at any
  level, not even inside a function.
* No import cycle among the modules of `monitor` (module-level imports, the ones that run
  when a module is imported; ``if TYPE_CHECKING:`` blocks do not run).
* Every use of a private paho attribute (``client._sock``, ``mqtt.Client._handle_publish``,
  an override of a private paho method, ``hasattr(client, "_userdata")``) is on an explicit
  allow-list: the fast path in `monitor/io/mqtt_fast.py` relies on paho internals on purpose
  (verified versions, a fallback), and a new dependency on them must not slip in unnoticed.

Each checker also runs on small made-up sources below, so that it is shown to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "monitor"


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(package: Path = PACKAGE, root: Path = ROOT) -> dict[str, tuple[Path, ast.Module]]:
    """module name -> (file, parsed source) for every module of the package."""
    return {
        _module_name(p, root): (p, ast.parse(p.read_text(), filename=str(p))) for p in sorted(package.rglob("*.py"))
    }


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name an ``ImportFrom`` names (relative ones resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str] | None) -> list[str]:
    """Modules an import statement names (``from pkg import mod`` is pkg.mod, where mod is
    one of the `known` modules; every name counts as a possible module when `known` is None)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    target = _absolute(module, is_package, node)
    subs = [f"{target}.{a.name}" for a in node.names if known is None or f"{target}.{a.name}" in known]
    return [target, *subs]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not in functions, not under TYPE_CHECKING."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for stmt in child.orelse:
                yield from _module_level_imports(ast.Module(body=[stmt], type_ignores=[]))
        else:
            yield from _module_level_imports(child)


# --------------------------------------------------------------------------- layers


FORBIDDEN_FOR_CORE = ("monitor.io", "monitor.app")


def _dynamic_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``importlib.import_module("x")`` / ``__import__("x")`` with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def layer_violations(sources: dict[str, tuple[Path, ast.Module]], layer: str = "monitor.core") -> list[str]:
    """Every import, at any depth of a module under `layer`, of monitor.io or monitor.app."""
    found = []
    for module, (path, tree) in sources.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        is_package = path.name == "__init__.py"
        statements = [
            (node.lineno, _imported(module, is_package, node, None))
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
        ]
        statements += [(line, [name]) for line, name in _dynamic_imports(tree)]
        for line, targets in statements:
            bad = [t for t in targets if any(t == f or t.startswith(f + ".") for f in FORBIDDEN_FOR_CORE)]
            if bad:  # one finding per statement: the first forbidden module it names
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found.append(f"{where}:{line} imports {bad[0]}")
    return found


def test_core_never_imports_io_or_app():
    assert layer_violations(_sources()) == []


def test_the_layer_check_finds_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = tmp_path / "monitor"
    (pkg / "core" / "stream").mkdir(parents=True)
    (pkg / "io").mkdir()
    for init in (pkg, pkg / "core", pkg / "core" / "stream", pkg / "io"):
        (init / "__init__.py").write_text("")
    (pkg / "io" / "codec.py").write_text("")
    (pkg / "core" / "ok.py").write_text("from monitor.core import stream\n")
    (pkg / "core" / "lazy.py").write_text("def f():\n    from monitor.io.codec import Codec\n")
    (pkg / "core" / "stream" / "rel.py").write_text("from ...io import codec\n")
    (pkg / "core" / "pkg_attr.py").write_text(
        "from monitor import app\nimport importlib\nimportlib.import_module('monitor.io')\n"
    )
    found = layer_violations(_sources(pkg, tmp_path))
    assert [f.rsplit(" imports ", 1)[1] for f in sorted(found)] == [
        "monitor.io.codec",  # lazy.py, inside a function
        "monitor.app",  # pkg_attr.py: `from monitor import app` names the package monitor.app
        "monitor.io",  # pkg_attr.py, importlib
        "monitor.io",  # rel.py: from ...io import codec
    ]


# --------------------------------------------------------------------------- cycles


def import_graph(sources: dict[str, tuple[Path, ast.Module]]) -> dict[str, set[str]]:
    """module -> the package modules its module-level imports load (parent packages included)."""
    known = set(sources)
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, (path, tree) in sources.items():
        is_package = path.name == "__init__.py"
        for node in _module_level_imports(tree):
            for target in _imported(module, is_package, node, known):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
                    name = ".".join(parts[:i])
                    if name in known and name != module and not module.startswith(name + "."):
                        graph[module].add(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def test_no_import_cycle_among_monitor_modules():
    graph = import_graph(_sources())
    assert len(graph) > 40 and graph["monitor.app.service"] >= {"monitor.io.mqtt", "monitor.core.pipeline"}
    assert find_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_but_not_a_lazy_or_type_checking_import(tmp_path):
    pkg = tmp_path / "monitor"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from monitor import b\n")
    (pkg / "b.py").write_text("from monitor.c import x\n")
    (pkg / "c.py").write_text("import monitor.a\nx = 1\n")
    (pkg / "d.py").write_text("def f():\n    from monitor import e\n")
    (pkg / "e.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from monitor import d\nelse:\n    import json\n"
    )
    graph = import_graph(_sources(pkg, tmp_path))
    assert find_cycles(graph) == [["monitor.a", "monitor.b", "monitor.c"]]
    assert graph["monitor.d"] == set() and graph["monitor.e"] == set()


# --------------------------------------------------------------------------- paho internals


def _paho_private_names() -> set[str]:
    """The private attributes of the installed paho Client: class level and per instance."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    return {n for n in set(dir(mqtt.Client)) | set(vars(client)) if _private(n)}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _chain(node: ast.expr) -> tuple[ast.expr, list[str]]:
    """``a.b.c`` -> (the Name a, ["b", "c"]); the base is whatever is under the attributes."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return node, attrs[::-1]


class _PahoScan(ast.NodeVisitor):
    """Private paho attributes used in one module.

    A paho object is: a name bound by ``import paho...`` / ``from paho... import``, and what
    is reached from it (``mqtt.Client``); ``self`` in a class derived from a paho class (or
    mixed into one); a parameter or variable annotated with a paho type or a class derived
    from one; what is assigned from calling those (or a function annotated to return one);
    and, by the module's own convention, any name ``client`` in a module that imports paho.
    Names that the module's own paho-derived classes define and paho does not (our own
    state on a subclass) are not paho's. Entries: "_attr" (a chain of private attributes
    is one entry, "_a._b"), "override Class._method", or a dynamic getattr as written.
    """

    def __init__(self, tree: ast.Module, paho_private: set[str]):
        self.paho_private = paho_private
        self.modules: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                self.modules |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("paho.")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("paho."):
                self.modules |= {a.asname or a.name for a in node.names}
        classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        self.paho_classes: set[str] = set()
        changed = True
        while changed:  # derived from paho, from a paho-derived class, or mixed into one
            changed = False
            for name, cls in classes.items():
                bases = [b for b in cls.bases if self._is_paho_type(b)]
                mixins = {b.id for b in cls.bases if isinstance(b, ast.Name) and b.id in classes}
                new = ({name} if bases else set()) | (mixins if bases else set())
                if not new <= self.paho_classes:
                    self.paho_classes |= new
                    changed = True
        self.ours: set[str] = set()
        for name in self.paho_classes:
            for stmt in classes[name].body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.ours.add(stmt.name)
                elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    self.ours.add(stmt.target.id)
                elif isinstance(stmt, ast.Assign):
                    self.ours |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        self.ours -= paho_private
        self.returns_paho = {
            n.name
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns and self._is_paho_type(n.returns)
        }
        self.receivers: set[str] = {"client"} if self.modules else set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                self.receivers |= {a.arg for a in args if a.annotation is not None and self._is_paho_type(a.annotation)}
            elif isinstance(node, ast.Assign) and self._makes_paho(node.value):
                self.receivers |= {ast.unparse(t) for t in node.targets}
            elif isinstance(node, ast.AnnAssign) and (
                self._is_paho_type(node.annotation) or (node.value is not None and self._makes_paho(node.value))
            ):
                self.receivers.add(ast.unparse(node.target))
        self.found: set[str] = set()
        self._class: list[str] = []
        self._inner: set[int] = set()

    def _is_paho_type(self, expr: ast.expr) -> bool:
        for node in ast.walk(expr):
            if isinstance(node, ast.Name) and (node.id in self.modules or node.id in self.paho_classes):
                return True
            if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
                try:
                    if self._is_paho_type(ast.parse(node.value, mode="eval").body):
                        return True
                except SyntaxError:
                    pass
        return False

    def _makes_paho(self, value: ast.expr) -> bool:
        if isinstance(value, ast.IfExp):
            return self._makes_paho(value.body) or self._makes_paho(value.orelse)
        if not isinstance(value, ast.Call):
            return False
        base, attrs = _chain(value.func)
        name = attrs[-1] if attrs else getattr(base, "id", "")
        return name in self.returns_paho or name in self.paho_classes or self._is_paho_type(value.func)

    def _receiver_length(self, base: ast.expr, attrs: list[str]) -> int | None:
        """How many of `attrs` belong to the paho object the chain starts from (None: none)."""
        if not isinstance(base, ast.Name):
            return None
        for k in range(len(attrs) + 1):
            prefix = ".".join([base.id, *attrs[:k]])
            if prefix in self.receivers or (k == 0 and base.id in self.modules):
                return k
            if k == 0 and base.id == "self" and self._class and self._class[-1] in self.paho_classes:
                return 0
        return None

    def _record(self, attrs: list[str]) -> None:
        private = [i for i, a in enumerate(attrs) if _private(a)]
        if not private or attrs[private[0]] in self.ours:  # none, or our own state on a subclass
            return
        self.found.add(".".join(attrs[private[0] : private[-1] + 1]))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if node.name in self.paho_classes:
            for stmt in node.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in self.paho_private:
                    self.found.add(f"override {node.name}.{stmt.name}")
        self._class.append(node.name)
        self.generic_visit(node)
        self._class.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if id(node) not in self._inner:  # only the outermost attribute of a chain
            base, attrs = _chain(node)
            inner = node.value
            while isinstance(inner, ast.Attribute):
                self._inner.add(id(inner))
                inner = inner.value
            k = self._receiver_length(base, attrs)
            if k is not None:
                self._record(attrs[k:])
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
        ):
            base, attrs = _chain(node.args[0])
            k = self._receiver_length(base, attrs)
            if k is not None:
                name = node.args[1]
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    self._record([*attrs[k:], name.value])
                else:
                    self.found.add(ast.unparse(node))
        self.generic_visit(node)


def paho_private_uses(sources: dict[str, tuple[Path, ast.Module]], root: Path = ROOT) -> set[tuple[str, str]]:
    paho_private = _paho_private_names()
    scans = [(path, tree, _PahoScan(tree, paho_private)) for path, tree in sources.values()]
    # our own state on our paho subclasses is ours in every module (mqtt.py sets the
    # attributes of the classes that monitor/io/mqtt_fast.py defines)
    ours = set().union(*(scan.ours for _, _, scan in scans))
    found = set()
    for path, tree, scan in scans:
        scan.ours |= ours
        scan.visit(tree)
        found |= {(path.relative_to(root).as_posix(), entry) for entry in scan.found}
    return found


#: The fast MQTT path's dependencies on paho internals (`_FastClient` in its fenced module
#: monitor/io/mqtt_fast.py). A new entry means a new dependency on paho internals: add it to
#: `_fast_publish_supported` / `_fast_client_ok` (checked on the installed paho, with the
#: plain-paho fallback) first.
PAHO_PRIVATE_ALLOWED = {
    ("monitor/io/mqtt_fast.py", entry)
    for entry in (
        # _BufferedRead / _FastClient: read, hand over and acknowledge packets as paho does
        "override _BufferedRead._packet_read",
        "override _GatedClient._packet_read",  # backpressure: no read while the hand-off is full
        "override _FastClient._handle_publish",
        "_packet_read",
        "_handle_publish",
        "_sock",
        "_sock_recv",
        "_easy_log",
        "_msgtime_mutex",
        "_last_bytes_received",
        "_in_packet",
        "_packet_handle",
        "_send_puback",
        "_packet_queue",
        "_on_message",
        "_on_log",
        "_on_message_filtered._root._children",
        "_logger",
        "_protocol",
        "_in_callback_mutex",
        "_userdata",
        "_manual_ack",
        "_out_packet",
        # _fast_publish_supported: the signatures of the private methods above
        "getattr(mqtt.Client, name)",
    )
} | {
    # MQTTIngest._on_message: the raw topic bytes of a message whose topic is not UTF-8
    ("monitor/io/mqtt.py", "_topic"),
}


def test_private_paho_attributes_are_used_only_where_allowed():
    found = paho_private_uses(_sources())
    assert found - PAHO_PRIVATE_ALLOWED == set(), "new use of paho internals: see PAHO_PRIVATE_ALLOWED"
    assert PAHO_PRIVATE_ALLOWED - found == set(), "no longer used: remove from PAHO_PRIVATE_ALLOWED"


def test_the_paho_scan_sees_clients_subclasses_and_the_module(tmp_path):
    pkg = tmp_path / "monitor"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "import paho.mqtt.client as mqtt\n"
        "from paho.mqtt.client import Client as PahoClient\n"
        "class Ours:\n"
        "    def __init__(self):\n"
        "        self._c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)\n"
        "        self._lock = None\n"  # our own attribute: not paho's
        "    def go(self, other: 'mqtt.Client'):\n"
        "        self._c._sock.close()\n"
        "        other._out_packet.clear()\n"
        "        self._lock\n"
        "class Sub(PahoClient):\n"
        "    _mine = 0\n"
        "    def _packet_handle(self):\n"
        "        return self._mine + self._state\n"
        "def f(client, name):\n"
        "    hasattr(client, '_thread')\n"
        "    getattr(client, name)\n"
        "    return mqtt._socketpair_compat, mqtt.__version__\n"
    )
    assert paho_private_uses(_sources(pkg, tmp_path), tmp_path) == {
        ("monitor/m.py", entry)
        for entry in (
            "_sock",
            "_out_packet",
            "override Sub._packet_handle",
            "_state",
            "_thread",
            "getattr(client, name)",
            "_socketpair_compat",
        )
    }
