"""The zoo: the reference slimmable architectures, keras.applications-style.

```python
model = keras_slimmable.zoo.s_mobilenet_v1(weights="s_mobilenet_v1.pt")
model = keras_slimmable.zoo.create_model("s_resnet50", classes=10)
keras_slimmable.zoo.list_models()
```

The builders follow keras.applications (`input_tensor`,
`classifier_activation`, inputs of at least 32x32 pixels), but output
logits by default; `preprocess_input` and `decode_predictions` are
keras.applications' for these models, with the ImageNet class names
shipped in the package.
"""

from keras_slimmable.zoo.imagenet_utils import decode_predictions
from keras_slimmable.zoo.imagenet_utils import preprocess_input
from keras_slimmable.zoo.mobilenet_v1 import s_mobilenet_v1
from keras_slimmable.zoo.mobilenet_v2 import s_mobilenet_v2
from keras_slimmable.zoo.registry import create_model
from keras_slimmable.zoo.registry import list_models
from keras_slimmable.zoo.resnet import s_resnet
from keras_slimmable.zoo.resnet import s_resnet50
from keras_slimmable.zoo.resnet import s_resnet101
from keras_slimmable.zoo.resnet import s_resnet152
from keras_slimmable.zoo.shufflenet import s_shufflenet

__all__ = [
    "create_model",
    "decode_predictions",
    "list_models",
    "preprocess_input",
    "s_mobilenet_v1",
    "s_mobilenet_v2",
    "s_resnet",
    "s_resnet50",
    "s_resnet101",
    "s_resnet152",
    "s_shufflenet",
]
