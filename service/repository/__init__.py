"""The model repository: versions on disk, the version policy, loading, swapping and unloading."""
