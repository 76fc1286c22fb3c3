"""Using a trained model: export to ONNX/TorchScript (`export`), prediction on image files
(`predict`) and fast PyTorch inference (`inference`)."""
