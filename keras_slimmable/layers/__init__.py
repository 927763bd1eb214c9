"""Slimmable layers: full-width variables, sliced to the active width.

Every layer here implements the `SlimmableLayer` protocol (`base.py`).
"""

from keras_slimmable.layers.base import CheckpointWeight
from keras_slimmable.layers.base import ScaledChannels
from keras_slimmable.layers.base import SlimmableLayer
from keras_slimmable.layers.convolution import SlimmableConv2D
from keras_slimmable.layers.convolution import SlimmableDepthwiseConv2D
from keras_slimmable.layers.convolution import SlimmableGroupedConv2D
from keras_slimmable.layers.dense import SlimmableDense
from keras_slimmable.layers.normalization import SwitchableBatchNormalization
from keras_slimmable.layers.normalization import UniversalBatchNormalization
from keras_slimmable.layers.shuffle import ChannelShuffle

__all__ = [
    "ChannelShuffle",
    "CheckpointWeight",
    "ScaledChannels",
    "SlimmableConv2D",
    "SlimmableDense",
    "SlimmableDepthwiseConv2D",
    "SlimmableGroupedConv2D",
    "SlimmableLayer",
    "SwitchableBatchNormalization",
    "UniversalBatchNormalization",
]
