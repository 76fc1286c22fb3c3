"""Networks as data: the spec table (`spec`), the blocks, the `ResNet` built from a spec
(`resnet`), the registry of named specs, feature extraction, summaries and BatchNorm folding.
Knows nothing of weights files, data or training."""
