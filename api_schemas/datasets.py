"""Datasets: a named, content-hashed set of images (optionally labelled) that dataset
analyses (max_activating, dataset_predictions, ...) run a model over."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RejectedFile(BaseModel):
    """A file of an upload that was left out, and why."""

    path: str
    code: str = Field(examples=["not_an_image", "image_too_large", "missing"])
    reason: str


class ImageSizes(BaseModel):
    min_width: int
    max_width: int
    min_height: int
    max_height: int
    #: The most frequent sizes, "WxH" -> count (at most 10).
    common: dict[str, int] = Field(default_factory=dict)


class DatasetInfo(BaseModel):
    name: str
    version: str = Field(description="Hash of the images' bytes, paths and labels.")
    source: Literal["upload", "directory", "builtin"]
    builtin: bool = False
    created_at: float
    count: int = Field(description="Images in the dataset.")
    classes: list[str] = Field(default_factory=list, description="Labels, sorted; [] if none.")
    class_counts: dict[str, int] = Field(default_factory=dict)
    unlabelled: int = 0
    sizes: ImageSizes
    pixels: int = Field(description="Pixels of all images together.")
    bytes: int = Field(description="Bytes of all image files together.")
    root: str | None = Field(default=None, description="A registered directory's path.")
    description: str = ""
    rejected: list[RejectedFile] = Field(
        default_factory=list, description="Files of the upload left out (not images, ...)."
    )


class DatasetList(BaseModel):
    datasets: list[DatasetInfo]


class DirectoryDataset(BaseModel):
    """Register a directory under a configured dataset root (LANTERN_DATASET_ROOTS)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    path: str = Field(min_length=1, max_length=4096)
    index: str | None = Field(
        default=None, description="A CSV (path,label) or JSON index inside the directory."
    )
    strict: bool = Field(default=False, description="Refuse it whole if a file is no image.")
    description: str = Field(default="", max_length=2000)


class DatasetImage(BaseModel):
    """One image of a dataset: its index (what GET .../images/{index} reads), its id (the
    path analyses report) and label."""

    index: int
    id: str = Field(examples=["3/0042.png"])
    label: str | None = None
    width: int
    height: int


class DatasetImageList(BaseModel):
    dataset: str
    version: str
    count: int = Field(description="Images in this version of the dataset.")
    offset: int
    images: list[DatasetImage]
