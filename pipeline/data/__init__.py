"""The data: protocols and corpus layouts, manifests, feature extraction, HDF5 shards and the
dataset that streams them into model inputs."""
