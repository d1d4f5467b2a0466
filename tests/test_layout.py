"""The runtime and the training code stay apart (docs/architecture.md): importing what a service
runs never imports the ``training`` package, and neither does building the command's parser."""

from __future__ import annotations

import subprocess
import sys

PROBE = (
    "import sys\n"
    "{imports}\n"
    "names = sorted(m for m in sys.modules if m == 'training' or m.startswith('training.'))\n"
    "print('training modules:', ','.join(names))\n"
)


def _training_modules_after(imports: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("training modules:"), result.stdout
    return [name for name in line.removeprefix("training modules:").strip().split(",") if name]


def test_the_runtime_imports_no_training_module() -> None:
    imports = (
        "import shared.face, shared.gallery, services.recognizer.worker\n"
        "import services.detector.worker, services.liveness.worker, services.stylizer.worker\n"
        "import services.api.app, services.embedded, services.runtime\n"
        "import shared.face.factory, shared.face.identity, shared.liveness.pixels"
    )
    assert _training_modules_after(imports) == []


def test_the_command_parser_imports_no_training_module() -> None:
    imports = "import services.cli\nservices.cli.parser()"
    assert _training_modules_after(imports) == []


def test_the_probe_sees_a_training_import() -> None:
    """The check above can fail: importing a training module is seen."""
    assert "training.calibration" in _training_modules_after("import training.calibration")
