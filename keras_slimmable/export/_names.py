"""Names of signatures, served models and inputs (no TensorFlow needed)."""

import re

from keras_slimmable.widths import width_name

INPUT_NAME = "images"
QUANTIZATIONS = (None, "float16", "dynamic_range", "int8")

# A served model name is a segment of TF Serving's REST URL
# (`/v1/models/<name>:predict`, where `/` and `:` end the name), a folder
# name under the export folder (not hidden: exports keep their scratch
# folders under hidden names), and, with the width suffix, at most 255
# bytes. Letters, digits, `_` and `-` (ASCII) are safe in all three.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")


def signature_name(width):
    """`serving_w0_25` for width 0.25."""
    return f"serving_{width_name(width, '_')}"


def served_model_name(name, width):
    """`<name>_w0_25`: the TF Serving model name of one width."""
    return f"{name}_{width_name(width, '_')}"


def check_model_name(name):
    """Raises `ValueError` unless TF Serving can serve `name` (see above)."""
    if not (isinstance(name, str) and _MODEL_NAME.fullmatch(name)):
        raise ValueError(
            "`name` must be 1 to 200 ASCII letters, digits, '_' or '-', "
            "starting with a letter or digit (it is part of TF Serving's "
            "URLs and a folder name). Received: "
            f"name={name!r}"
        )
