"""How close the zoo's logits are to the reference implementation's.

    python benchmarks/reference_logits.py

Loads each reference checkpoint of `../shared/fixtures/official` into its zoo
model and prints, per width, the largest absolute difference between this
package's logits and the logits the reference PyTorch code computed on the
same images, next to the largest logit (for scale). The tests assert 1e-4;
this prints what is actually reached, for the model cards and README.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_slimmable import zoo  # noqa: E402
from keras_slimmable.zoo import load_reference_checkpoint  # noqa: E402

FIXTURES = (
    pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures"
) / "official"
MODELS = ("s_mobilenet_v1", "s_mobilenet_v2", "s_shufflenet", "s_resnet50")


def main():
    if not FIXTURES.is_dir():
        sys.exit(f"The reference fixtures are not at {FIXTURES}.")
    print("model            width  max |difference|  max |logit|")
    for name in MODELS:
        reference = np.load(FIXTURES / f"{name}_reference.npz")
        model = zoo.create_model(name)
        load_reference_checkpoint(model, FIXTURES / f"{name}.pt")
        for width in reference["widths"]:
            expected = reference[f"logits_{float(width)}"]
            logits = np.asarray(
                model(reference["input_nhwc"], width=float(width))
            )
            difference = np.abs(logits - expected).max()
            print(
                f"{name:15s}  {float(width):5.2f}  {difference:16.1e}"
                f"  {np.abs(expected).max():11.1f}"
            )


if __name__ == "__main__":
    main()
