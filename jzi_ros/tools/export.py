"""`jzi export`: a model's encoder and decoder as ONNX or TensorRT artefacts.

ONNX: ``encoder.onnx`` and ``decoder.onnx`` (opset 17, static shapes but the step's rows), the
decoder's action tokens and the checkpoint's calibration; with ``--map`` the
map's view tokens too, so that the node runs from the folder alone
(``model:=OUT backend:=onnxruntime``) without importing torch. The
``trtexec`` route, for users who prefer it, builds engines from them::

    trtexec --onnx=OUT/encoder.onnx --saveEngine=encoder.plan [--fp16]
    trtexec --onnx=OUT/decoder.onnx --saveEngine=decoder.plan [--fp16] --shapes=tokens:BxNxD,keys:...,values:...

TensorRT: both compiled by torch-tensorrt for this GPU and saved with its own
serialization under ``OUT/<gpu>-<tensorrt version>-<precision>/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..inference.export import export_for_map, export_tensorrt
from ..model import load_checkpoint
from ..share import resolve_model
from .common import add_model_argument, calibrated_for


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this command."""
    add_model_argument(p)
    p.add_argument("--format", required=True, choices=["onnx", "tensorrt"])
    p.add_argument("--out", required=True, type=Path, help="folder to write")
    p.add_argument(
        "--beam", type=int, default=4, help="the beam width it will run (default 4): TensorRT's decoder batch"
    )
    p.add_argument("--fp16", action="store_true", help="TensorRT: build fp16 engines")
    p.add_argument(
        "--map",
        type=Path,
        default=None,
        help="ONNX: the map (indexed for the model) whose view tokens go with the export: the node then needs no torch",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export the model and say where the files are."""
    started = time.monotonic()
    model = resolve_model(args.model)
    if args.format == "onnx":
        if args.map is not None:  # a general model: the map indexed and calibrated for it first
            calibrated_for(args.map, model)
        out = export_for_map(model, args.map, args.out, beam=args.beam)
    else:
        out = export_tensorrt(load_checkpoint(model)[0], args.out, beam=args.beam, fp16=args.fp16)
    print(
        f"exported {model} ({args.format}{', fp16' if args.fp16 else ''}, beam {args.beam}) "
        f"in {time.monotonic() - started:.1f} s"
    )
    for f in sorted(out.iterdir()):
        print(f"wrote {f}")
    return 0
