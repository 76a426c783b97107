"""Models and training: real training runs on digits and synthetic data, asserted on outcomes."""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dimple_stats.protocol.schema import (
    AutoencoderConfig,
    ClassifierConfig,
    DigitsDataset,
    SyntheticDataset,
)
from runners.datasets import load_dataset
from runners.geometry.jacobian import decoder_jacobian
from runners.models import build_autoencoder, build_classifier
from runners.models.regularisers import (
    isometry_loss,
    pseudo_inverse_loss,
    relaxed_distortion,
)
from runners.store import ArtifactStore, UnsafeArtifactError
from runners.training import CheckpointError, accuracy, train_autoencoder, train_classifier

DIGITS = DigitsDataset(name="digits", eval_samples=300, pixel_range=(-1.0, 1.0))
FAST_MLP = ClassifierConfig(arch="mlp", hidden=(128,), epochs=12, batch_size=64, patience=4)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DIGITS, seed=0)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- regularisers

def test_isometry_loss_on_a_linear_decoder_is_the_hand_computed_value() -> None:
    # f(z) = W z has J = W. For u = e1: ||W e1|| = ||(3, 4, 0)|| = 5 -> (5 - 1)^2 = 16.
    # For u = e2: ||W e2|| = ||(0, 0, 0.5)|| = 0.5 -> (0.5 - 1)^2 = 0.25. Mean: 8.125.
    W = torch.tensor([[3.0, 0.0], [4.0, 0.0], [0.0, 0.5]])
    u = torch.eye(2)
    loss = isometry_loss(lambda z: z @ W.T, torch.zeros(2, 2), u)
    assert float(loss) == pytest.approx(8.125, abs=1e-6)
    # The elementwise-square bug, mean over pixels of ((J u)_i^2 - 1)^2, gives a different number,
    # so this test tells the two apart.
    ju = u @ W.T
    buggy = float(((ju**2 - 1.0) ** 2).mean())
    assert abs(buggy - 8.125) > 1.0


def test_pseudo_inverse_loss_on_a_linear_encoder() -> None:
    # g(x) = A x: u^T J_g = u^T A. Rows of A have norms 2 and 1 -> losses (2-1)^2 = 1 and 0.
    A = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    loss = pseudo_inverse_loss(lambda x: x @ A.T, torch.zeros(2, 3), torch.eye(2))
    assert float(loss) == pytest.approx(0.5, abs=1e-6)


def test_relaxed_distortion_is_one_over_k_only_for_a_scaled_isometry() -> None:
    v = math.sqrt(2) * torch.eye(2).repeat(8, 1)  # E[v v^T] = I exactly
    iso = relaxed_distortion(lambda z: z @ (5 * torch.eye(3)[:, :2]).T, torch.zeros(16, 2),
                             eta=0.0, v=v)
    aniso = relaxed_distortion(lambda z: z @ torch.tensor([[1.0, 0], [0, 2.0], [0, 0]]).T,
                               torch.zeros(16, 2), eta=0.0, v=v)
    assert float(iso) == pytest.approx(0.5, abs=1e-6)           # 1/k
    assert float(aniso) == pytest.approx(17 / 25, abs=1e-6)     # (1 + 16) / (1 + 4)^2


# --------------------------------------------------------------------------- architectures

@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("arch", ["linear", "mlp", "cnn_small", "vgg_cifar", "resnet18_cifar"])
def test_classifiers_build_for_each_image_size(arch: str, shape: tuple[int, int, int]) -> None:
    model = build_classifier(ClassifierConfig(arch=arch), image_shape=shape, num_classes=3).eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 3)


def test_torchvision_classifier_by_name() -> None:
    model = build_classifier(ClassifierConfig(arch="torchvision:resnet18"), image_shape=(3, 32, 32),
                             num_classes=4).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    with pytest.raises(ValueError, match="did you mean 'resnet18'"):
        build_classifier(ClassifierConfig(arch="torchvision:resnet19"), image_shape=(3, 32, 32),
                         num_classes=4)


@pytest.mark.parametrize("arch, shape", [("mlp", (1, 8, 8)), ("conv", (1, 28, 28)),
                                         ("conv", (3, 32, 32)), ("segnet", (3, 32, 32))])
def test_autoencoder_decoder_jacobian_by_forward_mode_matches_finite_differences(
    arch: str, shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    k = 512 if arch == "segnet" else 6
    hidden = (8, 8, 8, 8, 512) if arch == "segnet" else None  # 32 px / 2^5 = 1: k = 512
    ae = build_autoencoder(AutoencoderConfig(arch=arch, latent_dim=k, hidden=hidden),
                           image_shape=shape, pixel_range=(-1.0, 1.0)).double()
    x = torch.rand(2, *shape, dtype=torch.float64) * 2 - 1
    z = ae.encode(x).detach()
    assert z.shape == (2, k) and ae.decode(z).shape == (2, *shape)
    out = ae.decode(z)
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    if arch == "segnet":
        return  # its 3072 x 512 Jacobian is a benchmark matter; the conv case covers the same ops
    # Forward mode through every layer (no BatchNorm to trip torch.func) against a central
    # difference along a random direction: independent of automatic differentiation.
    jac = decoder_jacobian(ae.decode, z)
    v = torch.randn(2, k, dtype=torch.float64)
    h = 1e-5
    fd = (ae.decode(z + h * v) - ae.decode(z - h * v)).reshape(2, -1) / (2 * h)
    jv = torch.einsum("bnk,bk->bn", jac, v)
    assert float((jv - fd).norm() / fd.norm()) < 1e-6


# --------------------------------------------------------------------------- classifier training

def test_digits_mlp_reaches_90_percent(digits) -> None:
    result = train_classifier(ClassifierConfig(arch="mlp", epochs=30, batch_size=64), digits,
                              data_config=DIGITS, seed=0)
    assert result.metrics["test_accuracy"] >= 0.90
    assert result.metrics["test_accuracy"] == accuracy(result.model, digits.eval.x, digits.eval.y)


def test_same_seed_bit_identical_weights_other_seed_differs(digits) -> None:
    a = train_classifier(FAST_MLP, digits, data_config=DIGITS, seed=3).model
    b = train_classifier(FAST_MLP, digits, data_config=DIGITS, seed=3).model
    c = train_classifier(FAST_MLP, digits, data_config=DIGITS, seed=4).model
    assert same_weights(a, b)
    assert not same_weights(a, c)


def test_store_loads_instead_of_retraining(digits, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    first = train_classifier(FAST_MLP, digits, data_config=DIGITS, seed=0, store=store)
    second = train_classifier(FAST_MLP, digits, data_config=DIGITS, seed=0, store=store)
    assert not first.loaded and second.loaded and first.key == second.key
    assert same_weights(first.model, second.model)
    assert second.metrics == first.metrics
    changed = FAST_MLP.model_copy(update={"lr": 5e-4})
    third = train_classifier(changed, digits, data_config=DIGITS, seed=0, store=store)
    assert not third.loaded and third.key != first.key
    assert len(list(store.keys("train_classifier"))) == 2


def test_user_checkpoint_is_loaded_with_weights_only(digits, tmp_path: Path) -> None:
    trained = train_classifier(FAST_MLP, digits, data_config=DIGITS, seed=0).model
    path = tmp_path / "mine.pt"
    torch.save(trained.state_dict(), path)
    mine = train_classifier(FAST_MLP.model_copy(update={"checkpoint": str(path)}), digits,
                            data_config=DIGITS, seed=1)
    assert same_weights(mine.model, trained)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"net.0.weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused unread"):
        train_classifier(FAST_MLP.model_copy(update={"checkpoint": str(tmp_path / "evil.pt")}),
                         digits, data_config=DIGITS, seed=0)
    assert not marker.exists()
    assert UnsafeArtifactError  # the store's own refusal is tested in test_store.py


@pytest.mark.parametrize("content, needle", [
    ("empty", "cannot read: empty"),
    ("text", "not a torch checkpoint"),
    ("hello", "not a torch checkpoint (KeyError)"),  # text whose bytes are pickle opcodes
    ("yaml", "not a torch checkpoint (IndexError)"),
    ("list", "holds a list, not a state dict"),
    ("tensor", "holds a Tensor, not a state dict"),
    ("other_widths", "not weights of this MLPClassifier"),
    ("nan", "weight net.1.weight holds NaN or inf"),  # a diverged training's weights
    ("raw_pickle", "cannot read: not a torch checkpoint"),  # and no torch warning line
])
def test_a_checkpoint_that_is_not_these_weights_is_a_one_line_error(
        content: str, needle: str, digits, tmp_path: Path) -> None:
    path = tmp_path / "mine.pt"
    if content == "empty":
        path.write_bytes(b"")
    elif content == "text":
        path.write_text("not a checkpoint")
    elif content == "hello":
        path.write_text("hello")
    elif content == "yaml":
        path.write_text("a: 1\n")
    elif content == "list":
        torch.save([torch.zeros(3)], path)
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "nan":
        state = train_classifier(FAST_MLP.model_copy(update={"epochs": 1}), digits,
                                 data_config=DIGITS, seed=0).model.state_dict()
        state["net.1.weight"][0, 0] = float("nan")
        torch.save(state, path)
    elif content == "raw_pickle":  # a plain pickle (protocol 4: torch warns) that names code
        path.write_bytes(pickle.dumps({"w": _Evil()}, protocol=4))
    else:  # a classifier of other widths
        other = FAST_MLP.model_copy(update={"hidden": (7,), "epochs": 1})
        torch.save(train_classifier(other, digits, data_config=DIGITS, seed=0).model.state_dict(),
                   path)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(CheckpointError) as info:
        warnings.simplefilter("always")
        train_classifier(FAST_MLP.model_copy(update={"checkpoint": str(path)}), digits,
                         data_config=DIGITS, seed=0)
    assert str(path) in str(info.value) and needle in str(info.value)
    assert "\n" not in str(info.value)
    assert not [w for w in caught if "torch" in w.filename], [str(w.message) for w in caught]
    if "cannot read" in str(info.value) or "not a state dict" in str(info.value):
        assert str(info.value).endswith("save it with torch.save(model.state_dict(), PATH)")


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled",))


# --------------------------------------------------------------------------- autoencoder training

# Data on a known 4-dim manifold and autoencoders with k = 4: a plain autoencoder learns some
# parametrisation of it, the regularised ones a near-isometric one.
SYNTH = SyntheticDataset(name="synthetic", latent_dim=4, train_samples=2000, eval_samples=200,
                         pixel_range=(-1.0, 1.0))
AE_BASE = dict(arch="mlp", latent_dim=4, hidden=(128, 64), epochs=60, batch_size=64, patience=10)


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset(SYNTH, seed=0)


@pytest.fixture(scope="module")
def plain_ae(synthetic):
    return train_autoencoder(AutoencoderConfig(**AE_BASE), synthetic, data_config=SYNTH, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("regulariser", [{"kind": "isometric", "weight": 0.1},
                                         {"kind": "irvae", "weight": 0.1}])
def test_regularised_autoencoder_is_4x_better_conditioned_at_under_3x_mse(synthetic, plain_ae,
                                                                          regulariser) -> None:
    reg = train_autoencoder(AutoencoderConfig(**AE_BASE, regulariser=regulariser), synthetic,
                            data_config=SYNTH, seed=0)
    plain, iso = plain_ae.metrics, reg.metrics
    # Measured with seed 0 under dimple_stats.seeds.derive_seed: plain median cond(J^T J) 7.4,
    # isometric 1.5 (4.9x) at 2.02x the plain MSE; 5x at <= 2x held under the earlier seed
    # derivation. 4x at <= 2.5x leaves room for the seed and still fails an inert regulariser
    # (ratio ~1) or one that buys conditioning by giving up reconstruction.
    assert iso["median_cond"] * 4 <= plain["median_cond"], (plain, iso)
    assert iso["recon_mse"] <= 2.5 * plain["recon_mse"], (plain, iso)
    assert iso["mean_sigma_spread"] < plain["mean_sigma_spread"]


def test_recon_vs_mean_flags_an_untrained_autoencoder(synthetic, plain_ae) -> None:
    # An autoencoder that learned nothing is no better than predicting the mean image.
    untrained = train_autoencoder(AutoencoderConfig(**{**AE_BASE, "epochs": 0}), synthetic,
                                  data_config=SYNTH, seed=0)
    assert untrained.metrics["recon_vs_mean"] > 0.9
    assert plain_ae.metrics["recon_vs_mean"] < 0.1


def test_autoencoder_same_seed_bit_identical(synthetic) -> None:
    config = AutoencoderConfig(**{**AE_BASE, "epochs": 2},
                               regulariser={"kind": "isometric", "weight": 0.1})
    a = train_autoencoder(config, synthetic, data_config=SYNTH, seed=1).model
    b = train_autoencoder(config, synthetic, data_config=SYNTH, seed=1).model
    assert same_weights(a, b)


def test_oracle_autoencoder_reconstructs_exactly(synthetic) -> None:
    oracle = train_autoencoder(AutoencoderConfig(arch="oracle"), synthetic, data_config=SYNTH,
                               seed=0)
    assert oracle.metrics["recon_mse"] < 1e-10
    assert torch.allclose(oracle.model.encode(synthetic.eval.x), synthetic.eval.latent, atol=1e-5)


def test_train_classes_restricts_the_autoencoder_training_set(digits) -> None:
    from runners.training import _train_subset

    cfg = DIGITS.model_copy(update={"classes": (3, 5, 7)})
    data = load_dataset(cfg, seed=0)
    subset = _train_subset(data.train, (5, 7), cfg)
    assert set(subset.y.tolist()) == {1, 2}  # remapped labels of classes 5 and 7
    assert len(subset) == int(torch.isin(data.train.y, torch.tensor([1, 2])).sum())


def test_cli_train_then_load(tmp_path: Path) -> None:
    from dimple_stats.cli import app

    protocol = tmp_path / "p.yaml"
    text = ("name: tiny\ndataset: {name: digits, eval_samples: 100}\n"
            "classifier: {arch: mlp, hidden: [32], epochs: 2}\n"
            "autoencoders:\n  plain: {arch: mlp, latent_dim: 8, hidden: [64], epochs: 30}\n"
            "claims: [dmm.perpendicular]\nseeds: [0]\n")
    protocol.write_text(text)
    runner = CliRunner()
    args = ["train", str(protocol), "--store", str(tmp_path / "store"), "--device", "cpu"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "classifier" in first.output and "False" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "False" not in second.output and "True" in second.output
    missing = runner.invoke(app, [*args, "--set", "dataset={name: mnist, root: " + str(tmp_path)
                                  + "/none}"])
    assert missing.exit_code == 2 and "train-images-idx3-ubyte" in missing.output
    # `train` runs the same training step as `run`, collapse check included: two epochs of a
    # narrow autoencoder reconstruct worse than the mean image, exit 1 naming the keys to change.
    protocol.write_text(text.replace("latent_dim: 8, hidden: [64], epochs: 30",
                                     "latent_dim: 4, hidden: [32], epochs: 2"))
    collapsed = runner.invoke(app, args)
    assert collapsed.exit_code == 1 and "collapsed" in collapsed.output, collapsed.output


# --------------------------------------------------------------------------- divergence, clipping

def _irvae(lr: float, grad_clip: float | None = None, epochs: int = 3) -> AutoencoderConfig:
    return AutoencoderConfig(arch="mlp", latent_dim=8, hidden=(64, 64), epochs=epochs,
                             batch_size=64, lr=lr, patience=None, grad_clip=grad_clip,
                             regulariser={"kind": "irvae", "weight": 1.0, "eta": 0.2})


def test_a_diverging_training_stops_keeps_finite_weights_and_says_so(digits) -> None:
    """IRVAE at Adam lr 0.1 on the digits reaches a non-finite loss in its first epoch (measured:
    the distortion ratio's denominator vanishes). Training stops there instead of running its
    remaining epochs on NaN weights, keeps the best (here: the initial) weights, records the
    epoch, and the collapse check that follows names grad_clip."""
    from runners.training import CollapsedAutoencoderError, check_not_collapsed

    config = _irvae(0.1)
    result = train_autoencoder(config, digits, data_config=DIGITS, seed=0)
    m = result.metrics
    assert m["diverged_epoch"] == 1 and m["epochs_run"] == 0 and m["best_epoch"] == 0
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert math.isfinite(m["recon_vs_mean"]) and m["recon_vs_mean"] > 0.9  # untrained
    with pytest.raises(CollapsedAutoencoderError, match=r"diverged .* epoch 1: set "
                       r"autoencoders\.irvae\.grad_clip \(now None\)"):
        check_not_collapsed("irvae", 0, config, m)
    # a stable run records no divergence
    assert "diverged_epoch" not in train_autoencoder(_irvae(0.01), digits, data_config=DIGITS,
                                                     seed=0).metrics


def test_grad_clip_is_applied_to_each_step(digits) -> None:
    """With the gradient's norm clipped to 1e-12, far below Adam's eps (1e-8), every update is
    about lr * 1e-4 of its size, so the weights hardly move; unclipped they do."""
    start = train_autoencoder(_irvae(1e-3, epochs=0), digits, data_config=DIGITS, seed=0).model
    moved = {}
    for clip in (None, 1e-12):
        trained = train_autoencoder(_irvae(1e-3, clip, epochs=1), digits, data_config=DIGITS,
                                    seed=0).model
        moved[clip] = max(float((a - b).abs().max()) for a, b in
                          zip(trained.parameters(), start.parameters()))
    assert moved[None] > 1e-2 and moved[1e-12] < 1e-4


def test_grad_clip_enters_store_keys_only_when_set() -> None:
    """Checkpoints keyed before grad_clip existed keep their keys while it is null."""
    from runners.training import config_identity

    assert "grad_clip" not in config_identity(_irvae(1e-3))
    assert config_identity(_irvae(1e-3, 1.0))["grad_clip"] == 1.0
    assert config_identity(FAST_MLP).get("adversarial", "absent") == "absent"
