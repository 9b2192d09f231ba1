"""What runs the models: backends (onnxruntime, SavedModel), micro-batching, model loading and
each variant's slot, and the workers' in-flight board."""
