"""Export MTCNN's P-Net, R-Net and O-Net to ONNX from the weights shipped in ``facenet-pytorch``.

Run it in a throw-away venv OUTSIDE the project: torch is never a dependency of mesoscan.

    python3 -m venv /tmp/export-venv
    /tmp/export-venv/bin/pip install torch==2.13.0 numpy onnx onnxruntime
    /tmp/export-venv/bin/pip install --no-deps facenet-pytorch   # its pins would pull CUDA torch
    /tmp/export-venv/bin/python models/export_mtcnn.py

``facenet_pytorch/__init__`` imports torchvision (not installed, and its wheels do not load on the
CPU torch), so the package is never imported: its ``data/{pnet,rnet,onet}.pt`` state dicts are
located with ``importlib.util.find_spec`` and loaded into the three networks defined below, which
copy facenet-pytorch 2.6.0 ``models/mtcnn.py`` layer for layer (same attribute names, so the state
dicts load with ``strict=True``).

Writes, next to this script: ``mtcnn_{pnet,rnet,onet}.onnx``, ``checksums.json`` ({file: sha256},
verified by ``pipelines.face_detection`` on load) and ``MODEL_CARD.md``.

Every network takes float32 NCHW RGB normalised as ``(x - 127.5) * 0.0078125`` (x in 0-255).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17
HERE = Path(__file__).resolve().parent


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        prob = self.softmax4_1(self.conv4_1(x))
        reg = self.conv4_2(x)
        return reg, prob


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights were ported from a (W, H)-transposed Caffe/TF layout: flatten in that order.
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        prob = self.softmax5_1(self.dense5_1(x))
        reg = self.dense5_2(x)
        return reg, prob


class ONet(nn.Module):
    """Output net on 48x48 crops: box regression, 5 landmarks, face probability."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        prob = self.softmax6_1(self.dense6_1(x))
        reg = self.dense6_2(x)
        landmarks = self.dense6_3(x)
        return reg, landmarks, prob


# name -> (class, example input shape, output names, dynamic axes)
NETS = {
    "pnet": (PNet, (1, 3, 60, 80), ["reg", "prob"],
             {"input": {0: "batch", 2: "height", 3: "width"},
              "reg": {0: "batch", 2: "out_height", 3: "out_width"},
              "prob": {0: "batch", 2: "out_height", 3: "out_width"}}),
    "rnet": (RNet, (2, 3, 24, 24), ["reg", "prob"],
             {"input": {0: "batch"}, "reg": {0: "batch"}, "prob": {0: "batch"}}),
    "onet": (ONet, (2, 3, 48, 48), ["reg", "landmarks", "prob"],
             {"input": {0: "batch"}, "reg": {0: "batch"}, "landmarks": {0: "batch"},
              "prob": {0: "batch"}}),
}


def weights_dir() -> Path:
    """Folder holding facenet-pytorch's ``pnet.pt`` etc., found without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("facenet-pytorch is not installed: pip install --no-deps facenet-pytorch")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_net(name: str) -> nn.Module:
    """One of 'pnet', 'rnet', 'onet' with facenet-pytorch's weights, in eval mode."""
    cls = NETS[name][0]
    net = cls()
    state = torch.load(weights_dir() / f"{name}.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(name: str, out_dir: Path) -> Path:
    """Export one network to ``out_dir/mtcnn_<name>.onnx`` with the legacy TorchScript exporter."""
    _, shape, outputs, dynamic = NETS[name]
    net = load_net(name)
    path = out_dir / f"mtcnn_{name}.onnx"
    example = torch.zeros(shape, dtype=torch.float32)
    with warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (checked to match torch within 1e-5); hush
        # its deprecation notices.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=outputs, dynamic_axes=dynamic,
                          do_constant_folding=True)
    return path


def max_abs_diff(name: str, path: Path, shapes: list[tuple[int, ...]], seed: int = 0) -> float:
    """Largest |onnxruntime - torch| over all outputs for random inputs in the normalised range."""
    import onnxruntime as ort

    net = load_net(name)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for shape in shapes:
        x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        with torch.no_grad():
            ref = [t.numpy() for t in net(torch.from_numpy(x))]
        got = sess.run(None, {"input": x})
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(ref, got)))
    return worst


PARITY_SHAPES = {
    "pnet": [(1, 3, 12, 12), (1, 3, 97, 131), (1, 3, 384, 288)],
    "rnet": [(1, 3, 24, 24), (37, 3, 24, 24)],
    "onet": [(1, 3, 48, 48), (11, 3, 48, 48)],
}

CARD = """# MTCNN face detector (P-Net, R-Net, O-Net) as ONNX

Generated by `models/export_mtcnn.py`; do not edit by hand (re-run the script).

## Source
- Weights: `facenet_pytorch/data/{{pnet,rnet,onet}}.pt` from the PyPI package
  **facenet-pytorch {fp_version}** (https://github.com/timesler/facenet-pytorch), which ported
  them from David Sandberg's TensorFlow `facenet` (itself converted from the authors' Caffe models).
- Licence: **MIT**, "Copyright (c) 2019 Timothy Esler" (facenet-pytorch's `LICENSE.md`). The
  MIT notice must travel with these files; it is reproduced at the end of this card.
- Method: K. Zhang, Z. Zhang, Z. Li, Y. Qiao, "Joint Face Detection and Alignment Using Multitask
  Cascaded Convolutional Networks", IEEE Signal Processing Letters 23(10):1499-1503, 2016.
- Exported with torch {torch_version}, `torch.onnx.export(..., dynamo=False)`, opset {opset}.
  Max |onnxruntime - torch| on random inputs at export time: {parity}.

## Files (sha256, also in `checksums.json`, verified by `pipelines/face_detection.py` on load)
{hashes}

## Inputs and outputs
All three take `input`: float32 NCHW, **RGB** channel order, normalised as
`(x - 127.5) * 0.0078125` for x in 0..255, i.e. values in [-1, 1].

| model | input | outputs |
| --- | --- | --- |
| `mtcnn_pnet.onnx` | `input` (N, 3, H, W), H, W >= 12, dynamic | `reg` (N, 4, H', W'), `prob` (N, 2, H', W') with H' = ceil((H-2)/2) - 4 |
| `mtcnn_rnet.onnx` | `input` (N, 3, 24, 24), N dynamic | `reg` (N, 4), `prob` (N, 2) |
| `mtcnn_onet.onnx` | `input` (N, 3, 48, 48), N dynamic | `reg` (N, 4), `landmarks` (N, 10), `prob` (N, 2) |

- `prob[:, 1]`: softmax probability of "face", 0-1 (`prob[:, 0]` = 1 - it).
- P-Net is fully convolutional: output cell (i, j) covers the 12x12 input window whose top-left
  corner is (2j, 2i) (stride 2).
- `reg`: box corrections (dx1, dy1, dx2, dy2) as fractions of the input window's width/height,
  added to (x1, y1, x2, y2); unbounded, typically within +-0.5.
- `landmarks`: 5 x-coordinates then 5 y-coordinates as fractions (0-1) of the 48x48 crop, in the
  order **image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth
  corner**. On a frontal photo the image-left eye is the subject's RIGHT eye;
  `pipelines/face_detection.py` renames them after the subject (`left_eye` = subject's left).

## Known limits
Measured with `pipelines/face_detection.py` (working image long side 640 px) on the 20 frontal
1350 x 1350 studio photos of the London set (`tests/test_face_detection.py`):
- Eye landmarks vs the annotated pupils: mean 2.75 %, max 6.3 % of the inter-pupillary
  distance; the eye point sits a few pixels below the pupil. Mouth and nose points are coarser.
  A 48 x 48 crop and 5 points: no substitute for a dense landmark model.
- False positives: at the paper's O-Net threshold 0.7 a face-like tuft of hair was reported on
  1 of 20 photos (confidence 0.91); true faces scored >= 0.99.
- Rotation: trained on upright faces (WIDER FACE / CelebA). On the photos turned 180 deg a "face"
  was still found on 17 of 20 (confidence 0.74-0.98) with the landmarks laid out as if upright,
  i.e. wrong by about one inter-pupillary distance; at 90 deg 15 of 20 (0.81-0.997). The caller
  must fix the orientation (EXIF) before detection; confidence does not flag it.
- Boxes: O-Net's regressed box, roughly brows to chin, narrower than the head; not square.
- Probabilities are not calibrated across image conditions.
- Bias: accuracy across skin tones, ages and occlusions (masks, glasses) has not been audited by
  the original authors; mesoscan's dev set is 20 adults (8 white, 4 black, 4 West Asian, 4 East
  Asian), all frontal, neutral expression, even light.

## MIT licence of the weights
{licence}
"""


def write_card(out_dir: Path, hashes: dict[str, str], parity: dict[str, float]) -> None:
    lic_files = [f for f in (importlib.metadata.files("facenet-pytorch") or [])
                 if f.name.startswith("LICENSE")]
    licence = lic_files[0].locate().read_text().strip() if lic_files else "Copyright (c) 2019 Timothy Esler"
    card = CARD.format(
        fp_version=importlib.metadata.version("facenet-pytorch"),
        torch_version=torch.__version__, opset=OPSET,
        parity=", ".join(f"{k} {v:.2e}" for k, v in parity.items()),
        hashes="\n".join(f"- `{name}`: `{digest}`" for name, digest in hashes.items()),
        licence="\n".join("    " + line if line else "" for line in licence.splitlines()),
    )
    (out_dir / "MODEL_CARD.md").write_text(card)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: models/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    hashes, parity = {}, {}
    for name in NETS:
        path = export(name, args.out)
        parity[name] = max_abs_diff(name, path, PARITY_SHAPES[name])
        if parity[name] > 1e-5:
            raise SystemExit(f"{path.name}: onnxruntime differs from torch by {parity[name]:.2e}")
        hashes[path.name] = sha256(path)
        print(f"{path.name}: {path.stat().st_size} bytes, sha256 {hashes[path.name]}, "
              f"max|ort-torch| {parity[name]:.2e}")
    (args.out / "checksums.json").write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n")
    write_card(args.out, hashes, parity)


if __name__ == "__main__":
    main()
