"""Client-like pictures of MNIST digits (phone photos, scans, canvas exports, every common
encoding) for the tests and benchmarks: `kinds.KINDS` names them, `kinds.sample` draws them."""
