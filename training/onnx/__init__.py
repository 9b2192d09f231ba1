"""The exported ONNX graph's passes: small graph queries and edits (`graph`), the
normalizations rewritten onto onnxruntime's own kernels (`rewrite`), and the order export runs
them in (`optimize`)."""
