"""Names a protocol may use whose implementations live on the torch side.

The schema validates against these registries (torch-free); ``runners`` resolves each entry's
lazy ``"module:function"`` target when it computes. Registering a name here (a plugin, a test's
toy attack) makes it valid in protocols and usable by ``dimple-stats run`` at once.

Examples
--------
>>> ATTACK_METHODS.names()
('pgd', 'fmn', 'ddn', 'deepfool', 'fab')
>>> CLASSIFIER_ARCHS.names()
('mlp', 'cnn_small', 'vgg_cifar', 'resnet18_cifar', 'linear')
>>> EXECUTORS.names()
('local', 'processes', 'ray')
>>> REPORT_FORMATS["latex"].filename
'results.tex'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from dimple_stats.registry import Registry

__all__ = ["ATTACK_METHODS", "AUTOENCODER_ARCHS", "CLASSIFIER_ARCHS", "DATASETS", "DatasetEntry",
           "EXECUTORS", "LIBRARY_ATTACK_METHODS", "REPORT_FORMATS", "ReportFormat",
           "registered_name"]


def registered_name(registry: Registry[Any]) -> Any:
    """A protocol field type: a name registered in ``registry``, checked (with "did you mean")
    and listed as the JSON schema's ``enum`` as registered when each runs, not at import."""
    def enum(schema: dict[str, Any]) -> None:
        schema["enum"] = list(registry)

    return Annotated[str, AfterValidator(registry.check), Field(json_schema_extra=enum)]


#: Minimal-norm attack families: name -> factory ``(norm, **options) -> Attack``
#: (see :mod:`runners.attacks.base` for the contract every attack follows).
ATTACK_METHODS: Registry[str | Callable[..., Any]] = Registry("attack method")
ATTACK_METHODS.register("pgd", "runners.attacks.pgd:make_pgd")

#: Methods run by an attack library (:mod:`runners.attacks.library`, the ``attacks`` extra):
#: name -> the library it needs. They cannot project gradients, so their on/off modes run PGD;
#: they take no step length (``attack.step.plain`` is unused).
LIBRARY_ATTACK_METHODS: dict[str, str] = {
    "fmn": "foolbox", "ddn": "foolbox", "deepfool": "torchattacks", "fab": "torchattacks"}
for _name in LIBRARY_ATTACK_METHODS:
    ATTACK_METHODS.register(_name, f"runners.attacks.library:make_{_name}")

#: Classifier architectures: name -> builder ``(config, image_shape, num_classes) -> nn.Module``
#: (``torchvision:<name>`` is accepted besides these).
CLASSIFIER_ARCHS: Registry[str | Callable[..., Any]] = Registry("classifier arch")
for _name in ("mlp", "cnn_small", "vgg_cifar", "resnet18_cifar", "linear"):
    CLASSIFIER_ARCHS.register(_name, f"runners.models.builders:{_name}_classifier")

#: Autoencoder architectures: name -> builder ``(config, image_shape, pixel_range, manifold)``.
AUTOENCODER_ARCHS: Registry[str | Callable[..., Any]] = Registry("autoencoder arch")
for _name in ("conv", "mlp", "segnet", "oracle"):
    AUTOENCODER_ARCHS.register(_name, f"runners.models.builders:{_name}_autoencoder")

#: Where a run's seeds execute: name -> ``(fn, tasks, on_result, workers, address) -> outputs``
#: (see :func:`runners.executors.run_tasks`).
EXECUTORS: Registry[str | Callable[..., Any]] = Registry("executor")
for _name in ("local", "processes", "ray"):
    EXECUTORS.register(_name, f"runners.executors:run_{_name}")


@dataclass(frozen=True)
class ReportFormat:
    """A table format of the report: the file it writes and its renderer
    ``(results, **{title_keyword: title}) -> str`` (or the renderer's ``"module:function"``)."""

    filename: str
    render: str | Callable[..., str]
    title_keyword: str | None = None
    #: The renderer also takes the run's ``manifest=``, ``protocol=`` and ``confidence=``
    #: (the reduced-run banner, the question, the CI level of the verdicts).
    context: bool = False


#: Report table formats (the protocol's ``report.formats``, ``dimple-stats report --format``).
REPORT_FORMATS: Registry[ReportFormat] = Registry("report format")
REPORT_FORMATS.register("csv", ReportFormat("results.csv", "dimple_stats.report.tables:to_csv_text"))
REPORT_FORMATS.register("latex", ReportFormat("results.tex", "dimple_stats.report.tables:to_latex",
                                              title_keyword="caption"))
REPORT_FORMATS.register("markdown", ReportFormat(
    "results.md", "dimple_stats.report.tables:to_markdown", title_keyword="title",
    context=True))


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset a protocol may name: its config model (a pydantic model whose ``name`` field is
    a ``Literal`` of the name) and its loader ``(config, seed) -> DatasetSplits`` or the loader's
    ``"module:function"`` target."""

    config: type
    loader: str | Callable[..., Any]


#: Datasets: ``dataset.name`` -> :class:`DatasetEntry`. The built-in ones are registered by
#: :mod:`dimple_stats.protocol.datasets`, beside their config models.
DATASETS: Registry[DatasetEntry] = Registry("dataset")
