"""The attack libraries' minimal-norm attacks (fmn, ddn, deepfool, fab) behind the contract.

Parity: on a digits classifier (the quickstart protocol's pixel range [-1, 1], 150 eval
images, seed 0), each library attack's refined minimal L2 norms have a median within 5% of our
refined PGD's (over the images both break), and the share of the perturbation in the tangent
space of a small autoencoder, r_T = ||P_T delta|| / ||delta||, a median within 0.02 of PGD's.
Measured here (median norm relative to PGD's; r_T median minus PGD's): fmn -1.4%, -0.003;
ddn +1.2%, -0.004; deepfool +0.0%, -0.008 (on the 80 images of 141 it breaks, 68 on another
CPU: torchattacks clips every DeepFool step to the pixel box and stalls there on the others,
which are censored);
fab -1.3%, +0.000. Where PGD and the library differ it is PGD that is not minimal: on some
images FMN and FAB (which agree with each other within 1.5%) find boundary points up to 25%
closer than the end of PGD's gradient path. On other models of the same data the medians
moved further apart (pixel range [0, 1], 53 images: fmn -6.8%, fab -6.6%, ddn +11%; [0, 1],
138 images: ddn +5.6%), so this is a check that the wrappers measure the same quantity, not a
claim that PGD's norms are minimal.

Contract: censoring at a tiny eps, perturbations inside the pixel box (scalar and per-pixel
bounds), plain mode from the library and on/off from PGD, a gradient projection refused,
unsupported options and a missing library as BadInput (also through the command line, before
any compute), the caller's model mode and global RNG left alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dimple_stats.errors import EXIT_BAD_INPUT, BadInput
from dimple_stats.protocol.schema import (
    AttackConfig,
    AutoencoderConfig,
    ClassifierConfig,
    DigitsDataset,
    TangentConfig,
)
from runners.attacks import L2PGD, LinfPGD, attack_from_config, make_attack
from runners.attacks.base import batch_norm
from runners.attacks.library import (
    LibraryAttack,
    MissingAttackLibrary,
    UnsupportedAttackOption,
    check_attack_available,
)
from runners.datasets import load_dataset
from runners.geometry.spaces import decoder_in_dtype, tangent_space
from runners.measure import correctly_classified
from runners.models.classifiers import MLPClassifier, freeze
from runners.training import train_autoencoder, train_classifier

pytest.importorskip("foolbox")
pytest.importorskip("torchattacks")

LIBRARY_METHODS = ("fmn", "ddn", "deepfool", "fab")
NORMS = {"fmn": ("l2", "linf"), "ddn": ("l2",), "deepfool": ("l2",), "fab": ("l2", "linf")}
CASES = [(m, n) for m in LIBRARY_METHODS for n in NORMS[m]]
EXTRA_HINT = 'pip install "dimple-stats[attacks]"'


# --------------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def digits():
    """A digits classifier and autoencoder, the correctly classified eval images, their tangent
    spaces, and PGD's refined minimal-norm perturbations with a generous budget."""
    config = DigitsDataset(name="digits", pixel_range=(-1.0, 1.0), eval_samples=150)
    data = load_dataset(config, seed=0)
    clf = train_classifier(ClassifierConfig(arch="mlp", hidden=(128,), epochs=15), data,
                           data_config=config, seed=0).model.eval()
    auto = train_autoencoder(AutoencoderConfig(arch="mlp", latent_dim=8, hidden=(128, 64),
                                               epochs=25), data, data_config=config,
                             seed=0).model.eval()
    keep = correctly_classified(clf, data.eval.x, data.eval.y)
    x, y = data.eval.x[keep], data.eval.y[keep]
    with torch.no_grad():
        z = auto.encode(x)
    space = tangent_space(decoder_in_dtype(auto, torch.float64), z,
                          config=TangentConfig(dtype="float64"))
    # 2000 steps of 0.02 travel 40, twice the image box's diameter; 16 halvings: 0.002%.
    pgd = L2PGD(eps=40.0, step=0.02, steps=2000, refine=True, refine_steps=16,
                bounds=data.pixel_range)(clf, x, y)
    assert bool(pgd.success.all())
    return clf, x, y, space, data.pixel_range, pgd


@pytest.mark.slow
@pytest.mark.parametrize("method", LIBRARY_METHODS)
def test_minimal_norms_and_tangent_shares_match_refined_pgd(digits, method: str) -> None:
    clf, x, y, space, bounds, pgd = digits
    res = make_attack(method, "l2", eps=40.0, steps=100, refine=True, refine_steps=16,
                      bounds=bounds)(clf, x, y)
    both = res.success & pgd.success
    # DeepFool broke 80 of 141 on one CPU and 68 on another (the classifier's training rounds
    # differently across CPUs, see the module notes); 50 pairs still pin a median within 5%.
    # The other attacks break every image.
    assert int(both.sum()) >= (50 if method == "deepfool" else len(x))
    median, reference = float(res.norm[both].median()), float(pgd.norm[both].median())
    assert abs(median / reference - 1) < 0.05, (median, reference)
    r_t = float(space.ratio(res.delta[both].double()).median())
    r_t_pgd = float(space.ratio(pgd.delta[both].double()).median())
    assert abs(r_t - r_t_pgd) < 0.02, (r_t, r_t_pgd)
    adv = x + res.delta
    assert float(adv.min()) >= bounds[0] and float(adv.max()) <= bounds[1]


# ------------------------------------------------------------------------------ contract


def _tiny(seed: int = 0) -> tuple[MLPClassifier, torch.Tensor, torch.Tensor]:
    """An untrained 3-class MLP on 4x4 images in [-1, 1], labels = its predictions."""
    torch.manual_seed(seed)
    model = freeze(MLPClassifier(image_shape=(1, 4, 4), num_classes=3, hidden=(16,), dropout=0.0))
    x = 2 * torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(seed + 1)) - 1
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


@pytest.mark.parametrize("method, norm", CASES)
def test_a_tiny_eps_censors_every_row_and_keeps_it(method: str, norm: str) -> None:
    model, x, y = _tiny()
    eps = 1e-4
    res = make_attack(method, norm, eps=eps, steps=20, refine=True, bounds=(-1.0, 1.0))(
        model, x, y)
    assert len(res.norm) == len(x) and not bool(res.success.any())
    assert bool((res.norm == eps).all()) and res.eps == eps and res.p == norm
    assert float(batch_norm(res.delta, norm).max()) <= eps * (1 + 1e-5)  # shrunk onto the ball
    with torch.no_grad():  # what is kept is not adversarial
        assert torch.equal(model(x + res.delta).argmax(dim=1), y)
    assert res.steps.dtype == res.forward_evals.dtype == torch.int64
    assert bool((res.forward_evals >= 1).all())


@pytest.mark.parametrize("method, norm", CASES)
def test_perturbed_images_stay_in_the_pixel_box(method: str, norm: str) -> None:
    model, x, y = _tiny(1)
    for lo, hi in ((-1.0, 1.0), (torch.full((1, 4, 4), -1.0), torch.linspace(0.5, 1.0, 16)
                                 .reshape(1, 4, 4))):  # scalar and per-pixel bounds
        xb = torch.maximum(torch.minimum(x, torch.as_tensor(hi)), torch.as_tensor(lo))
        res = make_attack(method, norm, eps=10.0, steps=50, refine=True, bounds=(lo, hi))(
            model, xb, y)
        assert int(res.success.sum()) >= len(x) // 2
        adv = xb + res.delta
        assert bool((adv >= torch.as_tensor(lo) - 1e-6).all())
        assert bool((adv <= torch.as_tensor(hi) + 1e-6).all())
        with torch.no_grad():
            assert bool((model(adv[res.success]).argmax(dim=1) != y[res.success]).all())
        assert torch.equal(res.norm[res.success], batch_norm(res.delta, norm)[res.success])


@pytest.mark.parametrize("method, norm", CASES)
def test_plain_mode_runs_the_library_and_on_off_run_pgd(method: str, norm: str) -> None:
    config = AttackConfig(method=method, norm=norm)
    plain = attack_from_config(config, "plain", bounds=(-1.0, 1.0))
    assert isinstance(plain, LibraryAttack) and plain.p == norm and not plain.projectable
    assert (plain.eps, plain.steps) == (config.eps["plain"], int(config.steps["plain"]))
    pgd = L2PGD if norm == "l2" else LinfPGD
    for mode in ("on", "off"):
        attack = attack_from_config(config, mode, bounds=(-1.0, 1.0))
        assert type(attack) is pgd and attack.eps == config.eps[mode]
    assert config.unreachable() == []  # a library attack has no step length to judge
    check_attack_available(config)


def test_a_library_attack_refuses_a_gradient_projection() -> None:
    model, x, y = _tiny()
    attack = make_attack("fab", "l2", eps=1.0, steps=5)
    with pytest.raises(ValueError, match="cannot project gradients.*PGD"):
        attack(model, x, y, project_gradient=lambda g, idx: g)


def test_options_a_library_attack_lacks_are_bad_input() -> None:
    with pytest.raises(UnsupportedAttackOption, match="has no random start"):
        make_attack("fmn", "l2", eps=1.0, steps=5, random_start=True)
    for method in ("ddn", "deepfool"):
        with pytest.raises(UnsupportedAttackOption, match=f"'{method}' has no linf; it supports l2"):
            check_attack_available(AttackConfig(method=method, norm="linf"))
    assert issubclass(UnsupportedAttackOption, BadInput)
    assert issubclass(MissingAttackLibrary, BadInput)


@pytest.mark.parametrize("method, library", [("fmn", "foolbox"), ("ddn", "foolbox"),
                                             ("deepfool", "torchattacks"),
                                             ("fab", "torchattacks")])
def test_a_missing_library_names_the_extra(monkeypatch, method: str, library: str) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # import fails as if not installed
    with pytest.raises(MissingAttackLibrary, match=f"attack.method '{method}' needs {library}"):
        check_attack_available(AttackConfig(method=method))
    with pytest.raises(MissingAttackLibrary) as info:
        attack_from_config(AttackConfig(method=method), "plain")
    assert EXTRA_HINT in str(info.value)


@pytest.mark.parametrize("method", LIBRARY_METHODS)
def test_the_callers_model_mode_and_global_rng_are_left_alone(method: str) -> None:
    model, x, y = _tiny(2)
    model.train()  # torchattacks would put it in eval mode and back; foolbox would warn
    attack = make_attack(method, "l2", eps=10.0, steps=10)
    state = torch.get_rng_state()
    a = attack(model, x, y, generator=torch.Generator().manual_seed(3))
    assert model.training
    assert torch.equal(torch.get_rng_state(), state)  # FAB reseeds it: forked, then restored
    b = attack(model, x, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.delta, b.delta) and torch.equal(a.norm, b.norm)


TINY_FMN = """\
name: tiny_fmn
dataset: {name: digits, eval_samples: 12, pixel_range: [-1, 1]}
classifier: {arch: mlp, hidden: [32], epochs: 2}
autoencoders:
  plain: {arch: mlp, latent_dim: 6, hidden: [64], epochs: 10}
attack:
  method: fmn
  eps: {plain: 4, on: 8, off: 8}
  step: {plain: 0.2, on: 0.4, off: 0.4}
  steps: {plain: 20, on: 20, off: 20}
tangent: {method: dense, dtype: float64}
claims:
  - dmm.perpendicular: {null: random_subspace}
seeds: [0]
report: {formats: [csv], figures: false}
"""


@pytest.mark.slow
def test_run_without_the_library_exits_2_naming_the_extra_before_any_compute(
        tmp_path: Path) -> None:
    protocol = tmp_path / "tiny_fmn.yaml"
    protocol.write_text(TINY_FMN)
    store, out = tmp_path / "store", tmp_path / "out"
    # The command line in a fresh interpreter in which `import foolbox` fails.
    code = "import sys; sys.modules['foolbox'] = None; from dimple_stats.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "run", str(protocol), "--store", str(store),
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stdout + proc.stderr
    assert "attack.method 'fmn' needs foolbox" in proc.stderr
    assert EXTRA_HINT in proc.stderr
    assert "Traceback" not in proc.stderr
    trained = [p for p in store.rglob("*") if p.is_file()] if store.exists() else []
    assert trained == [], trained  # rejected before any model was trained
