"""What the zoo's builders share: arguments, initialization, heads.

Every builder takes the same arguments besides its own (`depth`, ...):
`widths`, `weights`, `input_shape`, `include_top`, `classes`, `pooling`,
`shared_batch_norm`, `name`, `input_tensor` and `classifier_activation`.
It documents them with `{model_arguments}` and
`{keras_applications_arguments}` in its docstring
(`@with_shared_arguments_doc`), checks them with `builder_arguments`
before building anything, starts from `arguments.images()`, ends with
`arguments.head(x)` and returns `arguments.model(...)`, which builds the
`SlimmableModel` and loads the `weights`. An architecture's module (see
`keras_slimmable.zoo.registry` for what adding one takes) thus holds only
what is its own: the layers, the key map of the reference checkpoints,
the weights manifest and the recipes.
"""

import dataclasses
import math

import keras

from keras_slimmable.zoo.weights import check_weights_argument
from keras_slimmable.zoo.weights import copy_weights
from keras_slimmable.zoo.weights import load_builder_weights

# The arguments every builder documents alike, put where its docstring
# says `{model_arguments}` and `{keras_applications_arguments}` (as
# keras.applications shares BASE_DOCSTRING).
MODEL_ARGUMENTS_DOC = """\
        weights: `None` (random initialization, as the reference's), a
            path to a `.weights.h5` file of this package, a path to a
            reference PyTorch checkpoint (`.pt`, `.pth`, `.pth.tar`,
            ...), or `"imagenet"` for the reference ImageNet weights, for
            the architectures that have them, once converted into the
            Keras cache (see `python -m keras_slimmable.convert`).
            Defaults to `None`.
        input_shape: the shape of one image, `(height, width, 3)`: any
            height and width from 32 up, as in keras.applications (the
            pooling is global), or `None` for any size. Defaults to the
            shape of `input_tensor`, else `(224, 224, 3)`.
        include_top: whether to end with the classifier. Defaults to
            `True`.
        classes: the number of classes of the classifier. Defaults to
            `1000`.
        pooling: with `include_top=False`, `None` to output the last
            feature map, `"avg"` or `"max"` for global pooling. Defaults to
            `None`.
        shared_batch_norm: build the paper's naive baseline instead, one
            batch norm shared by all widths. Reference checkpoints cannot
            be loaded into it. Defaults to `False`.
"""
KERAS_APPLICATIONS_ARGUMENTS_DOC = """\
        input_tensor: a Keras tensor (the output of `keras.Input()` or of
            a layer) to use as the images. As in keras.applications, the
            model's inputs are then the inputs it derives from
            (`keras.utils.get_source_inputs`), and with `weights` only the
            builder's layers are loaded. Defaults to `None`.
        classifier_activation: the classifier's activation, with
            `include_top=True`: `None` for logits, `"softmax"` for
            probabilities, or any Keras activation; with `weights`, only
            `None` or `"softmax"`, as in keras.applications. Defaults to
            `None`, logits, unlike keras.applications (`"softmax"`): the
            reference models output logits, the reference checkpoints are
            checked logit for logit, and the zoo's recipes train with
            `from_logits=True`.
"""


def with_shared_arguments_doc(builder):
    """Puts `MODEL_ARGUMENTS_DOC` and `KERAS_APPLICATIONS_ARGUMENTS_DOC`
    into `builder`'s docstring, where it says `{model_arguments}` and
    `{keras_applications_arguments}`."""
    for placeholder, text in (
        ("{model_arguments}", MODEL_ARGUMENTS_DOC),
        ("{keras_applications_arguments}", KERAS_APPLICATIONS_ARGUMENTS_DOC),
    ):
        builder.__doc__ = builder.__doc__.replace(
            f"        {placeholder}\n", text
        )
    return builder


# What the reference's ImageNet recipes share (apps/*_train_val.yml of its
# code); each architecture's recipe adds its batch size (the total over all
# devices), learning rate, schedule, epochs and crop scale. The keys are
# those of `keras_slimmable.recipes.RECIPES`.
REFERENCE_RECIPE = {
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-4,
    "image_size": 224,
    "color_jitter": 0.4,
    "lighting": 0.1,
    # PyTorch updates the moving variance with the unbiased batch variance.
    "unbiased_moving_variance": True,
}

BATCH_NORM_MOMENTUM = 0.9  # PyTorch's momentum 0.1
BATCH_NORM_EPSILON = 1e-5
# keras.applications' minimum input height and width.
MIN_INPUT_SIZE = 32
# The finest feature pyramid level a zoo backbone exposes: P2, stride 4
# (finer maps are stems, not stage outputs; keras-hub's backbones start
# there too).
MIN_PYRAMID_LEVEL = 2


def check_builder_arguments(
    name,
    default_widths,
    widths,
    include_top,
    classes,
    pooling,
    input_shape,
    input_tensor=None,
    classifier_activation=None,
    weights=None,
):
    """Validates the arguments every builder takes; returns
    `(widths, input_shape)` with the defaults filled in.

    `input_shape` defaults to the shape of `input_tensor`, else
    `(224, 224, 3)`; its height and width must be at least 32 (or `None`),
    as in keras.applications. `classifier_activation` must be a Keras
    activation, and only `None` or `"softmax"` when `weights` are loaded
    into the classifier (keras.applications' rule: the classifier was
    trained through a softmax).

    Raises:
        ValueError: naming the bad argument and what was expected.
    """
    from keras_slimmable.widths import standardize_widths

    widths = standardize_widths(default_widths if widths is None else widths)
    if not isinstance(include_top, bool):
        raise ValueError(
            f"`include_top` must be True or False. Received: "
            f"include_top={include_top!r}"
        )
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise ValueError(
            f"`classes` must be a positive int. Received: classes={classes!r}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` must be None, 'avg' or 'max'. Received: "
            f"pooling={pooling!r}"
        )
    _check_classifier_activation(classifier_activation, include_top, weights)
    if input_tensor is None:
        input_shape = (224, 224, 3) if input_shape is None else input_shape
        input_shape = tuple(input_shape)
        received = f"input_shape={input_shape}"
    else:
        _check_input_tensor(input_tensor)
        tensor_shape = tuple(input_tensor.shape[1:])
        received = f"input_tensor.shape={tuple(input_tensor.shape)}"
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                "`input_shape` must be None or the shape of one image of "
                f"`input_tensor`, {tensor_shape}. Received: "
                f"input_shape={tuple(input_shape)}, {received}"
            )
        input_shape = tensor_shape
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"{name} takes RGB images, channels last: `input_shape` must be "
            f"(height, width, 3). Received: {received}"
        )
    if any(
        size is not None and size < MIN_INPUT_SIZE for size in input_shape[:2]
    ):
        # keras.applications' message.
        raise ValueError(
            f"Input size must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}; "
            f"Received: {received}"
        )
    return widths, input_shape


def _check_input_tensor(input_tensor):
    if not keras.backend.is_keras_tensor(input_tensor):
        shape = getattr(input_tensor, "shape", None)
        raise ValueError(
            "`input_tensor` must be a Keras tensor: the output of "
            "`keras.Input()` or of a layer called on one. Received: "
            f"input_tensor of type {type(input_tensor).__name__}"
            + ("" if shape is None else f" and shape {tuple(shape)}")
        )


def _check_classifier_activation(classifier_activation, include_top, weights):
    try:
        activation = keras.activations.get(classifier_activation)
    except (ValueError, TypeError):
        raise ValueError(
            "`classifier_activation` must be None, the name of a Keras "
            "activation (such as 'softmax') or a callable. Received: "
            f"classifier_activation={classifier_activation!r}"
        ) from None
    if not include_top or weights is None:
        return
    if activation not in (
        keras.activations.get("softmax"),
        keras.activations.get(None),
    ):
        # keras.applications' rule and message (validate_activation).
        raise ValueError(
            "Only `None` and `softmax` activations are allowed for the "
            "`classifier_activation` argument when using pretrained "
            "weights, with `include_top=True`; Received: "
            f"classifier_activation={classifier_activation!r}"
        )


def image_input(input_shape, input_tensor):
    """The tensor a builder starts from: `input_tensor`, or a new
    `keras.Input` named `images`."""
    if input_tensor is None:
        return keras.Input(shape=input_shape, name="images")
    return input_tensor


def model_inputs(images, input_tensor):
    """The model's inputs: those `input_tensor` derives from
    (`keras.utils.get_source_inputs`), as in keras.applications."""
    if input_tensor is None:
        return images
    inputs = keras.utils.get_source_inputs(input_tensor)
    return inputs[0] if len(inputs) == 1 else inputs


def conv_initializer(kernel_size, channels):
    """The reference's He normal (fan out): N(0, sqrt(2 / (k * k * out))).

    `channels` counts the output channels of one reference module: the
    whole conv, a depthwise conv's channels, or one group of a group conv.
    """
    return keras.initializers.RandomNormal(
        stddev=math.sqrt(2.0 / (kernel_size * kernel_size * channels))
    )


def switchable_batch_norm(channels, shared=False, name=None):
    """The reference's batch norm: switchable, or the shared baseline."""
    from keras_slimmable.layers import SwitchableBatchNormalization

    return SwitchableBatchNormalization(
        channels,
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=BATCH_NORM_EPSILON,
        shared=shared,
        name=name,
    )


def batch_norm_factory(shared_batch_norm=False):
    """The batch-norm factory of the zoo's blocks: `batch_norm(channels,
    name)` returns the reference's switchable batch norm (or, with
    `shared_batch_norm=True`, the shared baseline).

    The block builders (`keras_slimmable.zoo.mobilenet_v1.features`, ...)
    take such a factory, so that a caller can put another batch norm in
    every block: any callable `batch_norm(channels, name)` returning a
    layer, `channels` being the block's channel configuration.
    """

    def batch_norm(channels, name):
        return switchable_batch_norm(channels, shared_batch_norm, name)

    return batch_norm


def widest_channels(channels):
    """The widest channel count of a channel configuration: an int, a
    per-width sequence (ascending) or a channel rule (`ScaledChannels`)."""
    from keras_slimmable.layers import ScaledChannels

    if isinstance(channels, ScaledChannels):
        return channels.max_channels
    if isinstance(channels, int):
        return channels
    return int(max(channels))


def same_channels(a, b):
    """Whether two channel configurations are the same at every width.

    Per-width sequences are compared whole (the reference decides a
    block's residual add and expansion once, for all widths); channel
    rules (`ScaledChannels`) by their config.
    """

    def standard(channels):
        if isinstance(channels, int) or not hasattr(channels, "__iter__"):
            return channels
        return tuple(int(c) for c in channels)

    return standard(a) == standard(b)


def pyramid_levels(stage_outputs):
    """The feature pyramid levels of a backbone, from its stage outputs.

    Level `k` (`"P{k}"`) is the feature map of stride `2**k`: the last
    stage output at that stride, in graph order. Levels below
    `MIN_PYRAMID_LEVEL` are left out.

    Args:
        stage_outputs: `(stride, layer name)` pairs in graph order, each
            the output of a stage or block, its stride relative to the
            input (a power of 2).

    Returns:
        A dict from level name to layer name, finest level first (the
        `pyramid_levels` of `keras_slimmable.SlimmableModel`).
    """
    levels = {}
    for stride, name in stage_outputs:
        level = int(stride).bit_length() - 1
        if stride != 2**level:
            raise ValueError(
                f"Layer '{name}' has stride {stride}: expected a power of 2."
            )
        if level >= MIN_PYRAMID_LEVEL:
            levels[level] = name
    return {f"P{level}": levels[level] for level in sorted(levels)}


def conv_bn_relu(
    x, channels, kernel_size, strides, padding, batch_norm, prefix, relu6
):
    """A convolution without bias, its batch norm and a ReLU (ReLU6 with
    `relu6`): layers `{prefix}_conv`, `{prefix}_bn` and `{prefix}_relu`,
    the stems and tails of the zoo's models."""
    from keras_slimmable.layers import SlimmableConv2D

    x = SlimmableConv2D(
        channels,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=conv_initializer(
            kernel_size, widest_channels(channels)
        ),
        name=f"{prefix}_conv",
    )(x)
    x = batch_norm(channels, f"{prefix}_bn")(x)
    return keras.layers.ReLU(6.0 if relu6 else None, name=f"{prefix}_relu")(x)


def classifier_head(
    x, include_top, classes, pooling, classifier_activation=None, dense=None
):
    """Global average pooling and the classifier, or the headless pooling.

    Args:
        x: the last feature map.
        include_top: add the classifier (`predictions`).
        classes: its number of classes.
        pooling: without the classifier: `None`, `"avg"` or `"max"`.
        classifier_activation: the classifier's activation; `None` for
            logits.
        dense: the classifier's layer class. Defaults to `SlimmableDense`
            (its input sliced to the active width).
    """
    if include_top:
        if dense is None:
            from keras_slimmable.layers import SlimmableDense as dense
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return dense(
            classes,
            activation=classifier_activation,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="predictions",
        )(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


@dataclasses.dataclass(frozen=True)
class BuilderArguments:
    """A builder's arguments, checked, with their defaults filled in
    (`builder_arguments`), and the steps every builder takes with them."""

    widths: tuple
    weights: object
    input_shape: tuple
    include_top: bool
    classes: int
    pooling: object
    shared_batch_norm: bool
    name: str
    input_tensor: object
    classifier_activation: object

    def images(self):
        """The tensor the builder starts from: `input_tensor`, or a new
        `keras.Input` named `images`."""
        return image_input(self.input_shape, self.input_tensor)

    def head(self, x, dense=None):
        """The classifier or the headless pooling (`classifier_head`)."""
        return classifier_head(
            x,
            self.include_top,
            self.classes,
            self.pooling,
            self.classifier_activation,
            dense=dense,
        )

    def model(
        self,
        images,
        outputs,
        builder,
        manifest,
        key_map,
        width_range=None,
        pyramid_levels=None,
    ):
        """The `SlimmableModel` from `images` to `outputs`, with the
        `weights` loaded.

        Args:
            images: the tensor `images()` returned.
            outputs: the model's outputs.
            builder: the builder itself (a `functools.partial` of it for
                arguments of its own, such as S-ResNet's `depth`): called
                with these arguments, some overridden, to load weights
                into a model of its own (headless models, `input_tensor`).
            manifest: the architecture's weights manifest.
            key_map: the architecture's reference key map.
            width_range: the model's width range (universally slimmable
                models), or `None`.
            pyramid_levels: the backbone's feature pyramid levels
                (`pyramid_levels`), given to the model without the
                classifier only: a classifier's config stays as it was.
        """
        from keras_slimmable.model import SlimmableModel

        model = SlimmableModel(
            model_inputs(images, self.input_tensor),
            outputs,
            widths=self.widths,
            width_range=width_range,
            name=self.name,
            pyramid_levels=None if self.include_top else pyramid_levels,
        )
        if self.weights is None:
            return model

        def rebuild(**overrides):
            arguments = dict(
                widths=self.widths,
                input_shape=self.input_shape,
                include_top=self.include_top,
                classes=self.classes,
                pooling=self.pooling,
                shared_batch_norm=self.shared_batch_norm,
            )
            return builder(**dict(arguments, **overrides))

        if self.input_tensor is not None:
            # The layers before `input_tensor` are not in the weights: load
            # them into the builder's model alone, then copy its layers.
            copy_builder_weights(rebuild(weights=self.weights), model)
            return model
        load_builder_weights(
            model,
            self.weights,
            manifest,
            key_map,
            include_top=self.include_top,
            build_full_model=lambda: rebuild(
                include_top=True, classes=manifest["classes"], pooling=None
            ),
        )
        return model


def builder_arguments(
    default_widths,
    manifest,
    *,
    widths,
    weights,
    input_shape,
    include_top,
    classes,
    pooling,
    shared_batch_norm,
    name,
    input_tensor,
    classifier_activation,
):
    """Checks the arguments every builder takes, before anything is built.

    Args:
        default_widths: the architecture's widths, for `widths=None`.
        manifest: the architecture's weights manifest
            (`keras_slimmable.zoo.weights`), for `weights`.
        **arguments: the builder's arguments of the same names.

    Returns:
        A `BuilderArguments`.

    Raises:
        ValueError: naming the bad argument and what was expected (see
            `check_builder_arguments` and
            `keras_slimmable.zoo.weights.check_weights_argument`).
    """
    widths, input_shape = check_builder_arguments(
        name,
        default_widths,
        widths,
        include_top,
        classes,
        pooling,
        input_shape,
        input_tensor=input_tensor,
        classifier_activation=classifier_activation,
        weights=weights,
    )
    check_weights_argument(
        weights,
        manifest,
        widths=widths,
        include_top=include_top,
        classes=classes,
        shared_batch_norm=shared_batch_norm,
    )
    return BuilderArguments(
        widths=widths,
        weights=weights,
        input_shape=input_shape,
        include_top=include_top,
        classes=classes,
        pooling=pooling,
        shared_batch_norm=shared_batch_norm,
        name=name,
        input_tensor=input_tensor,
        classifier_activation=classifier_activation,
    )


def copy_builder_weights(source, target):
    """Copies the weights of every layer of `source` into the same-named
    layer of `target`, which may hold more layers (shapes are checked
    before anything is assigned)."""
    copy_weights(
        (layer, target.get_layer(layer.name))
        for layer in source.layers
        if layer.weights
    )
