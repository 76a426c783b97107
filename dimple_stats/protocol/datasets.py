"""The protocol's ``dataset:`` section: the built-in datasets' config models, their registration
in :data:`~dimple_stats.protocol.vocabulary.DATASETS`, and the annotation that validates the
section against the datasets registered at validation time (so a plugin's or a test's dataset
is accepted like a built-in one, and the JSON schema lists it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PositiveInt,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from dimple_stats.protocol.vocabulary import DATASETS, DatasetEntry
from dimple_stats.strict_model import StrictScalars, keyed_error

__all__ = ["DatasetCommon", "DatasetConfig", "DigitsDataset", "Frozen", "ImageFolderDataset",
           "LinearSubspaceDataset", "LiveDatasets", "PixelRange", "SyntheticDataset",
           "TorchvisionDataset", "dataset_adapter", "dataset_union"]


class Frozen(StrictScalars):
    """Base of every protocol model: immutable, strict about unknown keys, non-finite numbers
    and booleans (:class:`~dimple_stats.strict_model.StrictScalars`)."""

    # `.nan` and `.inf` are YAML floats: no setting means them, and NaN compares false with
    # everything, so range checks like `gt=0` would let it through.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


PixelRange = tuple[float, float]


class DatasetCommon(Frozen):
    """The fields every dataset shares (subclass it for a new dataset's config model)."""

    root: str | None = Field(
        None, description="Directory holding the dataset files; '~' is expanded."
    )
    download: bool = Field(False, description="Download the files when they are absent.")
    classes: tuple[int, ...] | None = Field(
        None,
        description="Class subset used everywhere (labels are remapped to 0..C-1 in this order).",
    )
    eval_classes: tuple[int, ...] | None = Field(
        None,
        description="Classes the evaluation samples are drawn from (a subset of `classes`); "
        "e.g. the CIFAR-10 reproduction attacked classes 0 and 1 only.",
    )
    train_samples: int | None = Field(
        None, ge=2, description="Training images to use (all available when null)."
    )
    eval_samples: int = Field(500, ge=1, description="Evaluation images to attack.")
    pixel_range: PixelRange = Field(
        (0.0, 1.0), description="Pixel values are mapped linearly onto this interval."
    )

    def known_shape(self) -> tuple[int | None, tuple[int, int, int] | None]:
        """``(number of classes, image shape)`` where the config alone fixes them (None where
        only the files tell, e.g. an image folder's classes): what ``validate`` checks class
        ids and latent sizes against, before any data is read."""
        return None, None

    @field_validator("classes", "eval_classes")
    @classmethod
    def _class_ids(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None:
            if not v:
                raise ValueError("an empty class list selects no image; leave it out for all")
            negative = [c for c in v if c < 0]
            if negative:
                raise ValueError(f"class ids are 0 or more, got {negative}")
            dupes = sorted({c for c in v if v.count(c) > 1})
            if dupes:
                raise ValueError(f"class ids must be distinct; repeated: {dupes}")
        return v

    @model_validator(mode="after")
    def _classes_exist(self) -> DatasetCommon:
        count, _ = self.known_shape()
        if count is not None:
            for field in ("classes", "eval_classes"):
                ids = getattr(self, field)
                extra = sorted(c for c in ids or () if c >= count)
                if extra:
                    raise keyed_error(field, f"{extra} are not classes of {self.name} "
                                      f"(ids 0-{count - 1})")
        return self

    @field_validator("pixel_range")
    @classmethod
    def _increasing(cls, v: PixelRange | None) -> PixelRange | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"pixel_range must be increasing, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _eval_classes_subset(self) -> DatasetCommon:
        if self.eval_classes is not None and self.classes is not None:
            extra = sorted(set(self.eval_classes) - set(self.classes))
            if extra:
                raise keyed_error("eval_classes",
                                  f"{extra} are not in classes {list(self.classes)}")
        return self


class SyntheticDataset(DatasetCommon):
    """Images from a fixed random smooth decoder of a k-dim latent: the true manifold is known."""

    name: Literal["synthetic"]
    latent_dim: int = Field(8, ge=1, description="Dimension k of the true manifold.")
    image_shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (1, 8, 8), description="(channels, height, width).")
    hidden: int = Field(64, ge=1, description="Hidden width of the generating decoder.")
    num_classes: int = Field(2, ge=2, description="Classes, assigned by a fixed linear map of z.")
    manifold_seed: int = Field(
        0, ge=0, description="Seed of the generating decoder (the manifold itself; fixed across seeds)."
    )
    train_samples: int = Field(2000, ge=2)

    def known_shape(self) -> tuple[int | None, tuple[int, int, int] | None]:
        return self.num_classes, self.image_shape

    @model_validator(mode="after")
    def _dimensions(self) -> SyntheticDataset:
        _check_latent_fits(self.latent_dim, self.image_shape)
        if self.hidden < self.latent_dim:
            raise ValueError(f"hidden ({self.hidden}) must be >= latent_dim ({self.latent_dim}) "
                             "or the generator's Jacobian cannot have rank k")
        return self


class LinearSubspaceDataset(DatasetCommon):
    """Data on a k-dim affine subspace (Melamed et al. 2023): the tangent space is the same everywhere."""

    name: Literal["linear_subspace"]
    latent_dim: int = Field(8, ge=1)
    image_shape: tuple[PositiveInt, PositiveInt, PositiveInt] = (1, 8, 8)
    num_classes: int = Field(2, ge=2)
    manifold_seed: int = Field(0, ge=0)
    train_samples: int = Field(2000, ge=2)

    def known_shape(self) -> tuple[int | None, tuple[int, int, int] | None]:
        return self.num_classes, self.image_shape

    @model_validator(mode="after")
    def _dimensions(self) -> LinearSubspaceDataset:
        _check_latent_fits(self.latent_dim, self.image_shape)
        return self


def _check_latent_fits(latent_dim: int, image_shape: tuple[int, int, int]) -> None:
    n = image_shape[0] * image_shape[1] * image_shape[2]
    if latent_dim >= n:
        raise ValueError(f"latent_dim ({latent_dim}) must be smaller than the image dimension "
                         f"C*H*W = {n}")


class DigitsDataset(DatasetCommon):
    """scikit-learn's 8x8 handwritten digits (1,797 real images shipped with scikit-learn)."""

    name: Literal["digits"]

    def known_shape(self) -> tuple[int | None, tuple[int, int, int] | None]:
        return 10, (1, 8, 8)


class TorchvisionDataset(DatasetCommon):
    """MNIST, Fashion-MNIST, CIFAR-10 or SVHN in the on-disk formats torchvision uses."""

    name: Literal["mnist", "fashion_mnist", "cifar10", "svhn"]
    root: str = Field("~/.cache/dimple-stats/data")

    def known_shape(self) -> tuple[int | None, tuple[int, int, int] | None]:
        return 10, ((1, 28, 28) if self.name in ("mnist", "fashion_mnist") else (3, 32, 32))


class ImageFolderDataset(DatasetCommon):
    """An ImageNet-style folder tree: ``root/<split>/<class>/<image>``."""

    name: Literal["imagefolder"]
    root: str
    train_dir: str = "train"
    eval_dir: str = "val"
    image_size: int = Field(224, ge=8, description="Images are resized and centre-cropped to this.")
    normalize: Literal["none", "imagenet"] = Field(
        "none", description="'imagenet' standardises channels with the ImageNet mean and std "
        "(then pixel_range does not apply)."
    )

    pixel_range: PixelRange | None = Field(  # type: ignore[assignment]
        None, description="Pixel values are mapped onto this interval ([0, 1] when null); "
        "must stay null with normalize: imagenet."
    )

    def known_shape(self) -> tuple[int | None, tuple[int, int, int] | None]:
        return None, (3, self.image_size, self.image_size)

    @model_validator(mode="after")
    def _one_pixel_convention(self) -> ImageFolderDataset:
        if self.normalize == "imagenet" and self.pixel_range is not None:
            raise ValueError("pixel_range and normalize: imagenet exclude each other: the "
                             "standardised range follows from the ImageNet mean and std")
        return self


for _model, _loader in (
        (SyntheticDataset, "runners.datasets.synthetic:load_synthetic"),
        (LinearSubspaceDataset, "runners.datasets.synthetic:load_linear_subspace"),
        (DigitsDataset, "runners.datasets.digits:load_digits"),
        (TorchvisionDataset, "runners.datasets.torchvision_sets:load_{name}"),
        (ImageFolderDataset, "runners.datasets.imagefolder:load_imagefolder")):
    for _name in get_args(_model.model_fields["name"].annotation):
        DATASETS.register(_name, DatasetEntry(_model, _loader.format(name=_name)))

_DATASET_ADAPTERS: dict[tuple[tuple[str, int], ...], TypeAdapter[Any]] = {}


def dataset_union() -> Any:
    """The union of the registered datasets' config models, tagged by ``name`` (as registered
    now: a dataset registered after import, by a plugin or a test, is part of it)."""
    models = tuple(dict.fromkeys(entry.config for entry in DATASETS.values()))
    return Union[models]  # noqa: UP007  (a union built from a runtime tuple)


def dataset_adapter() -> TypeAdapter[Any]:
    """A validator of one ``dataset:`` section against the registered datasets."""
    state = DATASETS.state()
    if state not in _DATASET_ADAPTERS:
        _DATASET_ADAPTERS[state] = TypeAdapter(
            Annotated[dataset_union(), Field(discriminator="name")])
    return _DATASET_ADAPTERS[state]


class LiveDatasets:
    """Annotation of the protocol's ``dataset`` field: validated, dumped and described with the
    datasets registered when that happens (:data:`~dimple_stats.protocol.vocabulary.DATASETS`)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        def validate(value: Any) -> Any:
            if isinstance(value, BaseModel) and any(
                    type(value) is e.config for e in DATASETS.values()):
                return value
            return dataset_adapter().validate_python(value)

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v, info: v.model_dump(mode=info.mode, by_alias=info.by_alias),
                info_arg=True, when_used="always"))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(dataset_adapter().core_schema)


#: The type of the protocol's ``dataset:`` section: one registered dataset's config model.
DatasetConfig = Annotated[BaseModel, LiveDatasets]
