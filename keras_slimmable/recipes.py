"""The reference training recipe as code: weight decay, SGD, schedules.

The slimmable networks were trained (Yu et al., ICLR 2019, and their
PyTorch code) with SGD, Nesterov momentum 0.9, weight decay 1e-4 on conv and
dense weights except depthwise convolutions, and one learning-rate schedule
per model, declared with each zoo architecture; `get_recipe(name)` (or
`RECIPES[name]`) reads one, and `apply_weight_decay` and `make_optimizer`
turn it into Keras objects:

```python
recipe = recipes.get_recipe("s_mobilenet_v1")
model = keras_slimmable.zoo.s_mobilenet_v1()
recipes.apply_weight_decay(model, recipe["weight_decay"])
model.compile(
    optimizer=recipes.make_optimizer(
        "s_mobilenet_v1", steps_per_epoch=len(train), batch_size=128
    ),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(train, epochs=recipe["epochs"])
```
"""

import keras
from keras import ops

from keras_slimmable.layers import SlimmableLayer
from keras_slimmable.layers import SwitchableBatchNormalization

# Recipes ----------------------------------------------------------------

# The recipe tables, by dataset: each zoo architecture declares its recipes
# beside its builder (`keras_slimmable.zoo.registry.Architecture.recipes`).
_TABLES = {"RECIPES": "imagenet", "CIFAR10_RECIPES": "cifar10"}


def recipe_table(dataset="imagenet"):
    """Every zoo architecture's recipe for `dataset`, by architecture name.

    `recipe_table("imagenet")` is `RECIPES`, the reference training recipe
    of each zoo model (Yu et al. and their PyTorch code,
    apps/*_train_val.yml). Its keys: `batch_size` (total over all devices),
    `learning_rate` (for that batch size), `schedule`
    (`"exponential_per_epoch"` with `decay`, `"linear_to_zero"`, or
    `"step_decay"` with `boundaries` in epochs and `factor`), `epochs`,
    `momentum`, `nesterov`, `weight_decay`, and the augmentation:
    `image_size`, `crop_scale` (of the random-resized-crop),
    `color_jitter`, `lighting` (the arguments of
    `keras_slimmable.data.image_folder`), and `unbiased_moving_variance`
    (the batch norms' moving variance follows the unbiased batch variance,
    as in PyTorch: see `set_unbiased_moving_variance`).

    `recipe_table("cifar10")` is `CIFAR10_RECIPES`, at 32 x 32: those of
    `examples/reproduce_cifar10.py` (S-MobileNet v1 only, the model that
    script measured). Keys as above, plus `crop_padding` and `resize_size`
    (the arguments of `keras_slimmable.data.image_folder`).

    Treat the recipes as constants: copy (`dict(RECIPES[name])`) before
    changing one.

    Args:
        dataset: `"imagenet"` or `"cifar10"`. Defaults to `"imagenet"`.

    Returns:
        A new dict from architecture name to its recipe.
    """
    from keras_slimmable.zoo import registry

    return {
        name: registry.get_architecture(name).recipes[dataset]
        for name in registry.list_models()
        if dataset in registry.get_architecture(name).recipes
    }


def get_recipe(name, dataset="imagenet"):
    """The `dataset` recipe of the zoo architecture `name`.

    `get_recipe("s_resnet50")` is `RECIPES["s_resnet50"]` (see
    `recipe_table` for the keys). Treat it as a constant: copy it before
    changing it.

    Raises:
        ValueError: naming the unknown name and the known ones.
    """
    table = recipe_table(dataset)
    if name not in table:
        raise ValueError(
            f"Unknown recipe {name!r}"
            + ("" if dataset == "imagenet" else f" for {dataset!r}")
            + f". Known: {sorted(table)}"
        )
    return table[name]


def __getattr__(name):
    # `RECIPES` and `CIFAR10_RECIPES`, read from the zoo when asked: this
    # module is imported with the package, the zoo on first use.
    if name in _TABLES:
        return recipe_table(_TABLES[name])
    raise AttributeError(
        f"module 'keras_slimmable.recipes' has no attribute {name!r}"
    )


# Weight decay ----------------------------------------------------------


# Keras's own layers; a slimmable layer says which of its kernels are
# decayed (`SlimmableLayer.decayed_kernels`).
_KERNEL_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.Dense,
    keras.layers.EinsumDense,
)
_DEPTHWISE_LAYERS = (
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
_SEPARABLE_LAYERS = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def _decayed_kernels(layer):
    """`(regularizer attribute, kernel attribute)` pairs of `layer` that
    the reference decays."""
    if isinstance(layer, SlimmableLayer):
        return layer.decayed_kernels()
    if isinstance(layer, _DEPTHWISE_LAYERS):
        return []
    if isinstance(layer, _SEPARABLE_LAYERS):
        return [("pointwise_regularizer", "pointwise_kernel")]
    if isinstance(layer, _KERNEL_LAYERS):
        return [("kernel_regularizer", "kernel")]
    return []


def _is_depthwise_shaped(kernel):
    """The reference's test: a conv weight `(out, 1, kh, kw)`, i.e. one
    input channel per group (Keras: `(kh, kw, 1, out)`), gets no decay."""
    return len(kernel.shape) == 4 and kernel.shape[2] == 1


def apply_weight_decay(model, weight_decay=1e-4):
    """Puts the reference's weight decay on `model`, as L2 regularization.

    The reference uses PyTorch SGD's `weight_decay`, which adds
    `weight_decay * w` to the gradient of every conv and dense weight
    except depthwise convolutions (it skips every conv weight of shape
    `(out, 1, kh, kw)`), and nothing for batch norms or biases. Here each
    such kernel gets `keras.regularizers.L2(weight_decay / 2)`, whose
    gradient is exactly `weight_decay * w`; `SlimmableModel.train_step`
    adds the regularization losses once per step (in the widest width's
    pass), as the reference applies the decay once per optimizer step.

    Decayed: the kernels of `SlimmableConv2D`, `SlimmableGroupedConv2D`,
    `SlimmableDense` and Keras's conv and dense layers (the pointwise
    kernel of a separable conv). Not decayed: `SlimmableDepthwiseConv2D`
    and `keras.layers.DepthwiseConv2D`, a conv with one input channel per
    group (as in the reference), biases, batch norms. Other regularizers
    already on the model are left as they are.

    Works on a built or an unbuilt model: it sets the layer's
    `kernel_regularizer` (so `get_config` and `.keras` files keep it) and,
    if the kernel exists, the kernel variable's `regularizer` (which is
    what Keras 3 reads: `Layer.losses` calls each trainable variable's
    `regularizer`, not the layer attribute). Call it before `compile`.

    Args:
        model: a Keras model, e.g. from `keras_slimmable.zoo`. Nested
            models and layers are included.
        weight_decay: PyTorch's weight decay coefficient. Defaults to
            `1e-4`. `0` removes the kernel regularizers it would set.

    Returns:
        The paths of the decayed kernel variables.
    """
    if weight_decay < 0:
        raise ValueError(
            "`weight_decay` must be >= 0. Received: "
            f"weight_decay={weight_decay}"
        )
    regularizer = (
        keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    )
    decayed = []
    # Private Keras API: `_flatten_layers` is how Keras itself walks nested
    # layers (`losses`); checked by tests/test_keras_private_api.py.
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for regularizer_name, kernel_name in _decayed_kernels(layer):
            kernel = getattr(layer, kernel_name, None)
            if kernel is not None and _is_depthwise_shaped(kernel):
                continue
            setattr(layer, regularizer_name, regularizer)
            if kernel is not None:
                kernel.regularizer = regularizer
                if regularizer is not None:
                    decayed.append(kernel.path)
    return decayed


# Batch norm ------------------------------------------------------------


def set_unbiased_moving_variance(model, unbiased=True):
    """Sets `unbiased_moving_variance` on every
    `SwitchableBatchNormalization` layer of `model` (nested ones too).

    With `True` the moving variance follows `n / (n - 1)` times the batch
    variance, `n` the values per channel in the batch, as PyTorch's batch
    norm (and so the reference training) does; Keras's default uses the
    biased batch variance. Call it before `compile` (a compiled training
    step keeps the value it was traced with).

    Args:
        model: a Keras model, e.g. from `keras_slimmable.zoo`.
        unbiased: the value to set. Defaults to `True`.

    Returns:
        The layers set.
    """
    layers = [
        layer
        # Private Keras API, as in `apply_weight_decay`.
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, SwitchableBatchNormalization)
    ]
    for layer in layers:
        layer.unbiased_moving_variance = bool(unbiased)
    return layers


# Optimizer --------------------------------------------------------------


def sgd(learning_rate, momentum=0.9, nesterov=True):
    """The reference's optimizer: SGD with Nesterov momentum.

    Keras's Nesterov SGD keeps a velocity `v <- m v - lr g` and updates
    `w <- w + m v - lr g`; PyTorch's keeps a buffer `b <- m b + g` and
    updates `w <- w - lr (g + m b)`. With a constant learning rate the two
    are the same (`v = -lr b`, also on the first step). When the learning
    rate changes they differ: PyTorch multiplies the whole momentum buffer
    by the current rate, Keras keeps each past gradient with the rate it
    was taken at. So after a drop (x0.1 at a `StepDecay` boundary) Keras's
    steps shrink over about `1 / (1 - m)` = 10 steps instead of at once; for
    the smooth schedules (x0.98 per epoch, linear) the difference is
    negligible.

    The learning rate may be a `LearningRateSchedule`: Keras calls it with
    `optimizer.iterations`, the number of updates already applied (0 for
    the first), which `SlimmableModel` advances once per step whatever the
    number of widths.

    Weight decay is not an optimizer argument here: use
    `apply_weight_decay` (L2 regularization, as PyTorch's SGD weight
    decay). Keras's own `weight_decay=` argument is decoupled decay
    (`w <- w - lr wd w`, outside the momentum), a different method.

    Args:
        learning_rate: a float or a `LearningRateSchedule`.
        momentum: Defaults to `0.9`.
        nesterov: Defaults to `True`.

    Returns:
        A `keras.optimizers.SGD`.
    """
    return keras.optimizers.SGD(
        learning_rate=learning_rate,
        momentum=float(momentum),
        nesterov=bool(nesterov),
    )


# Learning-rate schedules -----------------------------------------------


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive int. Received: {name}={value!r}"
        )


def _epoch(step, steps_per_epoch):
    # Integer division: float32 would round the last step of a long epoch
    # up to the next epoch.
    return ops.floor_divide(ops.cast(step, "int64"), steps_per_epoch)


@keras.saving.register_keras_serializable(package="keras_slimmable")
class ExponentialPerEpoch(keras.optimizers.schedules.LearningRateSchedule):
    """`initial_learning_rate * decay ** epoch`, constant within an epoch.

    The reference MobileNets' schedule (x0.98 per epoch). `epoch` is
    `step // steps_per_epoch`, `step` counting from 0.

    Args:
        initial_learning_rate: the rate of the first epoch.
        steps_per_epoch: optimizer steps per epoch.
        decay: the factor per epoch. Defaults to `0.98`.
    """

    def __init__(self, initial_learning_rate, steps_per_epoch, decay=0.98):
        _check_positive_int(steps_per_epoch, "steps_per_epoch")
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = steps_per_epoch
        self.decay = float(decay)

    def __call__(self, step):
        epoch = ops.cast(_epoch(step, self.steps_per_epoch), "float32")
        return self.initial_learning_rate * ops.power(self.decay, epoch)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "decay": self.decay,
        }


@keras.saving.register_keras_serializable(package="keras_slimmable")
class LinearToZero(keras.optimizers.schedules.LearningRateSchedule):
    """`initial_learning_rate * (1 - step / total_steps)`, then 0.

    The reference ShuffleNet's schedule, which lowers the rate before every
    step, so its step `t` (from 0) uses `1 - (t + 1) / total_steps`: one
    step later than here, where the first step uses the initial rate.

    Args:
        initial_learning_rate: the rate of the first step.
        total_steps: the step at which the rate reaches 0
            (`epochs * steps_per_epoch`).
    """

    def __init__(self, initial_learning_rate, total_steps):
        _check_positive_int(total_steps, "total_steps")
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = total_steps

    def __call__(self, step):
        fraction = ops.cast(step, "float32") / float(self.total_steps)
        return self.initial_learning_rate * ops.maximum(1.0 - fraction, 0.0)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "total_steps": self.total_steps,
        }


@keras.saving.register_keras_serializable(package="keras_slimmable")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The rate times `factor` at each epoch of `boundaries`.

    The reference ResNet's schedule (PyTorch's `MultiStepLR`): epoch `e`
    (`step // steps_per_epoch`, from 0) uses
    `initial_learning_rate * factor ** (number of boundaries <= e)`.

    Args:
        initial_learning_rate: the rate before the first boundary.
        steps_per_epoch: optimizer steps per epoch.
        boundaries: the epochs at which the rate drops. Defaults to
            `(30, 60, 90)`.
        factor: the factor of each drop. Defaults to `0.1`.
    """

    def __init__(
        self,
        initial_learning_rate,
        steps_per_epoch,
        boundaries=(30, 60, 90),
        factor=0.1,
    ):
        _check_positive_int(steps_per_epoch, "steps_per_epoch")
        boundaries = tuple(int(b) for b in boundaries)
        if list(boundaries) != sorted(boundaries):
            raise ValueError(
                "`boundaries` must be ascending epochs. Received: "
                f"boundaries={boundaries}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = steps_per_epoch
        self.boundaries = boundaries
        self.factor = float(factor)

    def __call__(self, step):
        epoch = _epoch(step, self.steps_per_epoch)
        drops = ops.zeros((), "float32")
        for boundary in self.boundaries:
            drops = drops + ops.cast(
                ops.greater_equal(epoch, boundary), "float32"
            )
        return self.initial_learning_rate * ops.power(self.factor, drops)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "boundaries": list(self.boundaries),
            "factor": self.factor,
        }


_REQUIRED = ("batch_size", "learning_rate", "schedule", "epochs")


def make_schedule(recipe, steps_per_epoch, batch_size=None):
    """The learning-rate schedule of a recipe (see `make_optimizer`)."""
    recipe = _get_recipe(recipe)
    _check_positive_int(steps_per_epoch, "steps_per_epoch")
    learning_rate = recipe["learning_rate"]
    if batch_size is not None:
        learning_rate = scale_learning_rate(
            learning_rate, batch_size, recipe["batch_size"]
        )
    schedule = recipe["schedule"]
    if schedule == "exponential_per_epoch":
        return ExponentialPerEpoch(
            learning_rate, steps_per_epoch, decay=recipe.get("decay", 0.98)
        )
    if schedule == "linear_to_zero":
        return LinearToZero(learning_rate, recipe["epochs"] * steps_per_epoch)
    if schedule == "step_decay":
        return StepDecay(
            learning_rate,
            steps_per_epoch,
            boundaries=recipe.get("boundaries", (30, 60, 90)),
            factor=recipe.get("factor", 0.1),
        )
    raise ValueError(
        "`schedule` must be 'exponential_per_epoch', 'linear_to_zero' or "
        f"'step_decay'. Received: schedule={schedule!r}"
    )


def scale_learning_rate(learning_rate, batch_size, base_batch_size):
    """The learning rate for `batch_size`, given the rate for
    `base_batch_size`: scaled linearly, `learning_rate * batch_size /
    base_batch_size` (Goyal et al., 2017).

    This is how the reference adapts its recipes to another batch size
    (its learning rates are for the total batch of its configurations);
    momentum, weight decay and the schedule's shape in epochs stay the
    same.

    Args:
        learning_rate: the rate at `base_batch_size`.
        batch_size: the total batch size trained with.
        base_batch_size: the total batch size `learning_rate` is for.

    Returns:
        A float.
    """
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(base_batch_size, "base_batch_size")
    return float(learning_rate) * batch_size / base_batch_size


def _get_recipe(recipe):
    if isinstance(recipe, str):
        return get_recipe(recipe)
    missing = [key for key in _REQUIRED if key not in recipe]
    if missing:
        raise ValueError(
            f"A recipe needs the keys {list(_REQUIRED)}; missing {missing}. "
            f"Received: {recipe!r}"
        )
    return recipe


def make_optimizer(recipe, steps_per_epoch, batch_size=None):
    """The SGD optimizer of a recipe, with its learning-rate schedule.

    Args:
        recipe: a name of `RECIPES` (e.g. `"s_mobilenet_v1"`; see
            `get_recipe`) or a dict
            with the same keys (at least `batch_size`, `learning_rate`,
            `schedule`, `epochs`).
        steps_per_epoch: optimizer steps per epoch at the batch size you
            train with (e.g. `len(dataset)` of a batched dataset).
        batch_size: the total batch size you train with, if not the
            recipe's. The learning rate is then scaled linearly,
            `learning_rate * batch_size / recipe["batch_size"]` (Goyal et
            al., 2017), as is usual when the batch size changes; momentum,
            weight decay and the schedule's shape in epochs stay the same.
            Defaults to `None`: the recipe's batch size and rate.

    Returns:
        A `keras.optimizers.SGD` (see `sgd`) whose learning rate is the
        recipe's schedule. Weight decay is separate: `apply_weight_decay(
        model, recipe["weight_decay"])`.
    """
    recipe = _get_recipe(recipe)
    return sgd(
        make_schedule(recipe, steps_per_epoch, batch_size),
        momentum=recipe.get("momentum", 0.9),
        nesterov=recipe.get("nesterov", True),
    )
