"""The reference training recipe as code: weight decay, SGD, schedules."""

import keras

RECIPES = {}


def apply_weight_decay(model, weight_decay=1e-4):
    """L2 on conv and dense kernels except depthwise (not yet implemented)."""
    raise NotImplementedError


def sgd(learning_rate, momentum=0.9, nesterov=True):
    """SGD with Nesterov momentum."""
    return keras.optimizers.SGD(
        learning_rate=learning_rate, momentum=momentum, nesterov=nesterov
    )


class ExponentialPerEpoch(keras.optimizers.schedules.LearningRateSchedule):
    """x`decay` per epoch, constant within an epoch."""

    def __init__(self, initial_learning_rate, steps_per_epoch, decay=0.98):
        raise NotImplementedError


class LinearToZero(keras.optimizers.schedules.LearningRateSchedule):
    """Linear from the initial learning rate to 0 at `total_steps`."""

    def __init__(self, initial_learning_rate, total_steps):
        raise NotImplementedError


class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """x`factor` at each epoch of `boundaries`."""

    def __init__(
        self,
        initial_learning_rate,
        steps_per_epoch,
        boundaries=(30, 60, 90),
        factor=0.1,
    ):
        raise NotImplementedError


def make_optimizer(recipe, steps_per_epoch, batch_size=None):
    """The SGD optimizer and schedule of a recipe."""
    raise NotImplementedError
