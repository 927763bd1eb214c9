"""`python -m keras_slimmable.convert --model NAME CHECKPOINT`.

Converts a reference checkpoint of a zoo model into the Keras weights
cache. The command names architectures, so its code lives beside the zoo,
in `keras_slimmable/zoo/convert.py` (also `python -m
keras_slimmable.zoo.convert`); this is its entry point under the name the
documentation uses. `--help` answers without importing TensorFlow.
"""

from keras_slimmable.zoo import convert

if __name__ == "__main__":
    __doc__ = convert.__doc__  # what `--help` prints
    convert.run(convert.PROGRAM)
