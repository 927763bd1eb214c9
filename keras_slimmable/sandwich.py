"""Training universally slimmable networks: the sandwich rule and inplace
distillation (Yu & Huang, ICCV 2019).

`SlimmableModel.compile(..., sandwich_rule=SandwichRule(4))` makes every
training step run the widest width, the narrowest and `num_widths - 2`
widths drawn at random in the model's `width_range`, sum their gradients
and take one optimizer step. `compile(..., inplace_distillation=True)`
makes every width but the widest learn from the widest's predictions
(soft targets, no gradient to the widest) instead of the labels, with the
sandwich rule or with the fixed widths of the first paper.

The drawn widths of a step depend only on the rule's seed and the
optimizer's iteration count, so a resumed run draws what an uninterrupted
one would. They run inside the one compiled training step without
retracing: layers compute at their widest and zero the channels beyond the
drawn width's count (`keras_slimmable.layers.base.mask_sampled`).
"""

import random

import keras


@keras.saving.register_keras_serializable(package="keras_slimmable")
class SandwichRule:
    """The widths of one training step: the widest, the narrowest and
    `num_widths - 2` drawn uniformly at random in the model's range.

    Args:
        num_widths: widths per step, at least 2 (the reference's US-Nets
            train with 4). Defaults to `4`.
        seed: the seed of the random widths (with the step number). Defaults
            to `None`: one drawn now and kept in the config, so a saved and
            resumed model keeps drawing the same widths.
    """

    def __init__(self, num_widths=4, seed=None):
        if (
            isinstance(num_widths, bool)
            or not isinstance(num_widths, int)
            or num_widths < 2
        ):
            raise ValueError(
                "`num_widths` must be an int of at least 2 (the widest and "
                f"the narrowest). Received: num_widths={num_widths!r}"
            )
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(
                "`seed` must be a non-negative int or None. Received: "
                f"seed={seed!r}"
            )
        self.num_widths = num_widths
        self.seed = seed

    @property
    def num_sampled(self):
        """The widths drawn at random per step."""
        return self.num_widths - 2

    def get_config(self):
        return {"num_widths": self.num_widths, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"SandwichRule(num_widths={self.num_widths}, seed={self.seed})"


def standardize_sandwich_rule(value):
    """`None`, an int (the number of widths per step) or a `SandwichRule`."""
    if value is None or isinstance(value, SandwichRule):
        return value
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return SandwichRule(value)
    raise ValueError(
        "`sandwich_rule` must be None, an int (widths per step) or a "
        f"SandwichRule. Received: sandwich_rule={value!r}"
    )


def distillation_from_logits(loss):
    """Whether the compiled `loss` (a categorical cross-entropy, sparse or
    not) takes logits: inplace distillation compares the same kind of
    outputs.

    Raises:
        ValueError: for any other loss.
    """
    names = {
        "sparse_categorical_crossentropy",
        "categorical_crossentropy",
    }
    if isinstance(loss, str) and loss in names:
        return False
    if isinstance(
        loss,
        (
            keras.losses.SparseCategoricalCrossentropy,
            keras.losses.CategoricalCrossentropy,
        ),
    ):
        return bool(loss.get_config().get("from_logits", False))
    raise ValueError(
        "Inplace distillation trains the narrower widths on the widest "
        "width's predicted class probabilities, so the loss must be a "
        "categorical cross-entropy (keras.losses.SparseCategorical"
        "Crossentropy or CategoricalCrossentropy, or their names). "
        f"Received: loss={loss!r}"
    )


def distillation_loss(teacher, y_pred, sample_weight, from_logits):
    """The cross-entropy of `y_pred` against the widest width's predicted
    distribution `teacher` (no gradient flows to `teacher`): per example
    `-sum_k p_k log q_k`, averaged over the batch as the compiled loss is.
    """
    teacher = keras.ops.stop_gradient(teacher)
    if from_logits:
        teacher = keras.ops.softmax(teacher, axis=-1)
    return keras.losses.CategoricalCrossentropy(from_logits=from_logits)(
        teacher, y_pred, sample_weight
    )
