"""ShuffleNet's channel shuffle, at whatever width its input has."""

import keras
from keras import ops

from keras_slimmable.layers import plain
from keras_slimmable.layers.base import SlimmableLayer


@keras.saving.register_keras_serializable(package="keras_slimmable")
class ChannelShuffle(SlimmableLayer):
    """Interleaves the channels of `groups` contiguous groups (ShuffleNet).

    The `n` channels of the input are seen as `groups` contiguous groups of
    `n // groups`; output channel `j * groups + k` is channel `j` of group
    `k`. This is the reshape-transpose-reshape of Zhang et al.
    (ShuffleNet, CVPR 2018) on the last (channels) axis.

    The layer has no weights and reads the channel count of its input at
    call time, so it works at every width of a slimmable network, as long
    as that count is divisible by `groups`.

    Args:
        groups: the number of groups.

    Example:

    >>> layer = ChannelShuffle(groups=3)
    >>> layer(np.arange(6.0).reshape(1, 1, 1, 6))[0, 0, 0]
    [0., 2., 4., 1., 3., 5.]

    Reference: [Zhang et al., ShuffleNet, CVPR 2018](
    https://arxiv.org/abs/1707.01083).
    """

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(groups, int) or isinstance(groups, bool):
            raise ValueError(
                f"`groups` must be a positive int. Received: groups={groups!r}"
            )
        if groups < 1:
            raise ValueError(
                f"`groups` must be a positive int. Received: groups={groups!r}"
            )
        self.groups = groups
        self.supports_masking = True

    def _check_channels(self, channels):
        if channels is None or channels % self.groups:
            raise ValueError(
                f"Layer '{self.name}' shuffles {self.groups} groups, so its "
                "input channels must be known and divisible by "
                f"{self.groups}. Received an input with {channels} channels."
            )

    def build(self, input_shape):
        self._check_channels(input_shape[-1])

    def call(self, inputs):
        channels = inputs.shape[-1]
        self._check_channels(channels)
        if self.groups == 1:
            return inputs
        shape = ops.shape(inputs)
        x = ops.reshape(inputs, (-1, self.groups, channels // self.groups))
        x = ops.swapaxes(x, 1, 2)
        return ops.reshape(x, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def plain_equivalent(self, inputs, width, **kwargs):
        """`Reshape`, `Permute`, `Reshape` (`<name>_split`,
        `<name>_transpose`, `<name>_merge`) when the spatial size is known:
        the channels seen as a (groups, channels / groups) grid, transposed.
        Otherwise a copy of this layer."""
        if len(inputs.shape) != 4 or None in inputs.shape[1:]:
            copy = ChannelShuffle.from_config(self.get_config())
            return copy(inputs), copy
        _, height, width_, channels = inputs.shape
        apply = plain.chain(
            keras.layers.Reshape(
                (height, width_, self.groups, channels // self.groups),
                name=f"{self.name}_split",
            ),
            keras.layers.Permute((1, 2, 4, 3), name=f"{self.name}_transpose"),
            keras.layers.Reshape(
                (height, width_, channels), name=f"{self.name}_merge"
            ),
        )
        return apply(inputs), apply

    def get_config(self):
        config = super().get_config()
        config["groups"] = self.groups
        return config
