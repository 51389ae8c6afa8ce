"""Photo classification: cache → Qwen-VL → a local ONNX model, into 8 categories (docs/classify.md)."""
