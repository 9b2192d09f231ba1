"""The service's tree keeps its layers: the protocol-neutral packages (the data plane, the
runtime, the model repository) import no wire code, and neither front imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from devtools import REPO_ROOT

SERVICE = REPO_ROOT / "service"
WIRE = ("fastapi", "starlette", "grpc", "uvicorn", "python_multipart")
FORBIDDEN = {
    "dataplane": (*WIRE, "service.rest", "service.grpc", "service.app"),
    "runtime": (*WIRE, "service.rest", "service.grpc", "service.app", "service.dataplane"),
    "repository": (*WIRE, "service.rest", "service.grpc", "service.app", "service.dataplane"),
    "rest": ("grpc", "service.grpc", "service.app"),
    "grpc": ("fastapi", "starlette", "uvicorn", "service.rest", "service.app"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any level (including imports inside functions)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _package_modules() -> list[tuple[str, Path]]:
    return [
        (package, path)
        for package in FORBIDDEN
        for path in sorted((SERVICE / package).glob("*.py"))
        if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    ]


@pytest.mark.parametrize(
    ("package", "path"), _package_modules(), ids=lambda p: p.name if isinstance(p, Path) else p
)
def test_a_package_imports_only_what_its_layer_may(package, path):
    imports = imported_modules(path)
    bad = sorted(
        module
        for module in imports
        for forbidden in FORBIDDEN[package]
        if module == forbidden or module.startswith(forbidden + ".")
    )
    assert not bad, f"service/{package}/{path.name} imports {bad}"


def test_no_module_is_left_at_the_root_that_belongs_to_a_layer():
    """At the root: only the wiring (app, asgi, __main__, ray_app), the container's probe
    (healthcheck), settings, metrics, the wire-independent error hierarchy every layer raises,
    and the process-wide watchers and settings (draining, loop_lag, memory)."""
    root = sorted(path.stem for path in SERVICE.glob("*.py"))
    wiring = ["__init__", "__main__", "app", "asgi", "draining", "errors", "loop_lag", "metrics"]
    wiring += ["memory", "healthcheck"]
    assert root == sorted([*wiring, "ray_app", "settings"])


@pytest.mark.parametrize("package", ["service", "training", "mnist_shared"])
def test_the_product_imports_no_dev_tooling(package):
    """`devtools`, `benchmarks` and `tests` are not installed with the product: an import of
    them would work in a checkout and fail in the container."""
    dev = ("devtools", "benchmarks", "tests")
    bad = {
        f"{path.relative_to(REPO_ROOT)}: {module}"
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in dev
    }
    assert not bad


def test_benchmarks_and_tests_do_not_edit_sys_path():
    """They import the repository's packages as the root's modules (`python -m benchmarks.x`,
    pytest from the root), never by patching `sys.path`."""
    patched = [
        str(path.relative_to(REPO_ROOT))
        for folder in ("benchmarks", "tests", "devtools")
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        if "sys.path" in path.read_text()
    ]
    assert patched == [str(Path(__file__).relative_to(REPO_ROOT))]  # this test's own text
