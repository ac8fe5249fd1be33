"""``ImageDataModule``: ImageFolder data (embedded Imagenette-mini, Imagenette, ImageNet subsets) for Lightning."""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.random_erasing import RandomErasing
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.datasets.utils import check_integrity, download_url, extract_archive
from torchvision.transforms import v2

from .cache import Uint8CacheDataset, build_uint8_cache, cache_key, check_cache_dir, default_cache_dir
from .folder import ImageListDataset, Sample, find_class_folders, scan_split
from .preprocess import Preprocessing
from .samplers import UnpaddedDistributedSampler
from .stats import cached_batches, decoded_batches, training_set_stats
from .transforms import (
    AUGMENTATIONS, eval_resize_size, interpolation_mode, normalize_transform, normalize_uint8, train_transform,
)

logger = logging.getLogger("zoo.data")

DATA_DIR = Path(__file__).resolve().parent
MINI_ROOT = DATA_DIR / "imagenette_mini"
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz"
CACHE_MODES = ("none", "uint8")
#: ``mean="auto", std="auto"``: the training set's own channel statistics (``zoo.data.stats``).
AUTO_STATS = "auto"
_NAMED_CLASS_LISTS = {"imagenet100": DATA_DIR / "imagenet100.txt"}


def read_class_list(classes: Sequence[str] | str) -> list[str]:
    """Class folder names from a list, a text file (one per line, ``#`` comments), or ``"imagenet100"``."""
    if isinstance(classes, str):
        path = _NAMED_CLASS_LISTS.get(classes, Path(classes).expanduser())
        if not path.is_file():
            raise ValueError(
                f"classes={classes!r} is neither a file (one class folder name per line) nor one of "
                f"{sorted(_NAMED_CLASS_LISTS)}; pass a list of folder names for explicit classes"
            )
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        names = [line for line in lines if line]
    else:
        names = [str(c) for c in classes]
    if not names:
        raise ValueError("classes is empty: give at least one class folder name")
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise ValueError(f"classes lists these names more than once: {dupes}")
    return names


@lru_cache(maxsize=1)
def _known_class_names() -> dict[str, str]:
    """wnid -> short human name: the embedded ``classes.json`` first, then timm's ImageNet-1k names."""
    names: dict[str, str] = {}
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        names.update({w: info.label_name_to_description(w).split(",")[0].strip() for w in info.label_names()})
    except Exception:  # pragma: no cover - only if timm's class-info files are unavailable
        pass
    names.update(json.loads((MINI_ROOT / "classes.json").read_text()))
    return names


def _dist_info() -> tuple[int, int] | None:
    """``(world_size, rank)`` when torch.distributed is initialised with more than one process, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_world_size(), dist.get_rank()
    return None


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest``: torchvision for http(s), urllib for ``file://`` (which torchvision lacks)."""
    if urllib.parse.urlparse(url).scheme == "file":
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        urllib.request.urlretrieve(url, tmp)
        tmp.replace(dest)
    else:
        download_url(url, str(dest.parent), filename=dest.name)


class ImageDataModule(L.LightningDataModule):
    """ImageFolder train/val data with fast uint8 batches and GPU-side normalisation.

    The loaders yield ``(uint8 images N x 3 x H x W, int64 targets)``; the float
    conversion, ``(x - mean) / std`` and (train only) timm random erasing happen
    on the batch in :meth:`on_after_batch_transfer`, i.e. on the training device,
    which Lightning calls automatically when the module is passed as
    ``trainer.fit(model, datamodule=dm)``. Outside Lightning call
    :meth:`normalize_batch`, or set ``normalize_in_loader=True`` to get float
    tensors from the workers instead.

    Args:
        root: folder with ``<train_split>/<class>/*`` and ``<val_split>/<class>/*``
            (ImageFolder layout); None = the embedded Imagenette-mini (60/20 images per class).
        train_split, val_split: sub-folder names of the two splits.
        classes: keep only these class folders (in this order): a list, a text file with
            one name per line, or ``"imagenet100"`` (the CMC ImageNet-100 list shipped here).
        download: if ``root`` is missing, fetch ``url`` into ``root``'s parent, check ``md5``, extract.
        url, md5: archive to download (default: Imagenette v2 320 px) and its md5 (None: no check).
        train_res: training crop size (pixels); ``res_schedule`` may change it per epoch.
        val_res: eval crop size (None: ``train_res``).
        val_crop_pct: eval resize = ``floor(val_res / val_crop_pct)`` on the shorter side, then center crop.
        interpolation: ``nearest``, ``bilinear`` or ``bicubic``.
        mean, std: normalisation, in [0, 1] units (None: ImageNet's; ``"auto"`` for both: the
            training split's channel mean/std, computed once on first use and cached beside the
            uint8 cache in ``cache_dir``, see ``zoo.data.stats``).
        hflip: horizontal flip probability (train).
        scale: RandomResizedCrop area range (train).
        aug: ``none`` | ``basic`` | ``randaugment`` | ``trivialaugment`` (see ``zoo.data.transforms``).
        re_prob: random erasing probability (timm, ``mode="pixel"``), train only.
        batch_size: per-process batch size.
        num_workers, pin_memory, persistent_workers: DataLoader settings (pin_memory None: when CUDA is available).
        cache: ``none`` (decode JPEGs every epoch) or ``uint8`` (decode once into a memory-mapped
            uint8 array of ``cache_short_side`` squares, see ``zoo.data.cache``).
        cache_dir: where the uint8 cache lives (None: ``$ZOO_CACHE_DIR`` or ``~/.cache/zoo``); never inside root.
        cache_short_side: side of the cached squares (None: ``floor(max resolution / val_crop_pct)``).
        res_schedule: ``{epoch: train_res}``, e.g. ``{0: 96, 3: 128}`` (progressive resizing);
            before the first key ``train_res`` is used.
        normalize_in_loader: normalise (and random-erase) in the workers; loaders then yield float32.
    """

    def __init__(
        self,
        *,
        root: str | Path | None = None,
        train_split: str = "train",
        val_split: str = "val",
        classes: Sequence[str] | str | None = None,
        download: bool = False,
        url: str = IMAGENETTE_URL,
        md5: str | None = None,
        train_res: int = 128,
        val_res: int | None = None,
        val_crop_pct: float = 0.875,
        interpolation: str = "bilinear",
        mean: Sequence[float] | str | None = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] | str | None = IMAGENET_DEFAULT_STD,
        hflip: float = 0.5,
        scale: Sequence[float] = (0.08, 1.0),
        aug: str = "basic",
        re_prob: float = 0.0,
        batch_size: int = 64,
        num_workers: int = 2,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        cache: str = "none",
        cache_dir: str | Path | None = None,
        cache_short_side: int | None = None,
        res_schedule: Mapping[int, int] | None = None,
        normalize_in_loader: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.root = Path(root).expanduser() if root is not None else MINI_ROOT
        self.train_split, self.val_split = train_split, val_split
        self.classes = read_class_list(classes) if classes is not None else None
        self.download, self.url, self.md5 = bool(download), url, md5

        self.res_schedule = {int(k): int(v) for k, v in dict(res_schedule or {}).items()}
        for name, res in [("train_res", train_res), ("val_res", val_res)] + [
            (f"res_schedule[{k}]", v) for k, v in self.res_schedule.items()
        ]:
            if res is not None and (not isinstance(res, int) or res < 8):
                raise ValueError(f"{name} must be an int >= 8 pixels, got {res!r}")
        if any(k < 0 for k in self.res_schedule):
            raise ValueError(f"res_schedule keys are epochs >= 0, got {sorted(self.res_schedule)}")
        self.train_res = train_res
        self.val_res = val_res if val_res is not None else train_res
        if not 0.0 < val_crop_pct <= 1.0:
            raise ValueError(f"val_crop_pct must be in (0, 1], got {val_crop_pct}")
        self.val_crop_pct = float(val_crop_pct)
        interpolation_mode(interpolation)  # validates
        self.interpolation = interpolation
        if isinstance(mean, str) or isinstance(std, str):
            if (mean, std) != (AUTO_STATS, AUTO_STATS):
                raise ValueError(f"mean and std are 3 values each, or both {AUTO_STATS!r} (the training set's "
                                 f"statistics), got mean={mean!r}, std={std!r}")
            self._mean: tuple[float, ...] | None = None
            self._std: tuple[float, ...] | None = None
        else:
            mean = IMAGENET_DEFAULT_MEAN if mean is None else mean
            std = IMAGENET_DEFAULT_STD if std is None else std
            self._mean, self._std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
            if len(self._mean) != 3 or len(self._std) != 3 or min(self._std) <= 0:
                raise ValueError(f"mean and std need 3 values each (std > 0), got mean={mean}, std={std}")
        #: where ``mean="auto"`` statistics are cached (set when they are computed or read)
        self.stats_file: Path | None = None
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
        self.hflip = float(hflip)
        self.scale = tuple(float(s) for s in scale)
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {scale}")
        if aug not in AUGMENTATIONS:
            raise ValueError(f"aug must be one of {AUGMENTATIONS}, got {aug!r}")
        self.aug = aug
        if not 0.0 <= re_prob <= 1.0:
            raise ValueError(f"re_prob is a probability in [0, 1], got {re_prob}")
        self.re_prob = float(re_prob)
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        self.cache = cache
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        if cache == "uint8":
            check_cache_dir(self.cache_dir, self.root)
        max_res = max([self.train_res, self.val_res, *self.res_schedule.values()])
        self.cache_short_side = (
            int(cache_short_side) if cache_short_side is not None else eval_resize_size(max_res, self.val_crop_pct)
        )
        if self.cache_short_side < 8:
            raise ValueError(f"cache_short_side must be >= 8, got {cache_short_side}")
        self.normalize_in_loader = bool(normalize_in_loader)

        self.current_train_res = self.train_res_for_epoch(0)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self._class_folders: list[str] | None = self.classes
        self._random_erasing: dict[torch.device, RandomErasing] = {}

    # ------------------------------------------------------------------ classes
    @property
    def class_folders(self) -> list[str]:
        """Class folder names, in label order (the ``classes`` argument, or all folders of the train split)."""
        if self._class_folders is None:
            self._check_root()
            self._class_folders = find_class_folders(self.root / self.train_split)
            if not self._class_folders:
                raise FileNotFoundError(
                    f"no class folders in {self.root / self.train_split}: "
                    f"expected <root>/{self.train_split}/<class>/*.JPEG"
                )
        return self._class_folders

    @property
    def num_classes(self) -> int:
        """Number of classes (labels are ``0 .. num_classes - 1``)."""
        return len(self.class_folders)

    @property
    def class_names(self) -> list[str]:
        """Human-readable names (wnids mapped via ``classes.json`` / ImageNet-1k names, else folder names)."""
        known = _known_class_names()
        return [known.get(c, c) for c in self.class_folders]

    # ------------------------------------------------------------ normalisation
    @property
    def mean(self) -> tuple[float, ...]:
        """Normalisation mean per channel, in [0, 1] units (with ``"auto"``: the training set's, see :meth:`_auto_stats`)."""
        if self._mean is None:
            self._auto_stats()
        return self._mean

    @property
    def std(self) -> tuple[float, ...]:
        """Normalisation std per channel, in [0, 1] units (with ``"auto"``: the training set's)."""
        if self._std is None:
            self._auto_stats()
        return self._std

    def _auto_stats(self) -> None:
        """The training split's channel mean/std (``zoo.data.stats``): read from its JSON beside the uint8
        cache, else computed from the uint8 cache (built first with ``cache="uint8"``), else from the
        decoded images."""
        cache_file, samples = self._cache_path(self.train_split)
        self.stats_file = cache_file.with_suffix(".stats.json")
        if self.cache == "uint8" and not self.stats_file.is_file():
            self._build_cache(cache_file, samples, self.train_split)  # decode once, for the statistics and training
        if cache_file.with_suffix(".json").exists():
            batches = cached_batches(cache_file)
        else:
            batches = decoded_batches(samples, self.cache_short_side, self.interpolation, self.num_workers)
        self._mean, self._std = training_set_stats(self.stats_file, batches, len(samples))
        logger.info("mean=auto: training-set mean %s, std %s (%s)", self._mean, self._std, self.stats_file)

    # ---------------------------------------------------------------- resolution
    def train_res_for_epoch(self, epoch: int) -> int:
        """Training resolution at ``epoch``: the last ``res_schedule`` entry with key <= epoch, else ``train_res``."""
        keys = [k for k in self.res_schedule if k <= epoch]
        return self.res_schedule[max(keys)] if keys else self.train_res

    def set_epoch(self, epoch: int) -> int:
        """Switch the train transform to ``train_res_for_epoch(epoch)``; returns that resolution.

        Takes effect in DataLoader workers at the next ``iter(loader)``: with a
        ``res_schedule`` the train loader never keeps persistent workers, so no loader
        rebuild is needed (``reload_dataloaders_every_n_epochs=1`` also works; then
        :meth:`train_dataloader` itself syncs to ``trainer.current_epoch``).
        """
        res = self.train_res_for_epoch(epoch)
        if res != self.current_train_res:
            logger.info("epoch %d: train resolution %d -> %d px", epoch, self.current_train_res, res)
            self.current_train_res = res
            if self.train_dataset is not None:
                self.train_dataset.transform = self._train_transform()
        return res

    def _train_transform(self) -> v2.Compose:
        t = train_transform(self.current_train_res, self.aug, scale=self.scale, hflip=self.hflip,
                            crop_pct=self.val_crop_pct, interpolation=self.interpolation)
        return self._maybe_normalize(t, train=True)

    @property
    def preprocessing(self) -> Preprocessing:
        """The val preprocessing (``val_res``, ``val_crop_pct``, ``interpolation``, ``mean``, ``std``) as one object."""
        return Preprocessing(input_size=(3, self.val_res, self.val_res), crop_pct=self.val_crop_pct,
                             interpolation=self.interpolation, mean=self.mean, std=self.std)

    def _val_transform(self) -> v2.Compose:
        return self._maybe_normalize(self.preprocessing.resize_crop(), train=False)

    def _maybe_normalize(self, t: v2.Compose, train: bool) -> v2.Compose:
        if not self.normalize_in_loader:
            return t
        ops = [t, normalize_transform(self.mean, self.std)]
        if train and self.re_prob > 0:
            ops.append(RandomErasing(self.re_prob, mode="pixel", device="cpu"))
        return v2.Compose(ops)

    # ------------------------------------------------------------------ data
    def _check_root(self) -> None:
        layout = f"{self.root}/{{{self.train_split},{self.val_split}}}/<class>/<image files> (ImageFolder layout)"
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data root {self.root} does not exist: expected {layout}. "
                "Pass download=True to fetch the archive at `url`, or root=None for the embedded Imagenette-mini."
            )
        if not any(self.root.iterdir()):
            raise FileNotFoundError(f"data root {self.root} is empty: expected {layout}")

    def prepare_data(self) -> None:
        """Download (if asked and ``root`` is missing) and build the uint8 caches. Runs on one process per node."""
        if self.download and not self.root.exists():
            parent = self.root.parent
            archive = parent / Path(urllib.parse.urlparse(self.url).path).name
            if not check_integrity(str(archive), self.md5):
                logger.info("downloading %s to %s", self.url, archive)
                _fetch(self.url, archive)
                if not check_integrity(str(archive), self.md5):
                    raise ValueError(
                        f"md5 of {archive} does not match {self.md5}: corrupt or wrong download of {self.url}"
                    )
            extract_archive(str(archive), str(parent))
            if not self.root.is_dir():
                found = sorted(p.name for p in parent.iterdir() if p.is_dir())
                raise FileNotFoundError(
                    f"extracted {archive} into {parent}, but root {self.root} is still missing; folders there: {found}"
                )
        if self.cache == "uint8":
            for split in (self.train_split, self.val_split):
                self._cache_file(split, build=True)

    def _cache_path(self, split: str) -> tuple[Path, list[Sample]]:
        """The uint8 cache file of ``split`` (named by :func:`~zoo.data.cache.cache_key`) and its samples."""
        self._check_root()
        samples, stats = scan_split(self.root / split, self.class_folders)
        s = self.cache_short_side
        key = cache_key(self.root, split, self.class_folders, s, self.interpolation, samples, stats)
        return check_cache_dir(self.cache_dir, self.root) / f"{self.root.resolve().name}-{split}-{s}px-{key}.npy", samples

    def _cache_file(self, split: str, build: bool) -> Path:
        path, samples = self._cache_path(split)
        if build:
            self._build_cache(path, samples, split)
        return path

    def _build_cache(self, path: Path, samples: list[Sample], split: str) -> None:
        """Decode ``samples`` into the uint8 cache at ``path`` unless it is complete already."""
        if not path.with_suffix(".json").exists():
            meta = {"root": str(self.root.resolve()), "split": split, "classes": self.class_folders}
            build_uint8_cache(path, samples, self.cache_short_side, self.interpolation, num_workers=self.num_workers,
                              meta=meta)

    def _make_dataset(self, split: str, train: bool) -> Dataset:
        transform = self._train_transform() if train else self._val_transform()
        if self.cache == "uint8":
            return Uint8CacheDataset(self._cache_file(split, build=True), transform)
        self._check_root()
        samples, _ = scan_split(self.root / split, self.class_folders)
        return ImageListDataset(samples, transform)

    def setup(self, stage: str | None = None) -> None:
        """Build ``train_dataset`` (stage ``fit``/None) and ``val_dataset`` (every stage)."""
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._make_dataset(self.train_split, train=True)
        if self.val_dataset is None:
            self.val_dataset = self._make_dataset(self.val_split, train=False)

    # ---------------------------------------------------------------- loaders
    def _loader(self, dataset: Dataset, sampler: Any, shuffle: bool, drop_last: bool,
                persistent_workers: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, sampler=sampler, drop_last=drop_last,
            num_workers=self.num_workers, pin_memory=self.pin_memory, persistent_workers=persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled train loader; drops the last partial batch if at least one full batch exists.

        Under DDP it uses a ``DistributedSampler`` (so the trainer runs with
        ``use_distributed_sampler=False``). With a ``res_schedule`` its workers are never
        persistent, so a :meth:`set_epoch` resolution change reaches them at the next epoch.
        """
        if self.train_dataset is None:
            self.setup("fit")
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self.set_epoch(trainer.current_epoch)
        info = _dist_info()
        sampler = None
        if info is not None:
            sampler = DistributedSampler(self.train_dataset, num_replicas=info[0], rank=info[1], shuffle=True)
        n = len(sampler) if sampler is not None else len(self.train_dataset)
        persistent = self.persistent_workers and not self.res_schedule
        return self._loader(self.train_dataset, sampler, shuffle=sampler is None, drop_last=n >= self.batch_size,
                            persistent_workers=persistent)

    def val_dataloader(self) -> DataLoader:
        """Val loader in file order; under DDP each sample goes to exactly one rank (no padding)."""
        if self.val_dataset is None:
            self.setup("validate")
        info = _dist_info()
        sampler = None
        if info is not None:
            sampler = UnpaddedDistributedSampler(self.val_dataset, num_replicas=info[0], rank=info[1])
        return self._loader(self.val_dataset, sampler, shuffle=False, drop_last=False,
                            persistent_workers=self.persistent_workers)

    def test_dataloader(self) -> DataLoader:
        """The val split (Imagenette/ImageNet have no labelled test split)."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """The val split."""
        return self.val_dataloader()

    # ------------------------------------------------------------ batch hooks
    def normalize_batch(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        """uint8 ``N x 3 x H x W`` -> normalised float32, plus random erasing if ``train``.

        Float input is returned unchanged (e.g. with ``normalize_in_loader=True``).
        """
        if images.dtype != torch.uint8:
            return images
        dev = images.device
        x = normalize_uint8(images, self.mean, self.std)
        if train and self.re_prob > 0:
            if dev not in self._random_erasing:
                self._random_erasing[dev] = RandomErasing(self.re_prob, mode="pixel", device=str(dev))
            x = self._random_erasing[dev](x)
        return x

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning hook: normalise uint8 images on the device (random erasing while training)."""
        images, targets = batch
        trainer = getattr(self, "trainer", None)
        training = bool(trainer is not None and trainer.training)
        return self.normalize_batch(images, train=training), targets
