"""ImageNet constants shared by the zoo and the data pipelines.

The reference models take RGB images scaled to [0, 1] and normalized by
these per-channel statistics (PyTorch's, keras.applications' "torch" mode).
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
