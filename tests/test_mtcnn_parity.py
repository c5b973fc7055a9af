"""The committed ONNX networks compute what facenet-pytorch's torch networks compute.

Runs only where torch and facenet-pytorch are installed (the export venv described in
models/export_mtcnn.py); skipped in the project venv, which never has torch. facenet-pytorch is
located with find_spec rather than imported: its __init__ imports torchvision, which is absent
from the export venv (the weights are loaded into the script's own copies of the three nets).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
if importlib.util.find_spec("facenet_pytorch") is None:
    pytest.skip("facenet-pytorch is not installed", allow_module_level=True)

MODELS = Path(__file__).resolve().parents[1] / "models"
TOLERANCE = 1e-5


def _export_module():
    spec = importlib.util.spec_from_file_location("export_mtcnn", MODELS / "export_mtcnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPORT = _export_module()

SHAPES = {
    "pnet": [(1, 3, 12, 12), (1, 3, 13, 17), (1, 3, 101, 77), (1, 3, 384, 288), (2, 3, 40, 50)],
    "rnet": [(1, 3, 24, 24), (64, 3, 24, 24)],
    "onet": [(1, 3, 48, 48), (16, 3, 48, 48)],
}
OUTPUTS = {"pnet": ["reg", "prob"], "rnet": ["reg", "prob"], "onet": ["reg", "landmarks", "prob"]}


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_onnx_matches_torch(name):
    net = EXPORT.load_net(name)
    sess = ort.InferenceSession(str(MODELS / f"mtcnn_{name}.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == OUTPUTS[name]
    rng = np.random.default_rng(1)
    worst = 0.0
    for shape in SHAPES[name]:
        # The normalised input range, (x - 127.5) * 0.0078125 for x in 0..255.
        x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        with torch.no_grad():
            ref = [t.numpy() for t in net(torch.from_numpy(x))]
        got = sess.run(None, {"input": x})
        for r, g in zip(ref, got, strict=True):
            assert r.shape == g.shape
            worst = max(worst, float(np.abs(r - g).max()))
    print(f"{name}: max |onnxruntime - torch| = {worst:.3e}")
    assert worst <= TOLERANCE


def test_probabilities_are_softmax():
    sess = ort.InferenceSession(str(MODELS / "mtcnn_onet.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).uniform(-1, 1, (8, 3, 48, 48)).astype(np.float32)
    prob = sess.run(["prob"], {"input": x})[0]
    assert np.all((prob >= 0) & (prob <= 1))
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-6)


def test_export_is_reproducible(tmp_path):
    """Re-exporting with the recorded torch version gives the committed bytes."""
    if not torch.__version__.startswith("2.13.0"):
        pytest.skip(f"files were exported with torch 2.13.0, this is {torch.__version__}")
    EXPORT.main(["--out", str(tmp_path)])
    committed = json.loads((MODELS / "checksums.json").read_text())
    for name, digest in committed.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest, name
