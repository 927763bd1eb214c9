"""Key maps: Keras layer name -> reference (PyTorch) module prefix.

A key map is a function `key_map(model) -> dict[str, str | list[str]]`
mapping the name of every Keras layer with weights to the prefix of the
reference module it comes from (without `module.`), or to a list of `g`
prefixes for a layer made of `g` reference modules side by side on the
output channels. `keras_slimmable.convert.reference` does the rest.
"""

from keras_slimmable.convert.key_maps import s_mobilenet_v1
from keras_slimmable.convert.key_maps import s_mobilenet_v2
from keras_slimmable.convert.key_maps import s_resnet
from keras_slimmable.convert.key_maps import s_shufflenet

KEY_MAPS = {
    "s_mobilenet_v1": s_mobilenet_v1.key_map,
    "s_mobilenet_v2": s_mobilenet_v2.key_map,
    "s_resnet50": s_resnet.key_map,
    "s_resnet101": s_resnet.key_map,
    "s_resnet152": s_resnet.key_map,
    "s_shufflenet": s_shufflenet.key_map,
}
