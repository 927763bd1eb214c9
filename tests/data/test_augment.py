"""Augmentation functions against numpy, PIL and geometry worked by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_slimmable.data import augment

# Public facts, typed here independently of the package.
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
EIGENVALUES = np.array([0.2175, 0.0188, 0.0045])
EIGENVECTORS = np.array(
    [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ]
)


def random_image(height=12, width=16, seed=0, low=0.0, high=1.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, (height, width, 3)).astype("float32")


def coordinate_image(height, width):
    """Channel 0: the row's y / height; 1: the column's x / width."""
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack(
        [y / height, x / width, np.full_like(y, 0.5, dtype=float)], axis=-1
    ).astype("float32")


def recover_box(output, height, width):
    """The crop box `(top, left, crop_h, crop_w)` that produced `output`
    from `coordinate_image(height, width)`: interior pixels of a bilinear
    resize of a linear ramp are exact, pixel centre `j` of the output
    sampling `left + (j + 0.5) * crop_w / size - 0.5` of the input."""
    size = output.shape[0]
    j1, j2 = size // 4, 3 * size // 4
    x1 = output[size // 2, j1, 1] * width
    x2 = output[size // 2, j2, 1] * width
    y1 = output[j1, size // 2, 0] * height
    y2 = output[j2, size // 2, 0] * height
    crop_w = (x2 - x1) * size / (j2 - j1)
    crop_h = (y2 - y1) * size / (j2 - j1)
    left = x1 + 0.5 - (j1 + 0.5) * crop_w / size
    top = y1 + 0.5 - (j1 + 0.5) * crop_h / size
    return top, left, crop_h, crop_w


# normalize --------------------------------------------------------------


def test_normalize_matches_numpy():
    image = random_image()
    np.testing.assert_allclose(
        augment.normalize(image).numpy(), (image - MEAN) / STD, atol=1e-6
    )


def test_uint8_input_is_scaled_to_unit_range():
    image = np.arange(2 * 3 * 3, dtype="uint8").reshape(2, 3, 3) * 14
    np.testing.assert_allclose(
        augment.normalize(image).numpy(), (image / 255.0 - MEAN) / STD, 1e-5
    )
    with pytest.raises(ValueError, match="uint8 or float"):
        augment.normalize(image.astype("int32"))


# resize_and_center_crop -------------------------------------------------


@pytest.mark.parametrize(
    "height, width, top, left",
    [
        (10, 14, 2, 4),  # (14 - 6) / 2 = 4
        (10, 13, 2, 4),  # round(3.5) = 4 (half to even)
        (10, 15, 2, 4),  # round(4.5) = 4 (half to even)
        (16, 10, 5, 2),  # round(5.0); portrait
    ],
)
def test_center_crop_geometry_without_resize(height, width, top, left):
    image = random_image(height, width)
    # The shorter side is already `resize_size`: a pure centre crop.
    out = augment.resize_and_center_crop(image, size=6, resize_size=10)
    np.testing.assert_allclose(
        out.numpy(), image[top : top + 6, left : left + 6], atol=1e-6
    )


def test_resize_then_center_crop_geometry():
    # 300 x 400 -> shorter side 256, longer int(256 * 400 / 300) = 341,
    # then 224: top = round(16) = 16, left = round(58.5) = 58.
    height, width = 300, 400
    image = coordinate_image(height, width)
    out = augment.resize_and_center_crop(image).numpy()
    assert out.shape == (224, 224, 3)
    rows = np.arange(60, 160)
    expected_x = ((58 + rows + 0.5) * width / 341 - 0.5) / width
    expected_y = ((16 + rows + 0.5) * height / 256 - 0.5) / height
    # The antialiasing filter's taps make a ramp exact only to ~0.1 pixel;
    # one resized pixel off would be 400 / 341 pixels (0.003 here).
    np.testing.assert_allclose(out[100, rows, 1], expected_x, atol=4e-4)
    np.testing.assert_allclose(out[rows, 100, 0], expected_y, atol=4e-4)
    assert abs(np.mean(out[100, rows, 1] - expected_x)) < 5e-5


def test_default_resize_size_is_the_reference_ratio():
    assert augment.default_resize_size(224) == 256
    assert augment.default_resize_size(32) == 37
    assert augment.resize_and_center_crop(random_image(40, 50), 32).shape == (
        32,
        32,
        3,
    )
    with pytest.raises(ValueError, match="resize_size"):
        augment.resize_and_center_crop(random_image(), 8, resize_size=6)


# random_flip ------------------------------------------------------------


def test_random_flip_is_a_mirror_or_identity():
    image = random_image()
    flipped = 0
    for seed in range(20):
        out = augment.random_flip(image, seed=seed).numpy()
        if np.array_equal(out, image[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(out, image)
        np.testing.assert_array_equal(
            out, augment.random_flip(image, seed=seed).numpy()
        )
    assert 3 <= flipped <= 17


# random_resized_crop ----------------------------------------------------


def torchvision_areas(height, width, scale, ratio, count, rng):
    """torchvision's RandomResizedCrop.get_params, in numpy: the area
    fractions of `count` crops."""
    areas = []
    for _ in range(count):
        for _ in range(10):
            target = height * width * rng.uniform(*scale)
            aspect = math.exp(
                rng.uniform(math.log(ratio[0]), math.log(ratio[1]))
            )
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                areas.append(h * w / (height * width))
                break
        else:
            areas.append(1.0)
    return np.array(areas)


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.25, 1.0)])
@pytest.mark.parametrize("sampler", ["torchvision", "inception"])
def test_random_resized_crop_box_within_scale_and_ratio(scale, sampler):
    height, width, size = 120, 160, 48
    image = coordinate_image(height, width)
    boxes = []
    for seed in range(12):
        out = augment.random_resized_crop(
            image, size, scale=scale, seed=seed, sampler=sampler
        ).numpy()
        assert out.shape == (size, size, 3)
        assert out.min() >= 0.0 and out.max() <= 1.0
        top, left, crop_h, crop_w = recover_box(out, height, width)
        # Sides are whole pixels (rounding slack of half a pixel a side).
        area = crop_h * crop_w / (height * width)
        slack = (crop_h + crop_w) / (height * width)
        assert scale[0] - slack <= area <= scale[1] + slack
        assert 3 / 4 - 0.03 <= crop_w / crop_h <= 4 / 3 + 0.03
        assert top > -0.05 and left > -0.05
        assert top + crop_h < height + 0.05 and left + crop_w < width + 0.05
        boxes.append((round(top), round(left), round(crop_h), round(crop_w)))
    assert len(set(boxes)) == len(boxes)


def test_crop_window_area_distribution_matches_torchvision():
    height, width, scale, ratio = 200, 300, (0.08, 1.0), (3 / 4, 4 / 3)
    reference = torchvision_areas(
        height, width, scale, ratio, 3000, np.random.default_rng(0)
    )

    @tf.function
    def areas(sampler):
        seeds = tf.stack([tf.range(3000), tf.zeros(3000, "int32")], axis=1)

        def area(seed):
            _, _, h, w = augment.crop_window(
                [height, width, 3], scale, ratio, seed=seed, sampler=sampler
            )
            return tf.cast(h * w, tf.float32) / (height * width)

        return tf.map_fn(area, seeds, fn_output_signature=tf.float32)

    ours = areas("torchvision").numpy()
    # Means of 3000 draws, standard error about 0.005 each.
    assert abs(ours.mean() - reference.mean()) < 0.02
    assert abs(np.median(ours) - np.median(reference)) < 0.03
    assert ours.min() >= 0.079 and ours.max() <= 1.0
    # The documented difference of tf.image.sample_distorted_bounding_box.
    inception = areas("inception").numpy()
    assert inception.mean() < reference.mean() - 0.05


@pytest.mark.parametrize("sampler", ["torchvision", "inception"])
def test_crop_window_falls_back_to_a_center_crop(sampler):
    # A 10 x 100 strip: a crop of 90% of it has an aspect of about 10,
    # outside (3/4, 4/3), so every attempt fails. torchvision's fallback:
    # the full height, width round(10 * 4/3) = 13, centred: left 43.
    for seed in range(5):
        box = augment.crop_window(
            [10, 100, 3], scale=(0.9, 1.0), seed=seed, sampler=sampler
        )
        assert [int(v) for v in box] == [0, 43, 10, 13]
    # Tall: width 10, height round(10 / (3/4)) = 13, top (100 - 13) // 2.
    box = augment.crop_window([100, 10, 3], scale=(0.9, 1.0), seed=0)
    assert [int(v) for v in box] == [43, 0, 13, 10]


def test_random_resized_crop_seed_and_arguments():
    image = random_image(40, 40)
    a = augment.random_resized_crop(image, 16, seed=(3, 4)).numpy()
    b = augment.random_resized_crop(image, 16, seed=(3, 4)).numpy()
    c = augment.random_resized_crop(image, 16, seed=(3, 5)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert augment.random_resized_crop(image, 16).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="scale"):
        augment.random_resized_crop(image, 16, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="sampler"):
        augment.random_resized_crop(image, 16, sampler="keras")
    with pytest.raises(ValueError, match="seed"):
        augment.random_resized_crop(image, 16, seed=1.5)


def test_random_resized_crop_small_images():
    image = random_image(32, 32)
    out = augment.random_resized_crop(image, 32, scale=(0.5, 1.0), seed=1)
    assert out.shape == (32, 32, 3)


# random_pad_crop --------------------------------------------------------


def test_random_pad_crop_is_a_window_of_the_padded_image():
    image = random_image(32, 32, low=0.1)  # no zeros but the padding
    padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
    offsets = set()
    for seed in range(10):
        out = augment.random_pad_crop(image, 32, padding=4, seed=seed).numpy()
        assert out.shape == (32, 32, 3)
        matches = [
            (i, j)
            for i in range(9)
            for j in range(9)
            if np.array_equal(out, padded[i : i + 32, j : j + 32])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 5


# pca_lighting -----------------------------------------------------------


def test_pca_lighting_adds_the_pca_offset():
    image = random_image(low=0.3, high=0.7)
    alpha = np.array([0.1, -0.2, 0.05])
    offset = EIGENVECTORS @ (alpha * EIGENVALUES)
    out = augment.pca_lighting(image, alpha=alpha).numpy()
    np.testing.assert_allclose(
        out - image, np.broadcast_to(offset, out.shape), atol=1e-6
    )
    # Clipped to [0, 1].
    dark = np.zeros((2, 2, 3), "float32")
    out = augment.pca_lighting(dark, alpha=[1.0, 0.0, 0.0]).numpy()
    np.testing.assert_allclose(
        out, np.clip(dark + EIGENVECTORS[:, 0] * 0.2175, 0, 1), atol=1e-7
    )


def test_pca_lighting_alpha_is_normal_with_alphastd():
    image = np.full((2, 2, 3), 0.5, "float32")
    alphas = []
    for seed in range(300):
        offset = augment.pca_lighting(image, 0.1, seed=seed).numpy()[0, 0] - 0.5
        alphas.append(np.linalg.solve(EIGENVECTORS, offset) / EIGENVALUES)
    alphas = np.array(alphas)
    # The standard error of a standard deviation from 300 draws is ~4%.
    np.testing.assert_allclose(alphas.std(axis=0), 0.1, rtol=0.15)
    np.testing.assert_allclose(alphas.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_array_equal(augment.pca_lighting(image, 0.0), image)


# color_jitter -----------------------------------------------------------


def luma(image):
    return image @ np.array([0.299, 0.587, 0.114])


def numpy_brightness(image, f):
    return np.clip(image * f, 0, 1)


def numpy_contrast(image, f):
    mean = luma(image).mean()
    return np.clip(mean + f * (image - mean), 0, 1)


def numpy_saturation(image, f):
    gray = luma(image)[..., None]
    return np.clip(gray + f * (image - gray), 0, 1)


NUMPY_ADJUSTMENTS = (numpy_brightness, numpy_contrast, numpy_saturation)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("factor", [0.6, 1.3])
def test_adjustments_match_numpy(index, factor):
    image = random_image()
    ours = (
        augment.adjust_brightness,
        augment.adjust_contrast,
        augment.adjust_saturation,
    )[index]
    np.testing.assert_allclose(
        ours(image, factor).numpy(),
        NUMPY_ADJUSTMENTS[index](image, factor),
        atol=1e-6,
    )


@pytest.mark.parametrize("index", [0, 1, 2])
def test_adjustments_match_pil_image_enhance(index):
    Image = pytest.importorskip("PIL.Image")
    ImageEnhance = pytest.importorskip("PIL.ImageEnhance")
    pixels = (random_image(20, 24, seed=3) * 255).astype("uint8")
    enhancer = (
        ImageEnhance.Brightness,
        ImageEnhance.Contrast,
        ImageEnhance.Color,
    )[index]
    ours = (
        augment.adjust_brightness,
        augment.adjust_contrast,
        augment.adjust_saturation,
    )[index]
    factor = 1.35
    expected = np.asarray(enhancer(Image.fromarray(pixels)).enhance(factor))
    out = ours(augment.to_float(pixels), factor).numpy() * 255
    # PIL works in uint8 (and rounds the contrast mean to an integer).
    assert np.abs(out - expected).max() <= 2.0


def test_color_jitter_is_its_sampled_adjustments():
    image = random_image()
    orders = set()
    for seed in range(60):
        factors, order = augment.sample_color_jitter(0.4, seed=seed)
        factors, order = factors.numpy(), order.numpy()
        assert np.all((factors >= 0.6) & (factors <= 1.4))
        assert sorted(order) == [0, 1, 2]
        orders.add(tuple(order))
        expected = image
        for index in order:
            expected = NUMPY_ADJUSTMENTS[index](expected, factors[index])
        np.testing.assert_allclose(
            augment.color_jitter(image, 0.4, seed=seed).numpy(),
            expected,
            atol=1e-5,
        )
    assert len(orders) == 6
    np.testing.assert_array_equal(augment.color_jitter(image, 0.0), image)
    with pytest.raises(ValueError, match="strength"):
        augment.color_jitter(image, -0.1)


def test_color_jitter_factors_cover_the_range():
    factors = np.array(
        [
            augment.sample_color_jitter(0.4, seed=s)[0].numpy()
            for s in range(200)
        ]
    )
    assert factors.min() < 0.65 and factors.max() > 1.35
    np.testing.assert_allclose(factors.mean(axis=0), 1.0, atol=0.06)
