"""Code shared by training and serving: preprocessing (numpy + Pillow) and the manifest schema.

Nothing here imports TensorFlow.
"""
