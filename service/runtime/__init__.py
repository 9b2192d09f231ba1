"""What runs the models: backends (onnxruntime, SavedModel), micro-batching, model loading, the
requests in flight with the workers' board, and the CPUs a process may use."""
