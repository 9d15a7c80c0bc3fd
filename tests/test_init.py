"""Initialisation tricks of the CPU recipes: exact properties, and never applied to weights being fine-tuned."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from hf_fmnist.core import recipes
from hf_fmnist.core.config import TrainConfig
from hf_fmnist.core.loader import Preprocess
from hf_fmnist.core.models import create_model, pca_init_stem, preset_image_processor, zero_init_residual
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training.loop import Data, initialise
from hf_fmnist.training.settings import resolve


def _images(n: int = 2000) -> torch.Tensor:
    """Structured uint8 images (the synthetic classes), so patches have a non-trivial covariance."""
    from conftest import class_patterns

    g = torch.Generator().manual_seed(0)
    patterns = torch.as_tensor(class_patterns())
    labels = torch.arange(n) % 10
    noise = torch.randint(0, 90, (n, 28, 28), generator=g)
    return torch.where(patterns[labels], 150 + noise, noise).to(torch.uint8)


PRE = Preprocess.from_processor(preset_image_processor(), 3)


def test_zero_init_residual_zeroes_exactly_the_last_norm_of_every_residual_branch():
    model = create_model("cnn")
    assert zero_init_residual(model) == 5  # depths 1 + 2 + 2
    for module in model.modules():
        if type(module).__name__ == "RegNetXLayer":
            norms = [m for m in module.layer.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            assert torch.all(norms[-1].weight == 0)
            assert all(torch.all(n.weight == 1) for n in norms[:-1])  # the others keep their initialisation
            x = torch.randn(4, module.layer[0].convolution.in_channels, 7, 7)
            module.eval()
            assert torch.equal(module(x), F.relu(module.shortcut(x)))  # the block starts as its shortcut
    assert zero_init_residual(create_model("vit")) == 0


def test_zero_init_residual_makes_resnet_and_convnext_blocks_start_as_their_shortcut():
    """The presets transformers.js runs get the same trick: each block's output is its shortcut's at the start."""
    model = create_model("resnet").eval()
    assert zero_init_residual(model) == 5  # basic blocks, depths 1 + 2 + 2
    blocks = [m for m in model.modules() if type(m).__name__ == "ResNetBasicLayer"]
    assert len(blocks) == 5
    for block in blocks:
        x = torch.randn(2, block.layer[0].convolution.in_channels, 7, 7)
        assert torch.equal(block(x), F.relu(block.shortcut(x)))
    model = create_model("convnext").eval()
    assert zero_init_residual(model) == 5
    for block in (m for m in model.modules() if type(m).__name__ == "ConvNextLayer"):
        x = torch.randn(2, block.dwconv.in_channels, 7, 7)
        assert torch.equal(block(x), x)  # no drop path at rate 0: the residual adds exactly zero
    assert zero_init_residual(create_model("pvt1")) == 0


@pytest.mark.parametrize(
    "preset, stem",
    [("resnet", "resnet.embedder.embedder.convolution"), ("convnext", "convnext.embeddings.patch_embeddings")],
)
def test_pca_stem_initialises_the_new_presets_stems(preset, stem):
    """ResNet's 7×7 stem and ConvNeXt's 2×2 patchify stem get the principal components, ± each."""
    model = create_model(preset)
    conv = model.get_submodule(stem)
    before = conv.weight.detach().clone()
    assert pca_init_stem(model, PRE(_images(500)))
    count = min(conv.out_channels // 2, conv.kernel_size[0] * conv.kernel_size[1])
    assert not torch.equal(conv.weight[:count], before[:count])
    assert torch.allclose(conv.weight[count : 2 * count], -conv.weight[:count])
    assert torch.equal(conv.weight[2 * count :], before[2 * count :])


def test_pca_stem_filters_whiten_the_patches_largest_component_first():
    """Conv outputs of the first filters are decorrelated with variance λ/(λ+ε), in decreasing order; the next
    filters are their negatives; the rest keep their random initialisation."""
    model = create_model("cnn")
    conv = model.regnet.embedder.embedder.convolution
    before = conv.weight.detach().clone()
    pixels = PRE(_images())
    assert pca_init_stem(model, pixels)
    with torch.no_grad():
        out = conv(pixels)  # (N, 32, 14, 14)
    features = out[:, :9].permute(0, 2, 3, 1).reshape(-1, 9)
    cov = torch.cov(features.T)
    diagonal = cov.diagonal()
    assert torch.all(diagonal <= 1 + 1e-4) and torch.all(diagonal[:-1] >= diagonal[1:] - 1e-5)
    assert diagonal[0] > 0.99  # the largest component's variance is far above ε
    assert (cov - torch.diag(diagonal)).abs().max() < 1e-3 * diagonal[0]
    assert torch.allclose(conv.weight[9:18], -conv.weight[:9])
    assert torch.equal(conv.weight[18:], before[18:])
    channels = conv.weight[:9]
    assert torch.allclose(channels[:, 0], channels[:, 1]) and torch.allclose(channels[:, 0], channels[:, 2])


def test_pca_stem_leaves_models_without_a_small_first_convolution_alone():
    model = create_model("cnn")
    model.regnet.embedder.embedder.convolution = torch.nn.Conv2d(3, 32, 9, stride=2, padding=4)
    weights = model.regnet.embedder.embedder.convolution.weight.detach().clone()
    assert not pca_init_stem(model, PRE(_images(100)))
    assert torch.equal(model.regnet.embedder.embedder.convolution.weight, weights)
    # padding given as a string ("same") cannot be passed to unfold: such a stem is left alone, not a TypeError
    model.regnet.embedder.embedder.convolution = torch.nn.Conv2d(3, 32, 3, padding="same")
    weights = model.regnet.embedder.embedder.convolution.weight.detach().clone()
    assert not pca_init_stem(model, PRE(_images(100)))
    assert torch.equal(model.regnet.embedder.embedder.convolution.weight, weights)


def test_initialisation_applies_to_presets_only_and_an_explicit_flag_on_a_checkpoint_is_refused():
    """A recipe's initialisation must never overwrite weights being fine-tuned: for a checkpoint the recipe's tricks
    are dropped, and asking for one explicitly is one clear error."""
    recipe = recipes.get("cpu-5min")
    assert recipe.zero_init_residual and recipe.pca_stem
    preset = resolve(TrainConfig(output_dir="o", recipe="cpu-5min"), recipe)
    assert preset.zero_init_residual is True and preset.pca_stem is True
    tuned = resolve(TrainConfig(output_dir="o", recipe="cpu-5min", model_name_or_path="someone/fashion-cnn"), recipe)
    assert tuned.zero_init_residual is False and tuned.pca_stem is False
    with pytest.raises(HfFmnistError, match="--pca_stem initialises a new model, but 'someone/fashion-cnn' is a"):
        resolve(TrainConfig(output_dir="o", model_name_or_path="someone/fashion-cnn", pca_stem=True), recipe)
    images = _images(64)
    labels = torch.zeros(64, dtype=torch.long)
    data = Data(["x"] * 10, images, labels, images, labels, "test")
    model = create_model("cnn")
    initialise(model, preset, PRE, data)
    assert torch.all(model.regnet.encoder.stages[0].layers[0].layer[2].normalization.weight == 0)


def test_the_pca_stem_is_fitted_on_training_images_never_on_test_images(monkeypatch):
    from hf_fmnist.core import models

    seen = []
    monkeypatch.setattr(models, "pca_init_stem", lambda model, x: seen.append(x) or True)
    train_images, test_images = _images(8), 255 - _images(8)
    labels = torch.zeros(8, dtype=torch.long)
    data = Data(["x"] * 10, train_images, labels, test_images, labels, "test")
    initialise(create_model("cnn"), SimpleNamespace(zero_init_residual=False, pca_stem=True), PRE, data)
    assert len(seen) == 1 and torch.equal(seen[0], PRE(train_images))
