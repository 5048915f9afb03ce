"""The package layout holds: imports run downward, and the moved modules' old names still work."""
import ast
import importlib
from pathlib import Path

import realtime

PACKAGE = Path(realtime.__file__).parent
# What services/ may import from the rest of realtime: the floors below it and one leaf.
SERVICES_MAY_IMPORT = {"store", "errors", "settings", "signing"}


def runtime_imports(path: Path) -> set[str]:
    """The realtime modules a file imports at run time (imports under `if TYPE_CHECKING:` left out)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
                   for stmt in block.body for node in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level >= 2:  # from ..x import y, inside a subpackage
            found.add((node.module or "").split(".")[0] or next(a.name for a in node.names))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("realtime."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("webhook"):
            found.add("webhook")
    return found


def test_services_depend_only_on_the_floors_below():
    """services/ imports store/, errors, settings and signing: the container that joins more is wiring.py."""
    for path in sorted((PACKAGE / "services").glob("*.py")):
        upward = runtime_imports(path) - SERVICES_MAY_IMPORT
        assert not upward, f"{path.name} imports {sorted(upward)}"


def test_the_product_does_not_import_the_webhook_service():
    """Signing lives in realtime.signing; no module of realtime imports the webhook package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        assert "webhook" not in runtime_imports(path) and "import webhook" not in path.read_text(), path


def test_old_names_are_aliases_for_one_release():
    """realtime.localcluster is realtime.devcluster; webhook.signing re-exports realtime.signing."""
    from realtime import devcluster, signing
    assert importlib.import_module("realtime.localcluster") is devcluster
    old = importlib.import_module("webhook.signing")
    assert old.sign is signing.sign and old.verify is signing.verify and old.SignatureError is signing.SignatureError


def test_public_imports_stay():
    """The names users import keep their paths."""
    from realtime import create_app  # noqa: F401
    from realtime.emitter import Emitter
    assert Emitter.__module__ == "realtime.emitter"
