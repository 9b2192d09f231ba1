"""The exported ONNX graph's passes: small graph queries and edits (`graph`), the
normalizations rewritten onto onnxruntime's own kernels (`rewrite`), the order export runs them
in (`optimize`), and the gated INT8 twin (`quantize`)."""
