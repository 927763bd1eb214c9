"""Slimmable layers: full-width variables, sliced to the active width."""

from keras_slimmable.layers.convolution import SlimmableConv2D
from keras_slimmable.layers.convolution import SlimmableDepthwiseConv2D
from keras_slimmable.layers.convolution import SlimmableGroupedConv2D
from keras_slimmable.layers.dense import SlimmableDense
from keras_slimmable.layers.normalization import SwitchableBatchNormalization
from keras_slimmable.layers.shuffle import ChannelShuffle

__all__ = [
    "ChannelShuffle",
    "SlimmableConv2D",
    "SlimmableDense",
    "SlimmableDepthwiseConv2D",
    "SlimmableGroupedConv2D",
    "SwitchableBatchNormalization",
]
