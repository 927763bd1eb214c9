"""keras-slimmable: slimmable neural networks for Keras 3.

One network that runs at several widths, switchable at run time
(Yu et al., Slimmable Neural Networks, ICLR 2019).
"""

from keras_slimmable import data
from keras_slimmable import export
from keras_slimmable import layers
from keras_slimmable import recipes
from keras_slimmable import zoo
from keras_slimmable.convert.reference import load_reference_checkpoint
from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.layers import SlimmableDense
from keras_slimmable.layers import SlimmableDepthwiseConv2D
from keras_slimmable.layers import SlimmableGroupedConv2D
from keras_slimmable.layers import SwitchableBatchNormalization
from keras_slimmable.model import SlimmableModel
from keras_slimmable.profiling import measure_latency
from keras_slimmable.profiling import profile
from keras_slimmable.profiling import select_width
from keras_slimmable.widths import make_divisible
from keras_slimmable.widths import scale_channels
from keras_slimmable.widths import width_scope

__version__ = "0.1.0.dev0"

__all__ = [
    "SlimmableConv2D",
    "SlimmableDense",
    "SlimmableDepthwiseConv2D",
    "SlimmableGroupedConv2D",
    "SlimmableModel",
    "SwitchableBatchNormalization",
    "data",
    "export",
    "layers",
    "load_reference_checkpoint",
    "make_divisible",
    "measure_latency",
    "profile",
    "recipes",
    "scale_channels",
    "select_width",
    "width_scope",
    "zoo",
]
