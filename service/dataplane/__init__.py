"""The data plane: one inference request from images to probabilities, independent of the
wire (it imports no HTTP or gRPC code): admission, decoding, tensors."""
