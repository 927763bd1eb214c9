"""Slimmable training on PyTorch: Algorithm 1 as the reference runs it.

For each width from the widest to the narrowest, a forward pass and
`loss.backward()`, which adds the width's gradients into every weight's
`.grad` and frees that width's activations; then one optimizer step on the
summed gradients (exactly the reference implementation's loop).
"""

import keras
import torch

from keras_slimmable.trainers.base import SlimmableTrainerBase
from keras_slimmable.trainers.base import _batch_size


class TorchSlimmableTrainer(SlimmableTrainerBase):
    """Mixed into `SlimmableModel` ahead of Keras's PyTorch trainer."""

    def train_step(self, data):
        """One step of Algorithm 1 of the paper (see module)."""
        self._check_compiled_loss()
        x, y, sample_weight = self._unpack_batch(data)
        count = _batch_size(x)
        self.zero_grad()
        total_loss = None
        teacher = None
        passes = self._training_passes(self._draw_widths)
        for training_pass in passes:
            y_pred = self(x, training=True, width=training_pass.active)
            losses = self._pass_loss(
                x, y, y_pred, sample_weight, training_pass, teacher
            )
            loss = losses[0]
            scaled = (
                loss
                if self.optimizer is None
                else (self.optimizer.scale_loss(loss))
            )
            if self.trainable_weights:
                scaled.backward()
            if training_pass.is_widest:
                teacher = keras.tree.map_structure(lambda t: t.detach(), y_pred)
            self._record_width(
                training_pass.entry,
                y,
                keras.tree.map_structure(lambda t: t.detach(), y_pred),
                sample_weight,
                tuple(None if t is None else t.detach() for t in losses),
                count,
            )
            loss = loss.detach()
            total_loss = loss if total_loss is None else total_loss + loss
        self._record_total(total_loss, count)
        variables = [
            v for v in self.trainable_weights if v.value.grad is not None
        ]
        if variables:
            with torch.no_grad():
                self.optimizer.apply(
                    [v.value.grad for v in variables], variables
                )
        with self._compile_metrics.reporting(self._reported_entries(passes)):
            return self.get_metrics_result()

    def _draw_widths(self, count):
        """`count` widths drawn uniformly in the width range, a function
        of the sandwich rule's seed and the optimizer's step only."""
        low, high = self.width_range
        generator = torch.Generator().manual_seed(
            self.sandwich_rule.seed * 1_000_003 + int(self.optimizer.iterations)
        )
        values = torch.rand(count, generator=generator, dtype=torch.float32)
        values = low + values * (high - low)
        values = keras.ops.convert_to_tensor(values)  # on Keras's device
        return [values[i] for i in range(count)]
